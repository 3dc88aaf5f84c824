// Research>AttentionSoftmax and Research>AttentionSoftmaxGrad: the softmax of BERT's attention scores
// with the 1 / sqrt(head size) scale and the padding bias folded in, one pass each way.
//
//   AttentionSoftmax(scores [batch, heads, queries, keys], input_mask int32 [batch, keys])
//     -> probs = softmax over keys of (scale * scores + (1 - input_mask) * padding_bias)
//   AttentionSoftmaxGrad(d_probs, probs) -> d_scores = scale * probs * (d_probs - sum_keys(d_probs * probs))
//
// TensorFlow runs these as a multiply, an add and the softmax forward, and four element-wise passes
// (multiply, sum, subtract, multiply) plus the scale's multiply backward, each over the largest tensor
// of a layer's attention. Computed in float32 whatever T, rounded once.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("Research>AttentionSoftmax")
    .Input("scores: T")
    .Input("input_mask: int32")
    .Output("probs: T")
    .Attr("scale: float")
    .Attr("padding_bias: float")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle scores, mask;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &scores));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &mask));
      DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(scores, 0), c->Dim(mask, 0), &unused));
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(scores, 3), c->Dim(mask, 1), &unused));
      c->set_output(0, scores);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Softmax over the last axis of scale * scores + (1 - input_mask) * padding_bias, the mask broadcast
over heads and queries; computed in float32 (see research/ops/attention_softmax.py).
)doc");

REGISTER_OP("Research>AttentionSoftmaxGrad")
    .Input("d_probs: T")
    .Input("probs: T")
    .Output("d_scores: T")
    .Attr("scale: float")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &shape));
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), shape, &shape));
      c->set_output(0, shape);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of Research>AttentionSoftmax with respect to the scores, from its output:
d_scores = scale * probs * (d_probs - sum over keys of d_probs * probs), computed in float32.
)doc");

}  // namespace research
