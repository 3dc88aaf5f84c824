// Research>SoftmaxXentChunk: the element-wise part of the fused masked-LM head, one chunk of rows at a
// time (see research/ops/masked_lm_loss.py, which runs the matrix products as TensorFlow matmuls).
//
// Given the bias-free logits of a chunk of R rows against the whole vocabulary, transposed ([V, R]: the
// layout in which the table gradient's product needs no transpose and vocabulary slices are contiguous),
// it adds the bias and computes each column's loss w * (logsumexp - logit[label]), its first argmax
// and, with compute_gradients, the gradient of sum(loss) w.r.t. the transposed logits,
// G^T = w * (softmax - onehot), written over the logits buffer when TensorFlow lets it be forwarded (no
// second [V, R] buffer), together with its row sums (the chunk's bias gradient).
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

absl::Status SoftmaxXentChunkShape(InferenceContext* c) {
  ShapeHandle logits, bias, labels, weights;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &logits));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &bias));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &labels));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &weights));
  DimensionHandle r, v;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(logits, 1), c->Dim(labels, 0), &r));
  TF_RETURN_IF_ERROR(c->Merge(r, c->Dim(weights, 0), &r));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(logits, 0), c->Dim(bias, 0), &v));
  bool compute_gradients = false;
  TF_RETURN_IF_ERROR(c->GetAttr("compute_gradients", &compute_gradients));
  c->set_output(0, c->Vector(r));
  c->set_output(1, c->Vector(r));
  c->set_output(2, compute_gradients ? c->Matrix(v, r) : c->Matrix(v, c->MakeDim(0)));
  c->set_output(3, c->Vector(compute_gradients ? v : c->MakeDim(0)));
  return absl::OkStatus();
}

REGISTER_OP("Research>SoftmaxXentChunk")
    .Input("transposed_logits: float")
    .Input("output_bias: float")
    .Input("labels: int32")
    .Input("weights: float")
    .Attr("compute_gradients: bool = false")
    .Output("loss: float")
    .Output("predicted_ids: int32")
    .Output("unit_d_transposed_logits: float")
    .Output("unit_d_bias: float")
    .SetShapeFn(SoftmaxXentChunkShape)
    .Doc(R"doc(
Weighted softmax cross-entropy, argmax and logit gradients of one chunk of rows.

transposed_logits: float32 [V, R], embedding_table @ hidden_chunk^T (the bias is added here).
output_bias: float32 [V].
labels: int32 [R], each in [0, V) (InvalidArgument otherwise, naming the row and value).
weights: float32 [R]; a row with weight 0 gets loss 0, predicted id -1 and a zero gradient.
compute_gradients: also return the gradient of sum(loss) w.r.t. the logits and the bias.
loss: float32 [R], weights * (logsumexp(logits + bias) - (logits + bias)[label]), per column.
predicted_ids: int32 [R], argmax of logits + bias (lowest index on ties); -1 where the weight is 0.
unit_d_transposed_logits: float32 [V, R] (or [V, 0] without compute_gradients), the transpose of
  weights * (softmax - onehot(label)); it reuses the logits buffer when that is not shared.
unit_d_bias: float32 [V] (or [0]), the row sums of unit_d_transposed_logits.
)doc");

REGISTER_OP("Research>AccumulateRows")
    .Input("accumulator: float")
    .Input("update: float")
    .Input("start: int32")
    .Output("output: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle accumulator, update, unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &accumulator));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &update));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 0, &unused));
      DimensionHandle width;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(accumulator, 1), c->Dim(update, 1), &width));
      c->set_output(0, accumulator);
      return absl::OkStatus();
    })
    .Doc(R"doc(
output = accumulator with update added to rows [start, start + rows(update)).

The accumulator's buffer is reused when it is not shared (the chunked masked-LM head accumulates its
[V, D] table gradient this way without a [V, D] temporary); otherwise it is copied first.
)doc");

}  // namespace research
