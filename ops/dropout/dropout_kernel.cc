// CPU kernel of Research>Dropout (see dropout_op.cc for the contract, dropout_hash.h for the mask).
//
// One pass over x: hash the element index, compare, scale or zero. float32 and bfloat16 have
// vectorized loops compiled for AVX-512 and AVX2 besides the baseline, picked at load time
// (target_clones); half goes through Eigen's scalar conversions (float16 is a GPU format). Large
// tensors are split over the intra-op threads.
#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/bfloat16_bits.h"
#include "dropout/dropout_hash.h"
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

#define RESEARCH_DROPOUT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// The mask of elements [first, first + n) of one 2^32-element segment (`index_hi`), applied.
struct Segment {
  uint32_t first_lo;
  uint32_t hi_term;  // index_hi ^ 0x85ebca6b
  uint32_t key;
  uint32_t threshold;
};

RESEARCH_DROPOUT_CLONES
void ApplyFloat(const float* x, float* y, int64_t n, Segment s, float scale) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t h = DropoutMix(DropoutMix((s.first_lo + static_cast<uint32_t>(j)) ^ s.key) + s.hi_term);
    y[j] = h >= s.threshold ? x[j] * scale : 0.0f;
  }
}

// bfloat16 as raw bits: widen, multiply in float32, round to nearest even (NaN to the quiet NaN of
// its sign), which is what Eigen's bfloat16 multiply does, so the twin's `x * scale` agrees bit for bit.
RESEARCH_DROPOUT_CLONES
void ApplyBfloat16(const uint16_t* x, uint16_t* y, int64_t n, Segment s, float scale) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t h = DropoutMix(DropoutMix((s.first_lo + static_cast<uint32_t>(j)) ^ s.key) + s.hi_term);
    const uint16_t out = FloatToBfloat16Bits(Bfloat16BitsToFloat(x[j]) * scale);
    y[j] = h >= s.threshold ? out : static_cast<uint16_t>(0);
  }
}

void ApplyHalf(const Eigen::half* x, Eigen::half* y, int64_t n, Segment s, Eigen::half scale) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t h = DropoutMix(DropoutMix((s.first_lo + static_cast<uint32_t>(j)) ^ s.key) + s.hi_term);
    y[j] = h >= s.threshold ? x[j] * scale : Eigen::half(0.0f);
  }
}

template <typename T>
void Apply(const T* x, T* y, int64_t n, Segment s, T scale);
template <>
void Apply<float>(const float* x, float* y, int64_t n, Segment s, float scale) {
  ApplyFloat(x, y, n, s, scale);
}
template <>
void Apply<Eigen::bfloat16>(const Eigen::bfloat16* x, Eigen::bfloat16* y, int64_t n, Segment s,
                            Eigen::bfloat16 scale) {
  ApplyBfloat16(reinterpret_cast<const uint16_t*>(x), reinterpret_cast<uint16_t*>(y), n, s, static_cast<float>(scale));
}
template <>
void Apply<Eigen::half>(const Eigen::half* x, Eigen::half* y, int64_t n, Segment s, Eigen::half scale) {
  ApplyHalf(x, y, n, s, scale);
}

// Elements [begin, end) of the flat tensor, cut where the index's high word changes.
template <typename T>
void ApplyRange(const T* x, T* y, int64_t begin, int64_t end, uint32_t key, uint32_t threshold, T scale) {
  constexpr int64_t kSegment = int64_t{1} << 32;
  while (begin < end) {
    const int64_t segment_end = std::min(end, (begin / kSegment + 1) * kSegment);
    const Segment s{static_cast<uint32_t>(begin), static_cast<uint32_t>(begin >> 32) ^ 0x85ebca6bU, key, threshold};
    Apply<T>(x + begin, y + begin, segment_end - begin, s, scale);
    begin = segment_end;
  }
}

template <typename T>
class DropoutOp : public OpKernel {
 public:
  explicit DropoutOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    int64_t threshold = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("threshold", &threshold));
    OP_REQUIRES(ctx, threshold >= 0 && threshold < (int64_t{1} << 32),
                absl::InvalidArgumentError(absl::StrCat("threshold must be in [0, 2^32), got ", threshold)));
    threshold_ = static_cast<uint32_t>(threshold);
    float scale = 0.0f;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale));
    scale_ = static_cast<T>(scale);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& seed = ctx->input(1);
    OP_REQUIRES(ctx, seed.dims() == 1 && seed.dim_size(0) == 2,
                absl::InvalidArgumentError(absl::StrCat("seed must have shape [2], got ", seed.shape().DebugString())));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const int64_t total = x.NumElements();
    if (total == 0) return;
    const auto seed_values = seed.flat<int64_t>();
    const uint32_t key = DropoutKey(seed_values(0), seed_values(1));
    const T* in = x.flat<T>().data();
    T* out = y->flat<T>().data();
    const uint32_t threshold = threshold_;
    const T scale = scale_;
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    // ~2 ns an element on one core: the pool is only worth it from tens of thousands of elements.
    ::tensorflow::Shard(workers->NumThreads(), workers, total, /*cost_per_unit=*/8,
                        [&](int64_t begin, int64_t end) { ApplyRange<T>(in, out, begin, end, key, threshold, scale); });
  }

 private:
  uint32_t threshold_ = 0;
  T scale_;
};

#define RESEARCH_REGISTER_DROPOUT(T)                                                                    \
  REGISTER_KERNEL_BUILDER(Name("Research>Dropout").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T") \
                              .HostMemory("seed"),                                                      \
                          DropoutOp<T>);

RESEARCH_REGISTER_DROPOUT(float);
RESEARCH_REGISTER_DROPOUT(::Eigen::bfloat16);
RESEARCH_REGISTER_DROPOUT(::Eigen::half);

#undef RESEARCH_REGISTER_DROPOUT

}  // namespace
}  // namespace research
