// Research>Gelu and Research>GeluGrad: the exact (erf) GELU of BERT's feed-forward layers, one pass each.
//
//   Gelu(x) -> y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//   GeluGrad(dy, x) -> dx = dy * (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//
//   BiasGelu(x [..., C], bias [C]) -> y = Gelu(x + bias)
//   BiasGeluGrad(dy, x, bias) -> dx = GeluGrad(dy, x + bias), d_bias = dx summed over all but the last axis
//
// TensorFlow composes GELU from five element-wise ops and its gradient from about eight, each a pass
// over the [tokens, intermediate] activations; these compute in float32 whatever T and round once.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

REGISTER_OP("Research>Gelu")
    .Input("x: T")
    .Output("y: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc(R"doc(
Exact GELU, y = 0.5 x (1 + erf(x / sqrt(2))), computed in float32 (see research/ops/gelu.py).
)doc");

REGISTER_OP("Research>GeluGrad")
    .Input("dy: T")
    .Input("x: T")
    .Output("dx: T")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle shape;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &shape));
      c->set_output(0, shape);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of Research>Gelu: dx = dy * (Phi(x) + x * phi(x)), computed in float32.
)doc");

REGISTER_OP("Research>BiasGelu")
    .Input("x: T")
    .Input("bias: T")
    .Output("y: T")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle x, bias;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &bias));
      ::tensorflow::shape_inference::DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, -1), c->Dim(bias, 0), &unused));
      c->set_output(0, x);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Exact GELU of x + bias (bias added along the last axis), computed in float32: a feed-forward layer's
bias add and activation in one pass.
)doc");

REGISTER_OP("Research>BiasGeluGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("bias: T")
    .Output("dx: T")
    .Output("d_bias: T")
    .Attr("T: {float, bfloat16}")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle shape, bias;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &shape));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &bias));
      c->set_output(0, shape);
      c->set_output(1, bias);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Gradient of Research>BiasGelu: dx = dy * gelu'(x + bias) and d_bias, the column sums of dx, in one pass
(float32 sums, in a fixed order for a given thread count).
)doc");

}  // namespace research
