// Research>GatherPositions and Research>GatherPositionsGrad: the per-row gather of the masked-LM
// head (the hidden states at the predicted positions) and its scatter-add gradient.
//
//   GatherPositions(sequence [batch, seq_len, hidden], positions int32 [batch, P]) -> [batch, P, hidden]
//     output[b, p, :] = sequence[b, positions[b, p], :]      (tf.gather(sequence, positions, batch_dims=1))
//   GatherPositionsGrad(grad [batch, P, hidden], positions int32 [batch, P], seq_len int32 scalar)
//     -> [batch, seq_len, hidden], zero except output[b, positions[b, p], :] += grad[b, p, :]
//     (duplicate positions accumulate; bfloat16 and half accumulate in float32).
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

// `input` must have `rank`; the message names the op, the input and its expected layout.
absl::Status RequireRank(InferenceContext* c, const char* op, int index, const char* name, int rank,
                         const char* layout, ShapeHandle* out) {
  ShapeHandle shape = c->input(index);
  if (c->RankKnown(shape) && c->Rank(shape) != rank) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must be rank ", rank, " ", layout,
                                                   ", got rank ", c->Rank(shape), " with shape ",
                                                   c->DebugString(shape)));
  }
  return c->WithRank(shape, rank, out);
}

// The batch sizes of two inputs must agree.
absl::Status MergeBatch(InferenceContext* c, const char* op, const char* name, ShapeHandle values,
                        ShapeHandle positions, DimensionHandle* batch) {
  if (!c->Merge(c->Dim(values, 0), c->Dim(positions, 0), batch).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " ", c->DebugString(values),
                                                   " and positions ", c->DebugString(positions),
                                                   " must have the same batch size"));
  }
  return absl::OkStatus();
}

absl::Status GatherPositionsShape(InferenceContext* c) {
  constexpr char kOp[] = "Research>GatherPositions";
  ShapeHandle sequence, positions;
  TF_RETURN_IF_ERROR(RequireRank(c, kOp, 0, "sequence", 3, "[batch, seq_len, hidden]", &sequence));
  TF_RETURN_IF_ERROR(RequireRank(c, kOp, 1, "positions", 2, "[batch, P]", &positions));
  DimensionHandle batch;
  TF_RETURN_IF_ERROR(MergeBatch(c, kOp, "sequence", sequence, positions, &batch));
  c->set_output(0, c->MakeShape({batch, c->Dim(positions, 1), c->Dim(sequence, 2)}));
  return absl::OkStatus();
}

absl::Status GatherPositionsGradShape(InferenceContext* c) {
  constexpr char kOp[] = "Research>GatherPositionsGrad";
  ShapeHandle grad, positions, seq_len_shape;
  TF_RETURN_IF_ERROR(RequireRank(c, kOp, 0, "grad", 3, "[batch, P, hidden]", &grad));
  TF_RETURN_IF_ERROR(RequireRank(c, kOp, 1, "positions", 2, "[batch, P]", &positions));
  TF_RETURN_IF_ERROR(RequireRank(c, kOp, 2, "seq_len", 0, "(a scalar)", &seq_len_shape));
  DimensionHandle batch, num_positions;
  TF_RETURN_IF_ERROR(MergeBatch(c, kOp, "grad", grad, positions, &batch));
  if (!c->Merge(c->Dim(grad, 1), c->Dim(positions, 1), &num_positions).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": grad ", c->DebugString(grad), " and positions ",
                                                   c->DebugString(positions), " must have the same P"));
  }
  DimensionHandle seq_len;
  TF_RETURN_IF_ERROR(c->MakeDimForScalarInput(2, &seq_len));
  c->set_output(0, c->MakeShape({batch, seq_len, c->Dim(grad, 2)}));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Research>GatherPositions")
    .Input("sequence: T")
    .Input("positions: int32")
    .Output("output: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(GatherPositionsShape)
    .Doc(R"doc(
Per-row gather: output[b, p, :] = sequence[b, positions[b, p], :] (see research/ops/gather_positions.py).

sequence: [batch, seq_len, hidden].
positions: int32 [batch, P], each in [0, seq_len); anything else is an InvalidArgument naming it.
output: [batch, P, hidden], the dtype of sequence.
)doc");

REGISTER_OP("Research>GatherPositionsGrad")
    .Input("grad: T")
    .Input("positions: int32")
    .Input("seq_len: int32")
    .Output("output: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(GatherPositionsGradShape)
    .Doc(R"doc(
Gradient of Research>GatherPositions with respect to sequence: a per-row scatter-add.

grad: [batch, P, hidden], the gradient of the gathered output.
positions: int32 [batch, P], each in [0, seq_len).
seq_len: int32 scalar, the length of the gathered sequence.
output: [batch, seq_len, hidden], zero where no position points; duplicate positions accumulate
  (in float32 for bfloat16 and half, rounded once).
)doc");

}  // namespace research
