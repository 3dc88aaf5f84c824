// Research>SplitHeads and Research>MergeHeads: attention's head layout changes as one copy each, each
// the other's gradient.
//
//   SplitHeads(x [batch, seq_len, groups * heads * size]) -> groups tensors [batch, heads, seq_len, size]
//   MergeHeads(groups tensors [batch, heads, seq_len, size]) -> [batch, seq_len, groups * heads * size]
//
// With groups = 3 the first splits a fused query/key/value projection; with groups = 1 the second
// merges the attention context back. TensorFlow does these as a transpose and an unstack forward and
// a stack and a transpose backward; a head's `size` values are contiguous on both sides, so each is
// one pass of row copies.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace research {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("Research>SplitHeads")
    .Input("x: T")
    .Output("y: num_groups * T")
    .Attr("num_groups: int >= 1")
    .Attr("num_heads: int >= 1")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &x));
      int64_t groups, heads;
      TF_RETURN_IF_ERROR(c->GetAttr("num_groups", &groups));
      TF_RETURN_IF_ERROR(c->GetAttr("num_heads", &heads));
      DimensionHandle size;
      TF_RETURN_IF_ERROR(c->Divide(c->Dim(x, 2), groups * heads, /*evenly_divisible=*/true, &size));
      ShapeHandle y = c->MakeShape({c->Dim(x, 0), c->MakeDim(heads), c->Dim(x, 1), size});
      for (int64_t g = 0; g < groups; ++g) c->set_output(g, y);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Splits [batch, seq_len, groups * heads * size] into `groups` tensors [batch, heads, seq_len, size]
(see research/ops/split_heads.py).
)doc");

REGISTER_OP("Research>MergeHeads")
    .Input("x: num_groups * T")
    .Output("y: T")
    .Attr("num_groups: int >= 1")
    .Attr("T: {float, bfloat16, half}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
      for (int g = 1; g < c->num_inputs(); ++g) TF_RETURN_IF_ERROR(c->Merge(x, c->input(g), &x));
      DimensionHandle width;
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(x, 1), c->Dim(x, 3), &width));
      TF_RETURN_IF_ERROR(c->Multiply(width, c->num_inputs(), &width));
      c->set_output(0, c->MakeShape({c->Dim(x, 0), c->Dim(x, 2), width}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Merges `groups` tensors [batch, heads, seq_len, size] into [batch, seq_len, groups * heads * size], the
inverse of Research>SplitHeads.
)doc");

}  // namespace research
