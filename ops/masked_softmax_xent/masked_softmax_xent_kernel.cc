// CPU kernel of Research>SoftmaxXentChunk: the element-wise part of the fused masked-LM head.
//
// research/ops/masked_lm_loss.py walks the rows with a non-zero weight in chunks of R rows; for each
// chunk TensorFlow computes the transposed logits L = E H_c^T ([V, R], oneDNN), this kernel turns them
// into each column's loss, first argmax and (training) G^T = w (softmax - onehot) in place, plus G^T's
// row sums (the bias gradient), and TensorFlow again computes dH_c = G E and dE += G^T H_c (an
// untransposed product that oneDNN accumulates in place). The softmax runs down the columns of L, so
// every pass is vectorized across the R columns of a vocabulary row: (A) each column's max and argmax
// of L + bias, (B) exp(L + bias - max) stored and summed per column, (C) scaling by w / sum and summing
// each vocabulary row. The vocabulary rows are split over the intra-op threads in every pass; the
// per-thread column statistics are merged between passes.
// The passes have AVX-512 versions chosen at run time (the library itself is compiled for baseline
// x86-64; other CPUs get scalar loops).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

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

// ---- element-wise passes over one vocabulary row of R columns ----------------------------------

// best[c], best_index[c] = value and index of the first maximum of x[c] + b over the rows seen so far.
void RowMaxScalar(const float* x, float b, int32_t row, float* best, int32_t* best_index, int64_t r) {
  for (int64_t c = 0; c < r; ++c) {
    const float v = x[c] + b;
    if (v > best[c]) {
      best[c] = v;
      best_index[c] = row;
    }
  }
}

// sums[c] += exp(x[c] + b - max[c]); the terms are stored in out when out is not null (out may be x).
void RowExpSumScalar(const float* x, float b, const float* max, float* sums, float* out, int64_t r) {
  for (int64_t c = 0; c < r; ++c) {
    const float e = std::exp((x[c] + b) - max[c]);
    if (out) out[c] = e;
    sums[c] += e;
  }
}

// g[c] *= scale[c]; returns the sum of the scaled row.
float RowScaleSumScalar(float* g, const float* scale, int64_t r) {
  double sum = 0.0;
  for (int64_t c = 0; c < r; ++c) {
    g[c] *= scale[c];
    sum += g[c];
  }
  return static_cast<float>(sum);
}

// out[c] = exp(a[c] - b[c]).
void ExpDifferenceScalar(const float* a, const float* b, float* out, int64_t r) {
  for (int64_t c = 0; c < r; ++c) out[c] = std::exp(a[c] - b[c]);
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

// The AVX-512 passes never mask their stores to the per-column arrays (best, best_index, sums), which
// the next row reads back at once: a load of a masked store's bytes is not forwarded from the store
// buffer and stalls until the store retires. Those arrays are padded to a multiple of 16 columns; only
// the logits' last, partial vector of a row is read and written masked.

RESEARCH_AVX512 inline void MaxStep(const float* x, __m512 bias, __m512i index, float* best, int32_t* best_index,
                                    __mmask16 part) {
  const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(part, x), bias);
  const __m512 current = _mm512_loadu_ps(best);
  const __mmask16 greater = _mm512_mask_cmp_ps_mask(part, v, current, _CMP_GT_OQ);
  _mm512_storeu_ps(best, _mm512_mask_mov_ps(current, greater, v));
  _mm512_storeu_si512(best_index, _mm512_mask_mov_epi32(_mm512_loadu_si512(best_index), greater, index));
}

RESEARCH_AVX512 void RowMaxAvx512(const float* x, float b, int32_t row, float* best, int32_t* best_index,
                                  int64_t r) {
  const __m512 bias = _mm512_set1_ps(b);
  const __m512i index = _mm512_set1_epi32(row);
  int64_t c = 0;
  for (; c + 16 <= r; c += 16) MaxStep(x + c, bias, index, best + c, best_index + c, 0xFFFF);
  if (c < r) MaxStep(x + c, bias, index, best + c, best_index + c, TailMask(r - c));
}

RESEARCH_AVX512 void RowExpSumAvx512(const float* x, float b, const float* max, float* sums, float* out,
                                     int64_t r) {
  const __m512 bias = _mm512_set1_ps(b);
  int64_t c = 0;
  for (; c + 16 <= r; c += 16) {
    const __m512 e = Exp512(_mm512_sub_ps(_mm512_add_ps(_mm512_loadu_ps(x + c), bias), _mm512_loadu_ps(max + c)));
    if (out) _mm512_storeu_ps(out + c, e);
    _mm512_storeu_ps(sums + c, _mm512_add_ps(_mm512_loadu_ps(sums + c), e));
  }
  if (c < r) {
    const __mmask16 part = TailMask(r - c);
    const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(part, x + c), bias);
    const __m512 e = _mm512_maskz_mov_ps(part, Exp512(_mm512_sub_ps(v, _mm512_loadu_ps(max + c))));
    if (out) _mm512_mask_storeu_ps(out + c, part, e);
    _mm512_storeu_ps(sums + c, _mm512_add_ps(_mm512_loadu_ps(sums + c), e));
  }
}

RESEARCH_AVX512 float RowScaleSumAvx512(float* g, const float* scale, int64_t r) {
  __m512 sum = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= r; c += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(g + c), _mm512_loadu_ps(scale + c));
    _mm512_storeu_ps(g + c, v);
    sum = _mm512_add_ps(sum, v);
  }
  if (c < r) {
    const __mmask16 part = TailMask(r - c);
    const __m512 v = _mm512_maskz_mul_ps(part, _mm512_maskz_loadu_ps(part, g + c), _mm512_loadu_ps(scale + c));
    _mm512_mask_storeu_ps(g + c, part, v);
    sum = _mm512_add_ps(sum, v);
  }
  return _mm512_reduce_add_ps(sum);
}

RESEARCH_AVX512 void ExpDifferenceAvx512(const float* a, const float* b, float* out, int64_t r) {
  for (int64_t c = 0; c < r; c += 16) {
    const __mmask16 part = TailMask(r - c);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(part, a + c), _mm512_maskz_loadu_ps(part, b + c));
    _mm512_mask_storeu_ps(out + c, part, Exp512(d));
  }
}

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

void RowMax(const float* x, float b, int32_t row, float* best, int32_t* best_index, int64_t r) {
  HasAvx512() ? RowMaxAvx512(x, b, row, best, best_index, r) : RowMaxScalar(x, b, row, best, best_index, r);
}
void RowExpSum(const float* x, float b, const float* max, float* sums, float* out, int64_t r) {
  HasAvx512() ? RowExpSumAvx512(x, b, max, sums, out, r) : RowExpSumScalar(x, b, max, sums, out, r);
}
float RowScaleSum(float* g, const float* scale, int64_t r) {
  return HasAvx512() ? RowScaleSumAvx512(g, scale, r) : RowScaleSumScalar(g, scale, r);
}
void ExpDifference(const float* a, const float* b, float* out, int64_t r) {
  HasAvx512() ? ExpDifferenceAvx512(a, b, out, r) : ExpDifferenceScalar(a, b, out, r);
}

// Columns rounded up to whole 16-float vectors: the length of the per-column arrays the AVX-512 passes
// read and write unmasked.
int64_t Padded(int64_t r) { return (r + 15) / 16 * 16; }

// Running column statistics of exp over vocabulary rows: the maxima, their first rows, and the sums
// of exp(value - max); arrays padded to whole vectors.
struct ColumnStats {
  explicit ColumnStats(int64_t r)
      : r(r),
        max(Padded(r), -std::numeric_limits<float>::infinity()),
        index(Padded(r), 0),
        sum(Padded(r), 0.0f),
        merged(r),
        old_scale(r),
        new_scale(r) {}

  // Folds in the statistics of later rows (a strictly larger maximum takes over the argmax).
  void Merge(const ColumnStats& later) {
    for (int64_t c = 0; c < r; ++c) merged[c] = std::max(max[c], later.max[c]);
    ExpDifference(max.data(), merged.data(), old_scale.data(), r);
    ExpDifference(later.max.data(), merged.data(), new_scale.data(), r);
    for (int64_t c = 0; c < r; ++c) {
      sum[c] = (sum[c] == 0.0f ? 0.0f : sum[c] * old_scale[c]) +
               (later.sum[c] == 0.0f ? 0.0f : later.sum[c] * new_scale[c]);
      if (later.max[c] > max[c]) index[c] = later.index[c];
      max[c] = merged[c];
    }
  }

  int64_t r;
  std::vector<float> max;
  std::vector<int32_t> index;
  std::vector<float> sum;
  std::vector<float> merged, old_scale, new_scale;  // scratch
};

// ---- the kernel -----------------------------------------------------------------------------------

constexpr int64_t kBlockFloats = 48 * 1024;  // 192 KB of logits per block of vocabulary rows

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
                    "expected transposed logits [V, R], output_bias [V], labels [R], weights [R]; got ",
                    logits.shape().DebugString(), ", ", bias.shape().DebugString(), ", ",
                    labels.shape().DebugString(), ", ", weights.shape().DebugString())));
    const int64_t v = logits.dim_size(0);
    const int64_t r = logits.dim_size(1);
    OP_REQUIRES(ctx, bias.dim_size(0) == v && labels.dim_size(0) == r && weights.dim_size(0) == r,
                absl::InvalidArgumentError(absl::StrCat(
                    "inconsistent shapes: transposed logits ", logits.shape().DebugString(), ", output_bias ",
                    bias.shape().DebugString(), ", labels ", labels.shape().DebugString(), ", weights ",
                    weights.shape().DebugString())));
    OP_REQUIRES(ctx, v <= std::numeric_limits<int32_t>::max(),
                absl::InvalidArgumentError(absl::StrCat("vocabulary ", v, " exceeds int32")));
    const int32_t* label = labels.flat<int32_t>().data();
    for (int64_t c = 0; c < r; ++c) {
      OP_REQUIRES(ctx, label[c] >= 0 && label[c] < v,
                  absl::InvalidArgumentError(absl::StrCat("labels[", c, "] = ", label[c],
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
      // G^T overwrites the logits when their buffer is not shared; otherwise a new buffer.
      OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 2, logits.shape(), &d_logits_out));
    } else {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({v, 0}), &d_logits_out));
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({grads ? v : 0}), &d_bias_out));
    float* loss = loss_out->flat<float>().data();
    int32_t* predicted = predicted_out->flat<int32_t>().data();
    if (r == 0) {
      if (grads) std::fill_n(d_bias_out->flat<float>().data(), v, 0.0f);
      return;
    }
    if (v == 0) {
      std::fill_n(loss, r, 0.0f);
      std::fill_n(predicted, r, -1);
      return;
    }

    const float* x = logits.flat<float>().data();
    const float* bias_f = bias.flat<float>().data();
    const float* weight = weights.flat<float>().data();
    float* g = grads ? d_logits_out->flat<float>().data() : nullptr;
    float* d_bias = grads ? d_bias_out->flat<float>().data() : nullptr;

    std::vector<float> target(r);  // read before G^T (maybe over the logits) is written
    for (int64_t c = 0; c < r; ++c) target[c] = x[label[c] * r + c] + bias_f[label[c]];

    // Blocks of vocabulary rows small enough to stay in the L2 cache: each block's maxima, then its
    // exps against them (stored when training) and their sums, in one visit; the parts (threads) take
    // contiguous runs of blocks and fold their blocks' statistics together, then the parts' are folded.
    const int64_t block_rows = std::max<int64_t>(1, kBlockFloats / r);
    const int64_t blocks = (v + block_rows - 1) / block_rows;
    const int64_t threads = std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
    const int64_t parts = std::min(threads, blocks);
    std::vector<float> block_max(blocks * r);
    std::vector<ColumnStats> part_stats(parts, ColumnStats(r));
    RunParts(ctx, parts, [&](int64_t part) {
      ColumnStats block(r);
      for (int64_t j = PartBegin(blocks, parts, part); j < PartBegin(blocks, parts, part + 1); ++j) {
        const int64_t k0 = j * block_rows, k1 = std::min(v, k0 + block_rows);
        std::fill(block.max.begin(), block.max.end(), -std::numeric_limits<float>::infinity());
        std::fill(block.sum.begin(), block.sum.end(), 0.0f);
        for (int64_t k = k0; k < k1; ++k) {
          RowMax(x + k * r, bias_f[k], static_cast<int32_t>(k), block.max.data(), block.index.data(), r);
        }
        for (int64_t k = k0; k < k1; ++k) {
          RowExpSum(x + k * r, bias_f[k], block.max.data(), block.sum.data(), g ? g + k * r : nullptr, r);
        }
        std::copy_n(block.max.begin(), r, block_max.begin() + j * r);
        part_stats[part].Merge(block);
      }
    });
    ColumnStats& total = part_stats[0];
    for (int64_t p = 1; p < parts; ++p) total.Merge(part_stats[p]);

    std::vector<float> scale(r);
    for (int64_t c = 0; c < r; ++c) {
      const float w = weight[c];
      if (w == 0.0f) {
        loss[c] = 0.0f;
        predicted[c] = -1;
        scale[c] = 0.0f;
        continue;
      }
      loss[c] = w * ((total.max[c] - target[c]) + std::log(total.sum[c]));
      predicted[c] = total.index[c];
      scale[c] = w / total.sum[c];
    }
    if (!grads) return;

    // G^T = exp(L + bias - block max) * exp(block max - max) * w / sum, its row sums (the bias gradient),
    // then the one-hot term.
    RunParts(ctx, parts, [&](int64_t part) {
      std::vector<float> block_scale(Padded(r));
      for (int64_t j = PartBegin(blocks, parts, part); j < PartBegin(blocks, parts, part + 1); ++j) {
        ExpDifference(block_max.data() + j * r, total.max.data(), block_scale.data(), r);
        for (int64_t c = 0; c < r; ++c) block_scale[c] *= scale[c];
        const int64_t k0 = j * block_rows, k1 = std::min(v, k0 + block_rows);
        for (int64_t k = k0; k < k1; ++k) d_bias[k] = RowScaleSum(g + k * r, block_scale.data(), r);
      }
    });
    for (int64_t c = 0; c < r; ++c) {
      g[label[c] * r + c] -= weight[c];
      d_bias[label[c]] -= weight[c];
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
