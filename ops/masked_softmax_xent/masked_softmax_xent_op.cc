// Research>MaskedSoftmaxXent: the fused masked-LM output head (see research/ops/masked_lm_loss.py).
//
// logits = hidden @ embedding_table^T + output_bias is never materialised: rows with a non-zero
// weight are processed in chunks of `chunk_rows`, each against the full vocabulary, so the softmax of
// a chunk is exact in one pass. Rows whose weight is 0 are skipped entirely (loss 0, predicted id -1).
// With compute_gradients the same pass also returns the gradients of sum(loss) (upstream gradient 1),
// in float32; the registered gradient scales them by the actual upstream gradient, or recomputes.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status MaskedSoftmaxXentShape(InferenceContext* c) {
  ShapeHandle hidden, table, bias, labels, weights;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &hidden));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &table));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &bias));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &labels));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 1, &weights));
  DimensionHandle n, d, v;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(hidden, 0), c->Dim(labels, 0), &n));
  TF_RETURN_IF_ERROR(c->Merge(n, c->Dim(weights, 0), &n));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(hidden, 1), c->Dim(table, 1), &d));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(table, 0), c->Dim(bias, 0), &v));
  bool compute_gradients = false;
  TF_RETURN_IF_ERROR(c->GetAttr("compute_gradients", &compute_gradients));
  c->set_output(0, c->Vector(n));
  c->set_output(1, c->Vector(n));
  c->set_output(2, c->Matrix(compute_gradients ? n : c->MakeDim(0), d));
  c->set_output(3, c->Matrix(compute_gradients ? v : c->MakeDim(0), d));
  c->set_output(4, c->Vector(compute_gradients ? v : c->MakeDim(0)));
  return absl::OkStatus();
}

REGISTER_OP("Research>MaskedSoftmaxXent")
    .Input("hidden: T")
    .Input("embedding_table: T")
    .Input("output_bias: T")
    .Input("labels: int32")
    .Input("weights: float")
    .Attr("T: {float, bfloat16, half}")
    .Attr("compute_gradients: bool = false")
    .Attr("chunk_rows: int >= 0 = 0")
    .Output("loss: float")
    .Output("predicted_ids: int32")
    .Output("unit_d_hidden: float")
    .Output("unit_d_table: float")
    .Output("unit_d_bias: float")
    .SetShapeFn(MaskedSoftmaxXentShape)
    .Doc(R"doc(
Weighted softmax cross-entropy of a tied-embedding output layer, without [N, V] logits.

hidden: [N, D] final hidden states of the predicted positions.
embedding_table: [V, D] output embedding (logits = hidden @ embedding_table^T + output_bias).
output_bias: [V].
labels: int32 [N], each in [0, V) (InvalidArgument otherwise, naming the row and value).
weights: float [N]; rows with weight 0 are skipped entirely.
compute_gradients: also return the gradients of sum(loss) w.r.t. hidden, table and bias.
chunk_rows: rows per chunk (0: automatic, about 24 MB of float32 logits per chunk).
loss: float [N], weights * (logsumexp(logits) - logits[label]); 0 where the weight is 0.
predicted_ids: int32 [N], argmax of the logits (lowest index on ties); -1 where the weight is 0.
unit_d_hidden: float32 [N, D] (or [0, D] without compute_gradients), d sum(loss) / d hidden.
unit_d_table: float32 [V, D] (or [0, D]), d sum(loss) / d embedding_table.
unit_d_bias: float32 [V] (or [0]), d sum(loss) / d output_bias.
)doc");

}  // namespace research
