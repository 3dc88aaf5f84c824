// CPU kernels of Research>LayerNorm and Research>LayerNormGrad (contract in layer_norm_op.cc).
//
// Rows are split over the intra-op threads; within a row everything stays in cache. The row loops
// are compiled for AVX-512 and AVX2 besides the baseline and picked at load time (target_clones).
// 16-bit rows are widened into a float32 scratch row first. The gamma/beta gradients are summed per
// thread part, then the parts are added in a fixed order (deterministic for a given thread count).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/lane_reductions.h"
#include "common/parts.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

#define RESEARCH_LN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

RESEARCH_LN_CLONES
void RowStatistics(const float* x, int64_t n, float epsilon, float* mean_out, float* rstd_out) {
  const float mean = LaneSum(n, [&](int64_t j) { return x[j]; }) / static_cast<float>(n);
  const float squares = LaneSum(n, [&](int64_t j) { return (x[j] - mean) * (x[j] - mean); });
  *mean_out = mean;
  *rstd_out = 1.0f / std::sqrt(squares / static_cast<float>(n) + epsilon);
}

RESEARCH_LN_CLONES
void RowForward(const float* x, int64_t n, float mean, float rstd, const float* gamma, const float* beta, float* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
}

// dx of one row; adds the row's dy * xhat and dy into the gamma and beta gradient sums.
RESEARCH_LN_CLONES
void RowBackward(const float* x, const float* dy, int64_t n, float mean, float rstd, const float* gamma, float* dx,
                 float* dgamma, float* dbeta) {
  // Both sums and the gamma and beta gradients in one pass over the row.
  float g_lanes[kLanes] = {}, g_xhat_lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float xhat = (x[j + k] - mean) * rstd;
      const float g = dy[j + k] * gamma[j + k];
      g_lanes[k] += g;
      g_xhat_lanes[k] += g * xhat;
      dgamma[j + k] += dy[j + k] * xhat;
      dbeta[j + k] += dy[j + k];
    }
  }
  float sum_g = SumOfLanes(g_lanes), sum_g_xhat = SumOfLanes(g_xhat_lanes);
  for (; j < n; ++j) {
    const float xhat = (x[j] - mean) * rstd;
    const float g = dy[j] * gamma[j];
    sum_g += g;
    sum_g_xhat += g * xhat;
    dgamma[j] += dy[j] * xhat;
    dbeta[j] += dy[j];
  }
  const float mean_g = sum_g / static_cast<float>(n), mean_g_xhat = sum_g_xhat / static_cast<float>(n);
  for (j = 0; j < n; ++j) {
    const float xhat = (x[j] - mean) * rstd;
    dx[j] = rstd * (dy[j] * gamma[j] - mean_g - xhat * mean_g_xhat);
  }
}

// A row of T as float32: the row itself for float, else widened into `scratch`.
template <typename T>
const float* AsFloat(const T* row, int64_t n, std::vector<float>* scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return row;
  } else {
    scratch->resize(n);
    for (int64_t j = 0; j < n; ++j) (*scratch)[j] = static_cast<float>(row[j]);
    return scratch->data();
  }
}

// Where a float32 row result goes: straight into the output for float, through `scratch` otherwise.
template <typename T>
float* OutRow(T* row, int64_t n, std::vector<float>* scratch) {
  if constexpr (std::is_same_v<T, float>) {
    return row;
  } else {
    scratch->resize(n);
    return scratch->data();
  }
}

template <typename T>
void StoreRow(const float* values, int64_t n, T* row) {
  if constexpr (!std::is_same_v<T, float>) {
    for (int64_t j = 0; j < n; ++j) row[j] = static_cast<T>(values[j]);
  }
}

int64_t NumParts(OpKernelContext* ctx, int64_t rows, int64_t channels) {
  const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  const int64_t by_size = std::max<int64_t>(1, rows * channels / (16 * 1024));  // >= 16K elements a part
  return std::max<int64_t>(1, std::min({threads, by_size, rows}));
}

absl::Status CheckChannels(const Tensor& x, const Tensor& gamma, const char* name) {
  if (x.dims() < 1) return absl::InvalidArgumentError(absl::StrCat("x must have rank >= 1, got a scalar"));
  if (gamma.dims() != 1 || gamma.dim_size(0) != x.dim_size(x.dims() - 1)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must have shape [", x.dim_size(x.dims() - 1),
                                                   "] (x's last axis), got ", gamma.shape().DebugString()));
  }
  return absl::OkStatus();
}

template <typename T>
class LayerNormOp : public OpKernel {
 public:
  explicit LayerNormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& gamma = ctx->input(1);
    const Tensor& beta = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckChannels(x, gamma, "gamma"));
    OP_REQUIRES_OK(ctx, CheckChannels(x, beta, "beta"));
    const int64_t channels = x.dim_size(x.dims() - 1);
    const int64_t rows = channels == 0 ? 0 : x.NumElements() / channels;
    Tensor *y = nullptr, *mean = nullptr, *rstd = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({rows}), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({rows}), &rstd));
    if (rows == 0 || channels == 0) return;
    const T* in = x.flat<T>().data();
    T* out = y->flat<T>().data();
    const float* g = gamma.flat<float>().data();
    const float* b = beta.flat<float>().data();
    float* means = mean->flat<float>().data();
    float* rstds = rstd->flat<float>().data();
    const float epsilon = epsilon_;
    const int64_t parts = NumParts(ctx, rows, channels);
    RunParts(ctx, parts, [&](int64_t part) {
      const int64_t begin = PartBegin(rows, parts, part), end = PartBegin(rows, parts, part + 1);
      std::vector<float> in_scratch, out_scratch;
      for (int64_t r = begin; r < end; ++r) {
        const float* row = AsFloat(in + r * channels, channels, &in_scratch);
        RowStatistics(row, channels, epsilon, means + r, rstds + r);
        float* result = OutRow(out + r * channels, channels, &out_scratch);
        RowForward(row, channels, means[r], rstds[r], g, b, result);
        StoreRow(result, channels, out + r * channels);
      }
    });
  }

 private:
  float epsilon_ = 0.0f;
};

template <typename T>
class LayerNormGradOp : public OpKernel {
 public:
  explicit LayerNormGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& gamma = ctx->input(2);
    const Tensor& mean = ctx->input(3);
    const Tensor& rstd = ctx->input(4);
    OP_REQUIRES(ctx, dy.shape() == x.shape(),
                absl::InvalidArgumentError(absl::StrCat("dy ", dy.shape().DebugString(), " and x ",
                                                        x.shape().DebugString(), " must have the same shape")));
    OP_REQUIRES_OK(ctx, CheckChannels(x, gamma, "gamma"));
    const int64_t channels = x.dim_size(x.dims() - 1);
    const int64_t rows = channels == 0 ? 0 : x.NumElements() / channels;
    OP_REQUIRES(ctx, mean.NumElements() == rows && rstd.NumElements() == rows,
                absl::InvalidArgumentError(absl::StrCat("mean and rstd must have ", rows, " elements, got ",
                                                        mean.NumElements(), " and ", rstd.NumElements())));
    Tensor *dx = nullptr, *dgamma = nullptr, *dbeta = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({channels}), &dgamma));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({channels}), &dbeta));
    float* dgamma_out = dgamma->flat<float>().data();
    float* dbeta_out = dbeta->flat<float>().data();
    std::fill(dgamma_out, dgamma_out + channels, 0.0f);
    std::fill(dbeta_out, dbeta_out + channels, 0.0f);
    if (rows == 0 || channels == 0) return;
    const T* in = x.flat<T>().data();
    const T* grad = dy.flat<T>().data();
    T* out = dx->flat<T>().data();
    const float* g = gamma.flat<float>().data();
    const float* means = mean.flat<float>().data();
    const float* rstds = rstd.flat<float>().data();
    const int64_t parts = NumParts(ctx, rows, channels);
    std::vector<float> partial(static_cast<size_t>(parts) * 2 * channels, 0.0f);  // [part][dgamma | dbeta]
    RunParts(ctx, parts, [&](int64_t part) {
      const int64_t begin = PartBegin(rows, parts, part), end = PartBegin(rows, parts, part + 1);
      std::vector<float> x_scratch, dy_scratch, out_scratch;
      float* part_dgamma = partial.data() + part * 2 * channels;
      for (int64_t r = begin; r < end; ++r) {
        const float* x_row = AsFloat(in + r * channels, channels, &x_scratch);
        const float* dy_row = AsFloat(grad + r * channels, channels, &dy_scratch);
        float* result = OutRow(out + r * channels, channels, &out_scratch);
        RowBackward(x_row, dy_row, channels, means[r], rstds[r], g, result, part_dgamma, part_dgamma + channels);
        StoreRow(result, channels, out + r * channels);
      }
    });
    for (int64_t p = 0; p < parts; ++p) {
      const float* part_sums = partial.data() + p * 2 * channels;
      for (int64_t j = 0; j < channels; ++j) {
        dgamma_out[j] += part_sums[j];
        dbeta_out[j] += part_sums[channels + j];
      }
    }
  }
};

#define RESEARCH_REGISTER_LAYER_NORM(T)                                                                          \
  REGISTER_KERNEL_BUILDER(Name("Research>LayerNorm").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),     \
                          LayerNormOp<T>);                                                                       \
  REGISTER_KERNEL_BUILDER(Name("Research>LayerNormGrad").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          LayerNormGradOp<T>);

RESEARCH_REGISTER_LAYER_NORM(float);
RESEARCH_REGISTER_LAYER_NORM(::Eigen::bfloat16);
RESEARCH_REGISTER_LAYER_NORM(::Eigen::half);

#undef RESEARCH_REGISTER_LAYER_NORM

}  // namespace
}  // namespace research
