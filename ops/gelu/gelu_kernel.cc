// CPU kernels of Research>Gelu and Research>GeluGrad (contract in gelu_op.cc).
//
// Eigen tensor expressions: one fused, vectorized pass split over the intra-op threads, with Eigen's
// float32 erf and exp (the same functions TensorFlow's Erf and Exp kernels use). bfloat16 and half are
// widened to float32 a block at a time into a small buffer, computed by the same float32 expression and
// rounded once: Eigen has no 16-bit packets without AVX, so an expression that casts element by element
// runs scalar (erf and exp included), about four times slower.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "common/parts.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

constexpr float kSqrtHalf = 0.70710678118654752440f;       // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)
constexpr int64_t kBlock = 2048;  // 16-bit inputs: elements widened at a time (8 KB of float32 each)

using ConstFloats = Eigen::TensorMap<Eigen::Tensor<const float, 1, Eigen::RowMajor>>;
using Floats = Eigen::TensorMap<Eigen::Tensor<float, 1, Eigen::RowMajor>>;

// y = x Phi(x), single-threaded and vectorized.
void GeluBlock(const float* x, int64_t n, float* y) {
  ConstFloats in(x, n);
  Floats(y, n) = in * ((in * kSqrtHalf).erf() + 1.0f) * 0.5f;
}

// dx = dy (Phi(x) + x phi(x)), single-threaded and vectorized.
void GeluGradBlock(const float* dy, const float* x, int64_t n, float* dx) {
  ConstFloats g(dy, n), v(x, n);
  Floats(dx, n) = g * (((v * kSqrtHalf).erf() + 1.0f) * 0.5f + v * (v * v * -0.5f).exp() * kInvSqrtTwoPi);
}

// Runs `block(widened inputs..., n, float output)` over 16-bit tensors of n elements, a block at a time,
// the blocks split over the intra-op threads.
template <typename T, int kInputs, typename Block>
void RunWidened(OpKernelContext* ctx, const T* const (&inputs)[kInputs], int64_t n, T* output, Block block) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int64_t threads = std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
  const int64_t parts = std::min(threads, blocks);
  RunParts(ctx, parts, [&](int64_t part) {
    float widened[kInputs][kBlock];
    float result[kBlock];
    for (int64_t b = PartBegin(blocks, parts, part); b < PartBegin(blocks, parts, part + 1); ++b) {
      const int64_t begin = b * kBlock, size = std::min(kBlock, n - begin);
      for (int k = 0; k < kInputs; ++k) {
        for (int64_t i = 0; i < size; ++i) widened[k][i] = static_cast<float>(inputs[k][begin + i]);
      }
      if constexpr (kInputs == 1) {
        block(widened[0], size, result);
      } else {
        block(widened[0], widened[1], size, result);
      }
      for (int64_t i = 0; i < size; ++i) output[begin + i] = static_cast<T>(result[i]);
    }
  });
}

template <typename T>
class GeluOp : public OpKernel {
 public:
  explicit GeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (x.NumElements() == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      auto in = x.flat<float>();
      y->flat<float>().device(ctx->eigen_cpu_device()) = in * ((in * kSqrtHalf).erf() + 1.0f) * 0.5f;
    } else {
      const T* const inputs[1] = {x.flat<T>().data()};
      RunWidened<T, 1>(ctx, inputs, x.NumElements(), y->flat<T>().data(), GeluBlock);
    }
  }
};

template <typename T>
class GeluGradOp : public OpKernel {
 public:
  explicit GeluGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    OP_REQUIRES(ctx, dy.shape() == x.shape(),
                absl::InvalidArgumentError(absl::StrCat("dy ", dy.shape().DebugString(), " and x ",
                                                        x.shape().DebugString(), " must have the same shape")));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dx));
    if (x.NumElements() == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      auto v = x.flat<float>();
      auto g = dy.flat<float>();
      dx->flat<float>().device(ctx->eigen_cpu_device()) =
          g * (((v * kSqrtHalf).erf() + 1.0f) * 0.5f + v * (v * v * -0.5f).exp() * kInvSqrtTwoPi);
    } else {
      const T* const inputs[2] = {dy.flat<T>().data(), x.flat<T>().data()};
      RunWidened<T, 2>(ctx, inputs, x.NumElements(), dx->flat<T>().data(), GeluGradBlock);
    }
  }
};

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
