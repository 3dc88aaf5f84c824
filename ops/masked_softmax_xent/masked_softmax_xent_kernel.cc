// CPU kernel of Research>SoftmaxXentChunk: the element-wise part of the fused masked-LM head.
//
// research/ops/masked_lm_loss.py walks the rows with a non-zero weight in chunks of R rows; for each
// chunk TensorFlow computes logits = H_c E^T (oneDNN), this kernel turns them, row by row, into the
// loss, the first argmax and (training) G = w (softmax - onehot) in place, plus G's column sums (the
// bias gradient), and TensorFlow again computes dH_c = G E and dE += G^T H_c. Per row, three passes
// over V floats that stay in the L2 cache: max (and argmax) of logits + bias; exp(logits + bias - max)
// stored and summed; scale by w / sum and add into this thread's column sums. Rows are split over the
// intra-op threads, each with its own column-sum row, summed at the end.
// The passes have AVX-512 versions chosen at run time (the library itself is compiled for baseline
// x86-64; other CPUs get scalar loops).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

#include <immintrin.h>

#include "absl/strings/str_cat.h"
#include "common/parts.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// ---- element-wise row passes --------------------------------------------------------------------

struct RowMax {
  float value;
  int64_t index;  // the lowest index holding `value`
};

RowMax MaxBiasScalar(const float* x, const float* bias, int64_t n) {
  RowMax best{-std::numeric_limits<float>::infinity(), 0};
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] + bias[i];
    if (v > best.value) best = {v, i};
  }
  return best;
}

// Sum of exp(x + bias - max); stores the terms in out when out is not null (out may be x).
float ExpSumBiasScalar(const float* x, const float* bias, int64_t n, float max, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp((x[i] + bias[i]) - max);
    if (out) out[i] = e;
    sum += e;
  }
  return static_cast<float>(sum);
}

// x *= scale; column_sums += x.
void ScaleAccumulateScalar(float* x, float* column_sums, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    column_sums[i] += x[i];
  }
}

#define RESEARCH_AVX512 __attribute__((target("avx512f")))

RESEARCH_AVX512 inline __m512 Exp512(__m512 x) {
  // Cephes expf: 2^t * p(r), r = x - t ln2 in [-ln2/2, ln2/2]; about 1 ulp. Clamping at -104 keeps t
  // small; scalef flushes such tiny results to (sub)normals and zero correctly.
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(t, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(t, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, t);
}

RESEARCH_AVX512 inline __mmask16 TailMask(int64_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << remaining) - 1);
}

RESEARCH_AVX512 RowMax MaxBiasAvx512(const float* x, const float* bias, int64_t n) {
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i best_index = _mm512_setzero_si512();
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(bias + i));
    const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, greater, v);
    best_index = _mm512_mask_mov_epi32(best_index, greater, index);
    index = _mm512_add_epi32(index, step);
  }
  if (i < n) {
    const __mmask16 tail = TailMask(n - i);
    const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, x + i), _mm512_maskz_loadu_ps(tail, bias + i));
    const __mmask16 greater = _mm512_mask_cmp_ps_mask(tail, v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, greater, v);
    best_index = _mm512_mask_mov_epi32(best_index, greater, index);
  }
  // Each lane kept the first index of its own maximum: the lowest among the lanes holding the
  // overall maximum is the first index overall.
  const float value = _mm512_reduce_max_ps(best);
  const __mmask16 holders = _mm512_cmp_ps_mask(best, _mm512_set1_ps(value), _CMP_EQ_OQ);
  const int32_t first = holders ? _mm512_mask_reduce_min_epi32(holders, best_index) : 0;
  return {value, first};
}

RESEARCH_AVX512 float ExpSumBiasAvx512(const float* x, const float* bias, int64_t n, float max, float* out) {
  const __m512 shift = _mm512_set1_ps(max);
  __m512 sum0 = _mm512_setzero_ps();
  __m512 sum1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 a0 = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(bias + i));
    const __m512 a1 = _mm512_add_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(bias + i + 16));
    const __m512 e0 = Exp512(_mm512_sub_ps(a0, shift));
    const __m512 e1 = Exp512(_mm512_sub_ps(a1, shift));
    if (out) {
      _mm512_storeu_ps(out + i, e0);
      _mm512_storeu_ps(out + i + 16, e1);
    }
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (; i < n; i += 16) {
    const __mmask16 part = TailMask(n - i);
    const __m512 a = _mm512_add_ps(_mm512_maskz_loadu_ps(part, x + i), _mm512_maskz_loadu_ps(part, bias + i));
    const __m512 e = Exp512(_mm512_sub_ps(a, shift));
    if (out) _mm512_mask_storeu_ps(out + i, part, e);
    sum0 = _mm512_mask_add_ps(sum0, part, sum0, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

RESEARCH_AVX512 void ScaleAccumulateAvx512(float* x, float* column_sums, int64_t n, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(x + i), s);
    _mm512_storeu_ps(x + i, g);
    _mm512_storeu_ps(column_sums + i, _mm512_add_ps(_mm512_loadu_ps(column_sums + i), g));
  }
  if (i < n) {
    const __mmask16 tail = TailMask(n - i);
    const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), s);
    _mm512_mask_storeu_ps(x + i, tail, g);
    _mm512_mask_storeu_ps(column_sums + i, tail, _mm512_add_ps(_mm512_maskz_loadu_ps(tail, column_sums + i), g));
  }
}

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

RowMax MaxBias(const float* x, const float* bias, int64_t n) {
  return HasAvx512() ? MaxBiasAvx512(x, bias, n) : MaxBiasScalar(x, bias, n);
}
float ExpSumBias(const float* x, const float* bias, int64_t n, float max, float* out) {
  return HasAvx512() ? ExpSumBiasAvx512(x, bias, n, max, out) : ExpSumBiasScalar(x, bias, n, max, out);
}
void ScaleAccumulate(float* x, float* column_sums, int64_t n, float scale) {
  HasAvx512() ? ScaleAccumulateAvx512(x, column_sums, n, scale) : ScaleAccumulateScalar(x, column_sums, n, scale);
}

// ---- the kernel -----------------------------------------------------------------------------------

class SoftmaxXentChunkOp : public OpKernel {
 public:
  explicit SoftmaxXentChunkOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("compute_gradients", &compute_gradients_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& logits = ctx->input(0);
    const Tensor& bias = ctx->input(1);
    const Tensor& labels = ctx->input(2);
    const Tensor& weights = ctx->input(3);
    OP_REQUIRES(ctx, logits.dims() == 2 && bias.dims() == 1 && labels.dims() == 1 && weights.dims() == 1,
                absl::InvalidArgumentError(absl::StrCat(
                    "expected logits [R, V], output_bias [V], labels [R], weights [R]; got ",
                    logits.shape().DebugString(), ", ", bias.shape().DebugString(), ", ",
                    labels.shape().DebugString(), ", ", weights.shape().DebugString())));
    const int64_t r = logits.dim_size(0);
    const int64_t v = logits.dim_size(1);
    OP_REQUIRES(ctx, bias.dim_size(0) == v && labels.dim_size(0) == r && weights.dim_size(0) == r,
                absl::InvalidArgumentError(absl::StrCat(
                    "inconsistent shapes: logits ", logits.shape().DebugString(), ", output_bias ",
                    bias.shape().DebugString(), ", labels ", labels.shape().DebugString(), ", weights ",
                    weights.shape().DebugString())));
    OP_REQUIRES(ctx, v <= std::numeric_limits<int32_t>::max(),
                absl::InvalidArgumentError(absl::StrCat("vocabulary ", v, " exceeds int32")));
    const int32_t* label = labels.flat<int32_t>().data();
    for (int64_t i = 0; i < r; ++i) {
      OP_REQUIRES(ctx, label[i] >= 0 && label[i] < v,
                  absl::InvalidArgumentError(absl::StrCat("labels[", i, "] = ", label[i],
                                                          " is outside [0, vocab_size=", v, ")")));
    }
    const bool grads = compute_gradients_;
    Tensor* loss_out = nullptr;
    Tensor* predicted_out = nullptr;
    Tensor* d_logits_out = nullptr;
    Tensor* d_bias_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({r}), &loss_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({r}), &predicted_out));
    if (grads) {
      // G overwrites the logits when their buffer is not shared; otherwise a new buffer.
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 2, logits.shape(), &d_logits_out));
    } else {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({0, v}), &d_logits_out));
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({grads ? v : 0}), &d_bias_out));

    const float* x_all = logits.flat<float>().data();
    const float* bias_f = bias.flat<float>().data();
    const float* weight = weights.flat<float>().data();
    float* loss = loss_out->flat<float>().data();
    int32_t* predicted = predicted_out->flat<int32_t>().data();
    float* g_all = grads ? d_logits_out->flat<float>().data() : nullptr;
    float* d_bias = grads ? d_bias_out->flat<float>().data() : nullptr;

    const int64_t threads = std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
    const int64_t parts = std::min(threads, r);
    // Column sums of G: part 0 adds straight into the output, the others into their own rows.
    Tensor partial_t;
    float* partial = nullptr;
    if (grads) {
      std::fill_n(d_bias, v, 0.0f);
      if (parts > 1) {
        OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({parts - 1, v}), &partial_t));
        partial = partial_t.flat<float>().data();
        std::fill_n(partial, (parts - 1) * v, 0.0f);
      }
    }
    RunParts(ctx, parts, [&](int64_t part) {
      const int64_t a = PartBegin(r, parts, part), b = PartBegin(r, parts, part + 1);
      float* column_sums = grads ? (part == 0 ? d_bias : partial + (part - 1) * v) : nullptr;
      for (int64_t j = a; j < b; ++j) {
        const float* x = x_all + j * v;
        float* g = grads ? g_all + j * v : nullptr;
        const float w = weight[j];
        if (w == 0.0f || v == 0) {
          loss[j] = 0.0f;
          predicted[j] = -1;
          if (g) std::fill_n(g, v, 0.0f);
          continue;
        }
        const RowMax best = MaxBias(x, bias_f, v);
        const float target = x[label[j]] + bias_f[label[j]];  // read before g (maybe x) is written
        const float sum = ExpSumBias(x, bias_f, v, best.value, g);
        loss[j] = w * ((best.value - target) + std::log(sum));
        predicted[j] = static_cast<int32_t>(best.index);
        if (g) {
          ScaleAccumulate(g, column_sums, v, w / sum);
          g[label[j]] -= w;
          column_sums[label[j]] -= w;
        }
      }
    });
    if (grads && parts > 1) {
      RunParts(ctx, parts, [&](int64_t part) {
        const int64_t v0 = PartBegin(v, parts, part), v1 = PartBegin(v, parts, part + 1);
        for (int64_t p = 0; p < parts - 1; ++p) {
          const float* src = partial + p * v;
          for (int64_t k = v0; k < v1; ++k) d_bias[k] += src[k];
        }
      });
    }
  }

 private:
  bool compute_gradients_ = false;
};

// Research>AccumulateRows: rows [start, start + m) of the accumulator += update, in place when the
// accumulator's buffer can be forwarded; rows split over the intra-op threads.
class AccumulateRowsOp : public OpKernel {
 public:
  explicit AccumulateRowsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& accumulator = ctx->input(0);
    const Tensor& update = ctx->input(1);
    const Tensor& start_t = ctx->input(2);
    OP_REQUIRES(ctx, accumulator.dims() == 2 && update.dims() == 2 && start_t.dims() == 0 &&
                         update.dim_size(1) == accumulator.dim_size(1),
                absl::InvalidArgumentError(absl::StrCat("expected accumulator [V, D], update [M, D], start scalar; got ",
                                                        accumulator.shape().DebugString(), ", ",
                                                        update.shape().DebugString(), ", ",
                                                        start_t.shape().DebugString())));
    const int64_t start = start_t.scalar<int32_t>()();
    const int64_t m = update.dim_size(0), d = update.dim_size(1);
    OP_REQUIRES(ctx, start >= 0 && start + m <= accumulator.dim_size(0),
                absl::InvalidArgumentError(absl::StrCat("rows [", start, ", ", start + m, ") outside the accumulator's ",
                                                        accumulator.dim_size(0))));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, accumulator.shape(), &output));
    float* out = output->flat<float>().data();
    const float* in = accumulator.flat<float>().data();
    if (out != in) std::copy_n(in, accumulator.NumElements(), out);
    const float* add = update.flat<float>().data();
    const int64_t threads = std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
    const int64_t parts = std::min(threads, m);
    RunParts(ctx, parts, [&](int64_t part) {
      const int64_t a = PartBegin(m, parts, part) * d, b = PartBegin(m, parts, part + 1) * d;
      float* dst = out + start * d;
      for (int64_t k = a; k < b; ++k) dst[k] += add[k];
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("Research>SoftmaxXentChunk").Device(::tensorflow::DEVICE_CPU), SoftmaxXentChunkOp);
REGISTER_KERNEL_BUILDER(Name("Research>AccumulateRows").Device(::tensorflow::DEVICE_CPU), AccumulateRowsOp);

}  // namespace
}  // namespace research
