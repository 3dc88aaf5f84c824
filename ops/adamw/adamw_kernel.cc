// CPU kernel of Research>ResourceApplyAdamW (contract in adamw_op.cc).
//
// Locking and copy-on-write follow TensorFlow's own ResourceApplyAdam (training_op_helpers.h): the
// variable, m and v are locked in address order (exclusively with use_locking), and a buffer that a
// reader still shares is copied before it is updated. The element loop is compiled for AVX-512 and
// AVX2 besides the baseline, picked at load time (target_clones), and split over the intra-op threads;
// it is compiled without FMA contraction (CMakeLists.txt), so that every product and sum rounds as in
// TensorFlow's multiply, subtract and ApplyAdam kernels and the twin agrees bit for bit.
#define EIGEN_USE_THREADS

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using CPUDevice = Eigen::ThreadPoolDevice;

struct AdamWCoefficients {
  float decay;       // var -= var * decay
  float one_minus_beta1;
  float one_minus_beta2;
  float alpha;       // lr * sqrt(1 - beta2^t) / (1 - beta1^t)
  float epsilon;
};

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void ApplyAdamW(float* var, float* m, float* v, const float* grad, int64_t n, AdamWCoefficients c) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float m_new = m[i] + (g - m[i]) * c.one_minus_beta1;
    const float v_new = v[i] + (g * g - v[i]) * c.one_minus_beta2;
    m[i] = m_new;
    v[i] = v_new;
    const float decayed = c.decay != 0.0f ? var[i] - var[i] * c.decay : var[i];  // 0: not decayed at all
    var[i] = decayed - c.alpha * m_new / (std::sqrt(v_new) + c.epsilon);
  }
}

class ResourceApplyAdamWOp : public OpKernel {
 public:
  explicit ResourceApplyAdamWOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_exclusive_lock_));
  }

  void Compute(OpKernelContext* ctx) override {
    auto locks = ::tensorflow::MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(
        ctx, use_exclusive_lock_, /*sparse=*/false, {0, 1, 2});
    Tensor var, m, v;
    OP_REQUIRES_OK(ctx, ::tensorflow::GetInputTensorFromVariable<CPUDevice, float>(ctx, 0, use_exclusive_lock_,
                                                                                    false, &var));
    OP_REQUIRES_OK(ctx, ::tensorflow::GetInputTensorFromVariable<CPUDevice, float>(ctx, 1, use_exclusive_lock_,
                                                                                    false, &m));
    OP_REQUIRES_OK(ctx, ::tensorflow::GetInputTensorFromVariable<CPUDevice, float>(ctx, 2, use_exclusive_lock_,
                                                                                    false, &v));
    const char* names[] = {"var", "m", "v"};
    const Tensor* slots[] = {&var, &m, &v};
    for (int i = 0; i < 3; ++i) {
      OP_REQUIRES(ctx, slots[i]->IsInitialized(),
                  absl::FailedPreconditionError(absl::StrCat("Research>ResourceApplyAdamW: ", names[i],
                                                             " is not initialized")));
    }
    const Tensor& grad = ctx->input(10);
    for (int i = 0; i < 3; ++i) {
      OP_REQUIRES(ctx, slots[i]->shape() == grad.shape(),
                  absl::InvalidArgumentError(absl::StrCat("Research>ResourceApplyAdamW: ", names[i], " ",
                                                          slots[i]->shape().DebugString(), " and grad ",
                                                          grad.shape().DebugString(), " must have the same shape")));
    }
    float scalar[7];
    const char* scalar_names[] = {"beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon", "decay"};
    for (int i = 0; i < 7; ++i) {
      const Tensor& t = ctx->input(3 + i);
      OP_REQUIRES(ctx, ::tensorflow::TensorShapeUtils::IsScalar(t.shape()),
                  absl::InvalidArgumentError(absl::StrCat("Research>ResourceApplyAdamW: ", scalar_names[i],
                                                          " must be a scalar, got ", t.shape().DebugString())));
      scalar[i] = t.scalar<float>()();
    }
    const float beta1_power = scalar[0], beta2_power = scalar[1], lr = scalar[2];
    const AdamWCoefficients c{scalar[6], 1.0f - scalar[3], 1.0f - scalar[4],
                              lr * std::sqrt(1.0f - beta2_power) / (1.0f - beta1_power), scalar[5]};
    float* var_data = var.flat<float>().data();
    float* m_data = m.flat<float>().data();
    float* v_data = v.flat<float>().data();
    const float* grad_data = grad.flat<float>().data();
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    ::tensorflow::Shard(workers->NumThreads(), workers, grad.NumElements(), /*cost_per_unit=*/16,
                        [&](int64_t begin, int64_t end) {
                          ApplyAdamW(var_data + begin, m_data + begin, v_data + begin, grad_data + begin, end - begin, c);
                        });
  }

 private:
  bool use_exclusive_lock_ = false;
};

REGISTER_KERNEL_BUILDER(Name("Research>ResourceApplyAdamW").Device(::tensorflow::DEVICE_CPU).TypeConstraint<float>("T"),
                        ResourceApplyAdamWOp);

}  // namespace
}  // namespace research
