// CPU kernels of Research>AttentionSoftmax and Research>AttentionSoftmaxGrad (contract in
// attention_softmax_op.cc).
//
// Rows (one per batch, head and query) are split over the intra-op threads; a row of keys stays in
// cache between its passes. The row loops are compiled for AVX-512 and AVX2 besides the baseline and
// picked at load time (target_clones); maxima and sums vectorize through common/lane_reductions.h.
// bfloat16 rows are widened into float32 scratch rows and rounded once at the end.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bfloat16_bits.h"
#include "common/exp_non_positive.h"
#include "common/lane_reductions.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

#define RESEARCH_ATTENTION_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// probs = softmax(scale * scores + bias) over n keys; probs may be scores.
RESEARCH_ATTENTION_CLONES
void SoftmaxRow(const float* scores, const float* bias, int64_t n, float scale, float* probs) {
  for (int64_t j = 0; j < n; ++j) probs[j] = scores[j] * scale + bias[j];
  const float max = LaneMax(probs, n);
  const float sum = LaneSum(n, [&](int64_t j) { return probs[j] = ExpNonPositive(probs[j] - max); });
  const float inverse = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) probs[j] *= inverse;
}

// d_scores = scale * probs * (d_probs - sum(d_probs * probs)) over n keys; d_scores may alias either input.
RESEARCH_ATTENTION_CLONES
void SoftmaxGradRow(const float* d_probs, const float* probs, int64_t n, float scale, float* d_scores) {
  const float dot = LaneSum(n, [&](int64_t j) { return d_probs[j] * probs[j]; });
  for (int64_t j = 0; j < n; ++j) d_scores[j] = (d_probs[j] - dot) * probs[j] * scale;
}

RESEARCH_ATTENTION_CLONES
void WidenRow(const uint16_t* in, int64_t n, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = Bfloat16BitsToFloat(in[j]);
}

RESEARCH_ATTENTION_CLONES
void NarrowRow(const float* in, int64_t n, uint16_t* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = FloatToBfloat16Bits(in[j]);
}

// One row of each op for T; `scratch` holds 2 n floats for bfloat16 and is unused for float.
void ForwardRow(const float* scores, const float* bias, int64_t n, float scale, float* probs, float*) {
  SoftmaxRow(scores, bias, n, scale, probs);
}
void ForwardRow(const Eigen::bfloat16* scores, const float* bias, int64_t n, float scale, Eigen::bfloat16* probs,
                float* scratch) {
  WidenRow(reinterpret_cast<const uint16_t*>(scores), n, scratch);
  SoftmaxRow(scratch, bias, n, scale, scratch);
  NarrowRow(scratch, n, reinterpret_cast<uint16_t*>(probs));
}

void BackwardRow(const float* d_probs, const float* probs, int64_t n, float scale, float* d_scores, float*) {
  SoftmaxGradRow(d_probs, probs, n, scale, d_scores);
}
void BackwardRow(const Eigen::bfloat16* d_probs, const Eigen::bfloat16* probs, int64_t n, float scale,
                 Eigen::bfloat16* d_scores, float* scratch) {
  WidenRow(reinterpret_cast<const uint16_t*>(d_probs), n, scratch);
  WidenRow(reinterpret_cast<const uint16_t*>(probs), n, scratch + n);
  SoftmaxGradRow(scratch, scratch + n, n, scale, scratch);
  NarrowRow(scratch, n, reinterpret_cast<uint16_t*>(d_scores));
}

// Runs work(first_row, end_row, scratch) over [0, rows) on the intra-op threads, with the scratch
// that rows of T need (none for float).
template <typename T, typename Work>
void ShardRows(OpKernelContext* ctx, int64_t rows, int64_t row_length, Work work) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  const int64_t scratch_length = std::is_same_v<T, float> ? 0 : 2 * row_length;
  ::tensorflow::Shard(workers->NumThreads(), workers, rows, /*cost_per_unit=*/row_length * 20,
                      [&](int64_t begin, int64_t end) {
                        std::vector<float> scratch(scratch_length);
                        work(begin, end, scratch.data());
                      });
}

template <typename T>
class AttentionSoftmaxOp : public OpKernel {
 public:
  explicit AttentionSoftmaxOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding_bias", &padding_bias_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& scores = ctx->input(0);
    const Tensor& input_mask = ctx->input(1);
    OP_REQUIRES(ctx, scores.dims() == 4,
                absl::InvalidArgumentError(absl::StrCat("scores must be [batch, heads, queries, keys], got ",
                                                        scores.shape().DebugString())));
    OP_REQUIRES(ctx,
                input_mask.dims() == 2 && input_mask.dim_size(0) == scores.dim_size(0) &&
                    input_mask.dim_size(1) == scores.dim_size(3),
                absl::InvalidArgumentError(absl::StrCat("input_mask must be [batch, keys] = [", scores.dim_size(0),
                                                        ", ", scores.dim_size(3), "] for scores ",
                                                        scores.shape().DebugString(), ", got ",
                                                        input_mask.shape().DebugString())));
    Tensor* probs = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, scores.shape(), &probs));
    const int64_t batch = scores.dim_size(0), keys = scores.dim_size(3);
    const int64_t rows_per_example = scores.dim_size(1) * scores.dim_size(2);
    if (scores.NumElements() == 0) return;
    // The additive padding bias of every example's keys, as the twin computes it.
    std::vector<float> bias(batch * keys);
    const int32_t* mask = input_mask.flat<int32_t>().data();
    for (int64_t i = 0; i < batch * keys; ++i) bias[i] = (1.0f - static_cast<float>(mask[i])) * padding_bias_;
    const T* in = scores.flat<T>().data();
    T* out = probs->flat<T>().data();
    ShardRows<T>(ctx, batch * rows_per_example, keys, [&](int64_t begin, int64_t end, float* scratch) {
      for (int64_t row = begin; row < end; ++row) {
        ForwardRow(in + row * keys, bias.data() + (row / rows_per_example) * keys, keys, scale_, out + row * keys,
                   scratch);
      }
    });
  }

 private:
  float scale_;
  float padding_bias_;
};

template <typename T>
class AttentionSoftmaxGradOp : public OpKernel {
 public:
  explicit AttentionSoftmaxGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& d_probs = ctx->input(0);
    const Tensor& probs = ctx->input(1);
    OP_REQUIRES(ctx, probs.dims() == 4 && d_probs.shape() == probs.shape(),
                absl::InvalidArgumentError(absl::StrCat("d_probs ", d_probs.shape().DebugString(), " and probs ",
                                                        probs.shape().DebugString(),
                                                        " must have the same [batch, heads, queries, keys] shape")));
    Tensor* d_scores = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0, 1}, 0, probs.shape(), &d_scores));
    const int64_t keys = probs.dim_size(3);
    if (probs.NumElements() == 0) return;
    const T* gradient = d_probs.flat<T>().data();
    const T* in = probs.flat<T>().data();
    T* out = d_scores->flat<T>().data();
    ShardRows<T>(ctx, probs.NumElements() / keys, keys, [&](int64_t begin, int64_t end, float* scratch) {
      for (int64_t row = begin; row < end; ++row) {
        BackwardRow(gradient + row * keys, in + row * keys, keys, scale_, out + row * keys, scratch);
      }
    });
  }

 private:
  float scale_;
};

#define RESEARCH_REGISTER_ATTENTION_SOFTMAX(T)                                                        \
  REGISTER_KERNEL_BUILDER(                                                                            \
      Name("Research>AttentionSoftmax").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),      \
      AttentionSoftmaxOp<T>);                                                                         \
  REGISTER_KERNEL_BUILDER(                                                                            \
      Name("Research>AttentionSoftmaxGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),  \
      AttentionSoftmaxGradOp<T>);

RESEARCH_REGISTER_ATTENTION_SOFTMAX(float);
RESEARCH_REGISTER_ATTENTION_SOFTMAX(::Eigen::bfloat16);

#undef RESEARCH_REGISTER_ATTENTION_SOFTMAX

}  // namespace
}  // namespace research
