// Research>Gelu and Research>GeluGrad: the exact (erf) GELU of BERT's feed-forward layers, one pass each.
//
//   Gelu(x) -> y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
//   GeluGrad(dy, x) -> dx = dy * (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
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

}  // namespace research
