// CPU kernels of Research>Gelu, Research>GeluGrad, Research>BiasGelu and Research>BiasGeluGrad
// (contract in gelu_op.cc).
//
// One pass over the elements, split over the intra-op threads. float32 and bfloat16 have loops that
// the compiler vectorizes, compiled for AVX-512 and AVX2 besides the baseline and picked at load time
// (target_clones): erf and exp are written out as polynomials for that (a libm call would keep the
// loop scalar). bfloat16 is widened and rounded as raw bits inside the loop; half goes through
// Eigen's scalar conversions (float16 is a GPU format). Everything is computed in float32 and rounded
// once. The bias variants work row by row; BiasGeluGrad sums the bias gradient per thread part and adds
// the parts in a fixed order.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bfloat16_bits.h"
#include "common/exp_non_positive.h"
#include "common/parts.h"
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

#define RESEARCH_GELU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

constexpr float kSqrtHalf = 0.70710678118654752440f;      // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143267794f;  // 1 / sqrt(2 pi)

// erf(z): the odd/even 11/10-degree rational approximation that TensorFlow's own Erf kernel
// evaluates (Eigen's float erf, about 3 ulp), so that the kernels agree with their twin to round-off.
inline float Erf(float z) {
  const float z2 = std::min(z * z, 16.0f);  // erf(4) rounds to 1; the clamp keeps p / q finite
  float p = 2.123732201653183437883853912353515625e-06f;
  p = p * z2 + 2.861979592125862836837768554687500000e-04f;
  p = p * z2 + 3.658048342913389205932617187500000000e-03f;
  p = p * z2 + 5.243302136659622192382812500000000000e-02f;
  p = p * z2 + 1.874160766601562500000000000000000000e-01f;
  p = p * z2 + 1.128379106521606445312500000000000000e+00f;
  float q = 3.89185734093189239501953125000e-05f;
  q = q * z2 + 1.14329601638019084930419921875e-03f;
  q = q * z2 + 1.47520881146192550659179687500e-02f;
  q = q * z2 + 1.12945675849914550781250000000e-01f;
  q = q * z2 + 4.99425798654556274414062500000e-01f;
  q = q * z2 + 1.0f;
  return std::max(std::min(z * p / q, 1.0f), -1.0f);
}

// x Phi(x).
inline float GeluValue(float x) { return x * ((Erf(x * kSqrtHalf) + 1.0f) * 0.5f); }

// dy (Phi(x) + x phi(x)).
inline float GeluGradValue(float dy, float x) {
  return dy * ((Erf(x * kSqrtHalf) + 1.0f) * 0.5f + x * ExpNonPositive(x * x * -0.5f) * kInvSqrtTwoPi);
}

RESEARCH_GELU_CLONES
void GeluFloat(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = GeluValue(x[i]);
}

RESEARCH_GELU_CLONES
void GeluGradFloat(const float* dy, const float* x, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = GeluGradValue(dy[i], x[i]);
}

RESEARCH_GELU_CLONES
void GeluBfloat16(const uint16_t* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = FloatToBfloat16Bits(GeluValue(Bfloat16BitsToFloat(x[i])));
}

RESEARCH_GELU_CLONES
void GeluGradBfloat16(const uint16_t* dy, const uint16_t* x, uint16_t* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = FloatToBfloat16Bits(GeluGradValue(Bfloat16BitsToFloat(dy[i]), Bfloat16BitsToFloat(x[i])));
  }
}

void GeluHalf(const Eigen::half* x, Eigen::half* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<Eigen::half>(GeluValue(static_cast<float>(x[i])));
}

void GeluGradHalf(const Eigen::half* dy, const Eigen::half* x, Eigen::half* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = static_cast<Eigen::half>(GeluGradValue(static_cast<float>(dy[i]), static_cast<float>(x[i])));
  }
}

void Gelu(const float* x, float* y, int64_t n) { GeluFloat(x, y, n); }
void Gelu(const Eigen::bfloat16* x, Eigen::bfloat16* y, int64_t n) {
  GeluBfloat16(reinterpret_cast<const uint16_t*>(x), reinterpret_cast<uint16_t*>(y), n);
}
void Gelu(const Eigen::half* x, Eigen::half* y, int64_t n) { GeluHalf(x, y, n); }

void GeluGrad(const float* dy, const float* x, float* dx, int64_t n) { GeluGradFloat(dy, x, dx, n); }
void GeluGrad(const Eigen::bfloat16* dy, const Eigen::bfloat16* x, Eigen::bfloat16* dx, int64_t n) {
  GeluGradBfloat16(reinterpret_cast<const uint16_t*>(dy), reinterpret_cast<const uint16_t*>(x),
                   reinterpret_cast<uint16_t*>(dx), n);
}
void GeluGrad(const Eigen::half* dy, const Eigen::half* x, Eigen::half* dx, int64_t n) { GeluGradHalf(dy, x, dx, n); }

// One row of BiasGelu / BiasGeluGrad over n channels; the bias is float32 whatever T. The gradient
// adds its row into d_bias_sums.
RESEARCH_GELU_CLONES
void BiasGeluRowFloat(const float* x, const float* bias, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = GeluValue(x[j] + bias[j]);
}

RESEARCH_GELU_CLONES
void BiasGeluRowBfloat16(const uint16_t* x, const float* bias, uint16_t* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = FloatToBfloat16Bits(GeluValue(Bfloat16BitsToFloat(x[j]) + bias[j]));
}

RESEARCH_GELU_CLONES
void BiasGeluGradRowFloat(const float* dy, const float* x, const float* bias, float* dx, float* d_bias_sums,
                          int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float d = GeluGradValue(dy[j], x[j] + bias[j]);
    dx[j] = d;
    d_bias_sums[j] += d;
  }
}

RESEARCH_GELU_CLONES
void BiasGeluGradRowBfloat16(const uint16_t* dy, const uint16_t* x, const float* bias, uint16_t* dx,
                             float* d_bias_sums, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float d = GeluGradValue(Bfloat16BitsToFloat(dy[j]), Bfloat16BitsToFloat(x[j]) + bias[j]);
    dx[j] = FloatToBfloat16Bits(d);
    d_bias_sums[j] += d;  // the unrounded value, as a float32 sum of the float32 gradient would
  }
}

void BiasGeluRow(const float* x, const float* bias, float* y, int64_t n) { BiasGeluRowFloat(x, bias, y, n); }
void BiasGeluRow(const Eigen::bfloat16* x, const float* bias, Eigen::bfloat16* y, int64_t n) {
  BiasGeluRowBfloat16(reinterpret_cast<const uint16_t*>(x), bias, reinterpret_cast<uint16_t*>(y), n);
}
void BiasGeluGradRow(const float* dy, const float* x, const float* bias, float* dx, float* sums, int64_t n) {
  BiasGeluGradRowFloat(dy, x, bias, dx, sums, n);
}
void BiasGeluGradRow(const Eigen::bfloat16* dy, const Eigen::bfloat16* x, const float* bias, Eigen::bfloat16* dx,
                     float* sums, int64_t n) {
  BiasGeluGradRowBfloat16(reinterpret_cast<const uint16_t*>(dy), reinterpret_cast<const uint16_t*>(x), bias,
                          reinterpret_cast<uint16_t*>(dx), sums, n);
}

absl::Status CheckSameShape(const Tensor& dy, const Tensor& x) {
  if (dy.shape() == x.shape()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("dy ", dy.shape().DebugString(), " and x ", x.shape().DebugString(), " must have the same shape"));
}

// The bias as float32, checked against x's last axis.
template <typename T>
absl::Status BiasAsFloat(const Tensor& x, const Tensor& bias, std::vector<float>* out) {
  if (x.dims() < 1 || bias.dims() != 1 || bias.dim_size(0) != x.dim_size(x.dims() - 1)) {
    return absl::InvalidArgumentError(absl::StrCat("bias must be [channels] for x's last axis, got bias ",
                                                   bias.shape().DebugString(), " for x ", x.shape().DebugString()));
  }
  const T* values = bias.flat<T>().data();
  out->resize(bias.NumElements());
  for (int64_t j = 0; j < bias.NumElements(); ++j) (*out)[j] = static_cast<float>(values[j]);
  return absl::OkStatus();
}

// Runs work(begin, end) over [0, n) on the intra-op threads; `cost` is a rough cycle count per element.
template <typename Work>
void ShardElements(OpKernelContext* ctx, int64_t n, int64_t cost, Work work) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  ::tensorflow::Shard(workers->NumThreads(), workers, n, cost, work);
}

template <typename T>
class GeluOp : public OpKernel {
 public:
  explicit GeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const T* in = x.flat<T>().data();
    T* out = y->flat<T>().data();
    ShardElements(ctx, x.NumElements(), /*cost=*/8,
                  [&](int64_t begin, int64_t end) { Gelu(in + begin, out + begin, end - begin); });
  }
};

template <typename T>
class GeluGradOp : public OpKernel {
 public:
  explicit GeluGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckSameShape(dy, x));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dx));
    const T* gradient = dy.flat<T>().data();
    const T* in = x.flat<T>().data();
    T* out = dx->flat<T>().data();
    ShardElements(ctx, x.NumElements(), /*cost=*/12, [&](int64_t begin, int64_t end) {
      GeluGrad(gradient + begin, in + begin, out + begin, end - begin);
    });
  }
};

template <typename T>
class BiasGeluOp : public OpKernel {
 public:
  explicit BiasGeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    std::vector<float> bias;
    OP_REQUIRES_OK(ctx, BiasAsFloat<T>(x, ctx->input(1), &bias));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    const int64_t channels = bias.size();
    if (x.NumElements() == 0) return;
    const T* in = x.flat<T>().data();
    T* out = y->flat<T>().data();
    ShardElements(ctx, x.NumElements() / channels, /*cost=*/8 * channels, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        BiasGeluRow(in + row * channels, bias.data(), out + row * channels, channels);
      }
    });
  }
};

template <typename T>
class BiasGeluGradOp : public OpKernel {
 public:
  explicit BiasGeluGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckSameShape(dy, x));
    std::vector<float> bias;
    OP_REQUIRES_OK(ctx, BiasAsFloat<T>(x, ctx->input(2), &bias));
    Tensor* dx = nullptr;
    Tensor* d_bias = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0, 1}, 0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(), &d_bias));
    const int64_t channels = bias.size();
    const int64_t rows = channels == 0 ? 0 : x.NumElements() / channels;
    const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    const int64_t parts = std::max<int64_t>(1, std::min(threads, rows * channels / (16 * 1024)));
    std::vector<float> sums(parts * channels, 0.0f);
    const T* gradient = dy.flat<T>().data();
    const T* in = x.flat<T>().data();
    T* out = dx->flat<T>().data();
    RunParts(ctx, rows == 0 ? 0 : parts, [&](int64_t part) {
      float* part_sums = sums.data() + part * channels;
      for (int64_t row = PartBegin(rows, parts, part); row < PartBegin(rows, parts, part + 1); ++row) {
        BiasGeluGradRow(gradient + row * channels, in + row * channels, bias.data(), out + row * channels, part_sums,
                        channels);
      }
    });
    T* bias_out = d_bias->flat<T>().data();
    for (int64_t j = 0; j < channels; ++j) {
      float total = 0.0f;
      for (int64_t p = 0; p < parts; ++p) total += sums[p * channels + j];
      bias_out[j] = static_cast<T>(total);
    }
  }
};

#define RESEARCH_REGISTER_BIAS_GELU(T)                                                                            \
  REGISTER_KERNEL_BUILDER(Name("Research>BiasGelu").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
                          BiasGeluOp<T>);                                                                        \
  REGISTER_KERNEL_BUILDER(Name("Research>BiasGeluGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          BiasGeluGradOp<T>);

RESEARCH_REGISTER_BIAS_GELU(float);
RESEARCH_REGISTER_BIAS_GELU(::Eigen::bfloat16);

#undef RESEARCH_REGISTER_BIAS_GELU

#define RESEARCH_REGISTER_GELU(T)                                                                            \
  REGISTER_KERNEL_BUILDER(Name("Research>Gelu").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
                          GeluOp<T>);                                                                        \
  REGISTER_KERNEL_BUILDER(Name("Research>GeluGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          GeluGradOp<T>);

RESEARCH_REGISTER_GELU(float);
RESEARCH_REGISTER_GELU(::Eigen::bfloat16);
RESEARCH_REGISTER_GELU(::Eigen::half);

#undef RESEARCH_REGISTER_GELU

}  // namespace
}  // namespace research
