// Research>LayerNorm and Research>LayerNormGrad: layer normalization over the last axis, fused.
//
//   LayerNorm(x: T [..., C], gamma f32 [C], beta f32 [C]; epsilon)
//     -> y: T = (x - mean) * rstd * gamma + beta, mean f32 [rows], rstd f32 [rows]  (rows = size / C)
//   LayerNormGrad(dy: T, x: T, gamma, mean, rstd) -> dx: T, dgamma f32 [C], dbeta f32 [C]
//
// TensorFlow's composition (moments, rsqrt, scale, shift) makes about six passes over x forward and
// a dozen backward; these make one forward and two (per row, in cache) backward. Statistics and
// arithmetic are float32 for every T; the variance is the two-pass mean of squared deviations.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

absl::Status LayerNormShape(InferenceContext* c) {
  ShapeHandle x, gamma, beta;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &gamma));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &beta));
  DimensionHandle channels;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, -1), c->Dim(gamma, 0), &channels));
  TF_RETURN_IF_ERROR(c->Merge(channels, c->Dim(beta, 0), &channels));
  c->set_output(0, x);
  c->set_output(1, c->Vector(InferenceContext::kUnknownDim));
  c->set_output(2, c->Vector(InferenceContext::kUnknownDim));
  return absl::OkStatus();
}

absl::Status LayerNormGradShape(InferenceContext* c) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &x));
  c->set_output(0, x);
  c->set_output(1, c->input(2));
  c->set_output(2, c->input(2));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Research>LayerNorm")
    .Input("x: T")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("y: T")
    .Output("mean: float")
    .Output("rstd: float")
    .Attr("T: {float, bfloat16, half}")
    .Attr("epsilon: float")
    .SetShapeFn(LayerNormShape)
    .Doc(R"doc(
Layer normalization over the last axis (see research/ops/layer_norm.py).
)doc");

REGISTER_OP("Research>LayerNormGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("gamma: float")
    .Input("mean: float")
    .Input("rstd: float")
    .Output("dx: T")
    .Output("dgamma: float")
    .Output("dbeta: float")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn(LayerNormGradShape)
    .Doc(R"doc(
Gradients of Research>LayerNorm with respect to x, gamma and beta.
)doc");

}  // namespace research
