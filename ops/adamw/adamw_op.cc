// Research>ResourceApplyAdamW: one AdamW step of a resource variable in one pass over its elements.
//
//   var -= var * decay                                   (decoupled weight decay, first: Keras' order)
//   m += (grad - m) * (1 - beta1)
//   v += (grad^2 - v) * (1 - beta2)
//   var -= lr * sqrt(1 - beta2_power) / (1 - beta1_power) * m / (sqrt(v) + epsilon)
//
// The same step as Keras' AdamW on TensorFlow (a decay pass `var.assign_sub(var * decay)`, then
// ResourceApplyAdam), without the decay's own read and write of the variable and its temporary.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

REGISTER_OP("Research>ResourceApplyAdamW")
    .Input("var: resource")
    .Input("m: resource")
    .Input("v: resource")
    .Input("beta1_power: T")
    .Input("beta2_power: T")
    .Input("lr: T")
    .Input("beta1: T")
    .Input("beta2: T")
    .Input("epsilon: T")
    .Input("decay: T")
    .Input("grad: T")
    .Attr("T: {float}")
    .Attr("use_locking: bool = false")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle unused;
      for (int i = 3; i < 10; ++i) TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
      return absl::OkStatus();
    })
    .Doc(R"doc(
One AdamW step: decoupled weight decay `var -= var * decay`, then TensorFlow's ApplyAdam update, in one
pass (see research/ops/adamw.py).
)doc");

}  // namespace research
