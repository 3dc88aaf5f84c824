// CPU kernels of Research>Gelu and Research>GeluGrad (contract in gelu_op.cc).
//
// Eigen tensor expressions on the op's CPU device: one fused, vectorized pass split over the
// intra-op threads, with Eigen's float32 erf and exp (the same functions TensorFlow's Erf and Exp
// kernels use). bfloat16 and half are widened to float32 and rounded once at the end.
#define EIGEN_USE_THREADS

#include <type_traits>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

constexpr float kSqrtHalf = 0.70710678118654752440f;       // 1 / sqrt(2)
constexpr float kInvSqrtTwoPi = 0.39894228040143267794f;   // 1 / sqrt(2 pi)

template <typename T>
class GeluOp : public OpKernel {
 public:
  explicit GeluOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (x.NumElements() == 0) return;
    const auto& device = ctx->eigen_cpu_device();
    auto in = x.flat<T>();
    auto out = y->flat<T>();
    if constexpr (std::is_same_v<T, float>) {
      out.device(device) = in * ((in * kSqrtHalf).erf() + 1.0f) * 0.5f;
    } else {
      auto v = in.template cast<float>();
      out.device(device) = (v * ((v * kSqrtHalf).erf() + 1.0f) * 0.5f).template cast<T>();
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
    const auto& device = ctx->eigen_cpu_device();
    auto out = dx->flat<T>();
    if constexpr (std::is_same_v<T, float>) {
      auto v = x.flat<float>();
      auto g = dy.flat<float>();
      out.device(device) = g * (((v * kSqrtHalf).erf() + 1.0f) * 0.5f + v * (v * v * -0.5f).exp() * kInvSqrtTwoPi);
    } else {
      auto v = x.flat<T>().template cast<float>();
      auto g = dy.flat<T>().template cast<float>();
      out.device(device) =
          (g * (((v * kSqrtHalf).erf() + 1.0f) * 0.5f + v * (v * v * -0.5f).exp() * kInvSqrtTwoPi)).template cast<T>();
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
