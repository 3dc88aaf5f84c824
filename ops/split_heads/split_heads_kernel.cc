// CPU kernels of Research>SplitHeads and Research>MergeHeads (contract in split_heads_op.cc).
//
// Work is split over (batch, position) pairs on the intra-op threads; each pair moves groups * heads
// contiguous runs of `size` elements between the token-major and the head-major layout.
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

namespace research {
namespace {

using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::OpOutputList;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// Calls copy(g, token_offset, head_offset) for every run of `size` elements, (b, s, g, h): the run
// starts at token_offset in the token-major [batch, seq_len, groups, heads, size] layout and at
// head_offset in the g-th head-major [batch, heads, seq_len, size] tensor.
template <typename Copy>
void ForEachHeadRun(OpKernelContext* ctx, int64_t batch, int64_t seq_len, int64_t groups, int64_t heads,
                    int64_t size, Copy copy) {
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / seq_len, s = row % seq_len;
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t h = 0; h < heads; ++h) {
          copy(g, ((row * groups + g) * heads + h) * size, ((b * heads + h) * seq_len + s) * size);
        }
      }
    }
  };
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  ::tensorflow::Shard(workers->NumThreads(), workers, batch * seq_len, /*cost_per_unit=*/groups * heads * size,
                      work);
}

template <typename T>
class SplitHeadsOp : public OpKernel {
 public:
  explicit SplitHeadsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_groups", &groups_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_heads", &heads_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 3 && x.dim_size(2) % (groups_ * heads_) == 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "x must be [batch, seq_len, groups * heads * size] with groups * heads = ", groups_, " * ",
                    heads_, ", got ", x.shape().DebugString())));
    const int64_t batch = x.dim_size(0), seq_len = x.dim_size(1), size = x.dim_size(2) / (groups_ * heads_);
    OpOutputList outputs;
    OP_REQUIRES_OK(ctx, ctx->output_list("y", &outputs));
    std::vector<T*> heads(groups_);
    for (int64_t g = 0; g < groups_; ++g) {
      Tensor* y = nullptr;
      OP_REQUIRES_OK(ctx, outputs.allocate(g, TensorShape({batch, heads_, seq_len, size}), &y));
      heads[g] = y->flat<T>().data();
    }
    if (x.NumElements() == 0) return;
    const T* in = x.flat<T>().data();
    const int64_t bytes = size * sizeof(T);
    ForEachHeadRun(ctx, batch, seq_len, groups_, heads_, size, [&](int64_t g, int64_t token, int64_t head) {
      std::memcpy(heads[g] + head, in + token, bytes);
    });
  }

 private:
  int64_t groups_;
  int64_t heads_;
};

template <typename T>
class MergeHeadsOp : public OpKernel {
 public:
  explicit MergeHeadsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OpInputList inputs;
    OP_REQUIRES_OK(ctx, ctx->input_list("x", &inputs));
    const Tensor& first = inputs[0];
    OP_REQUIRES(ctx, first.dims() == 4,
                absl::InvalidArgumentError(absl::StrCat("each x must be [batch, heads, seq_len, size], got ",
                                                        first.shape().DebugString())));
    for (int g = 1; g < inputs.size(); ++g) {
      OP_REQUIRES(ctx, inputs[g].shape() == first.shape(),
                  absl::InvalidArgumentError(absl::StrCat("x[", g, "] ", inputs[g].shape().DebugString(),
                                                          " differs from x[0] ", first.shape().DebugString())));
    }
    const int64_t groups = inputs.size(), batch = first.dim_size(0), heads = first.dim_size(1);
    const int64_t seq_len = first.dim_size(2), size = first.dim_size(3);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, seq_len, groups * heads * size}), &y));
    if (y->NumElements() == 0) return;
    std::vector<const T*> head_major(groups);
    for (int64_t g = 0; g < groups; ++g) head_major[g] = inputs[g].flat<T>().data();
    T* out = y->flat<T>().data();
    const int64_t bytes = size * sizeof(T);
    ForEachHeadRun(ctx, batch, seq_len, groups, heads, size, [&](int64_t g, int64_t token, int64_t head) {
      std::memcpy(out + token, head_major[g] + head, bytes);
    });
  }
};

#define RESEARCH_REGISTER_HEADS(T)                                                                              \
  REGISTER_KERNEL_BUILDER(Name("Research>SplitHeads").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          SplitHeadsOp<T>);                                                                    \
  REGISTER_KERNEL_BUILDER(Name("Research>MergeHeads").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          MergeHeadsOp<T>);

RESEARCH_REGISTER_HEADS(float);
RESEARCH_REGISTER_HEADS(::Eigen::bfloat16);
RESEARCH_REGISTER_HEADS(::Eigen::half);

#undef RESEARCH_REGISTER_HEADS

}  // namespace
}  // namespace research
