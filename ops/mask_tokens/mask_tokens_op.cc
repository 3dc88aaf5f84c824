// Research>MaskTokens: dynamic masked-LM masking for the input pipeline.
//
// Picks, per row, min(max_predictions_per_seq, max(1, round(mask_rate * candidates))) positions among
// the candidate tokens (neither special nor [MASK]; a row without candidates gets none), uniformly at
// random or, with word_starts, whole words at a time; each picked token becomes [MASK] with
// mask_prob, a random non-special id with random_prob, and stays unchanged otherwise. Stateless: the
// output is a pure function of the inputs and the int64 [2] seed.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status MaskTokensShape(InferenceContext* c) {
  ShapeHandle token_ids = c->input(0);
  if (c->RankKnown(token_ids) && c->Rank(token_ids) != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Research>MaskTokens: token_ids must be rank 2 [batch, seq_len], got rank ", c->Rank(token_ids),
        " with shape ", c->DebugString(token_ids)));
  }
  TF_RETURN_IF_ERROR(c->WithRank(token_ids, 2, &token_ids));
  ShapeHandle seed;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &seed));
  DimensionHandle seed_size;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(seed, 0), 2, &seed_size));
  int64_t num_word_starts = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("N", &num_word_starts));
  for (int i = 0; i < num_word_starts; ++i) {
    ShapeHandle merged;
    TF_RETURN_IF_ERROR(c->Merge(token_ids, c->input(2 + i), &merged));
  }
  int64_t max_predictions = 0;
  TF_RETURN_IF_ERROR(c->GetAttr("max_predictions_per_seq", &max_predictions));
  ShapeHandle predictions = c->Matrix(c->Dim(token_ids, 0), max_predictions);
  c->set_output(0, token_ids);
  c->set_output(1, predictions);
  c->set_output(2, predictions);
  c->set_output(3, predictions);
  return absl::OkStatus();
}

REGISTER_OP("Research>MaskTokens")
    .Input("token_ids: int32")
    .Input("seed: int64")
    .Input("word_starts: N * bool")
    .Attr("N: int >= 0 = 0")
    .Attr("vocab_size: int")
    .Attr("mask_token_id: int")
    .Attr("special_token_ids: list(int) = []")
    .Attr("max_predictions_per_seq: int >= 0")
    .Attr("mask_rate: float = 0.15")
    .Attr("mask_prob: float = 0.8")
    .Attr("random_prob: float = 0.1")
    .Output("input_word_ids: int32")
    .Output("masked_lm_positions: int32")
    .Output("masked_lm_ids: int32")
    .Output("masked_lm_weights: float")
    .SetShapeFn(MaskTokensShape)
    .Doc(R"doc(
Dynamic masking for masked-LM pretraining (see research/ops/mask_tokens.py).

token_ids: int32 [batch, seq_len], unmasked ids padded with a special id.
seed: int64 [2], the stateless seed.
word_starts: zero or one bool [batch, seq_len]; when given, whole words are masked together.
input_word_ids: int32 [batch, seq_len], the ids with masks and random replacements applied.
masked_lm_positions: int32 [batch, max_predictions_per_seq], ascending and unique, 0-padded.
masked_lm_ids: int32 [batch, max_predictions_per_seq], the original ids there, 0-padded.
masked_lm_weights: float [batch, max_predictions_per_seq], 1.0 for real predictions, 0.0 padding.
)doc");

}  // namespace research
