// Research>Dropout: inverted dropout whose keep mask is a pure function of (seed, element index).
//
//   Dropout(x: T, seed: int64 [2]; threshold, scale) -> y: T
//     y[i] = keep(i) ? x[i] * T(scale) : 0,   keep(i) = Hash(seed, i) >= threshold
//
// The mask is never stored: the gradient is the same op applied to the upstream gradient with the
// same seed (y is linear in x), so the backward pass regenerates the mask instead of reading a
// [..] boolean tensor saved by the forward pass. The hash is defined in dropout_hash.h and
// reproduced with TensorFlow ops by the reference twin (research/ops/dropout.py), bit for bit.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("Research>Dropout")
    .Input("x: T")
    .Input("seed: int64")
    .Output("y: T")
    .Attr("T: {float, bfloat16, half}")
    .Attr("threshold: int >= 0")
    .Attr("scale: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle seed;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &seed));
      if (c->ValueKnown(c->Dim(seed, 0)) && c->Value(c->Dim(seed, 0)) != 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("Research>Dropout: seed must have shape [2], got ", c->DebugString(seed)));
      }
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Inverted dropout with a stateless, index-keyed mask (see research/ops/dropout.py).

x: any shape.
seed: int64 [2]; the same seed gives the same mask for the same shape.
threshold: an element is kept when its 32-bit hash is >= threshold (round(rate * 2^32), < 2^32).
scale: kept elements are multiplied by scale (1 / (1 - rate)), rounded to T first.
y: the shape and dtype of x.
)doc");

}  // namespace research
