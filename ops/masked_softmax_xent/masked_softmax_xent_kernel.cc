// CPU kernel of Research>MaskedSoftmaxXent.
//
// Rows with a non-zero weight are compacted and processed in chunks of R rows against the full
// vocabulary, so each chunk's softmax is exact in one pass and the [N, V] logits never exist; only
// an [R, V] float32 buffer does (about 24 MB by default). Per chunk, each phase split into one part per
// intra-op thread:
//   1. logits = H_c E^T, split by vocabulary range (every GEMM keeps M = R; each thread packs only
//      its part of the table);
//   2. by rows: + bias, max and first argmax, exp and sum, loss; with gradients G = w (softmax - onehot)
//      is written in place of the logits;
//   3. gradients only: dH_c = G E split by width range, dE (+)= G^T H_c and db (+)= column sums of G
//      split by vocabulary range (no per-thread copies of dE, no reduction).
// The GEMMs run in OpenBLAS (scipy-openblas32: runtime CPU dispatch, AVX-512 kernels), one BLAS thread
// per part; on 2 cores that matched one 2-thread BLAS call per phase (noisy host) and keeps the threads
// in TensorFlow's pool. The element-wise passes have AVX-512 versions chosen at run time (the library
// itself is compiled for baseline x86-64; other CPUs get scalar loops).
// The default chunk (24 MB of logits, 206 rows at V = 30522) keeps the memory a training step holds at
// N = 19456, D = 768 under 10% of the [N, V] float32 logits; larger chunks measured no faster.
// Measurement knobs (environment, read when the kernel is built): RESEARCH_XENT_SHARDS (parts per
// phase, default: the intra-op threads), RESEARCH_XENT_BLAS_THREADS (OpenBLAS threads, default 1),
// RESEARCH_XENT_CHUNK_MB (default 24), RESEARCH_XENT_PROFILE=1 (per-chunk phase times on stderr).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include <immintrin.h>

#include "absl/strings/str_cat.h"
#include "cblas.h"  // scipy-openblas32: every symbol carries the scipy_ prefix
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/util/work_sharder.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

constexpr int64_t kChunkBytes = int64_t{24} << 20;  // float32 logits per chunk when chunk_rows = 0

// ---- element-wise row passes --------------------------------------------------------------------

struct RowMax {
  float value;
  int64_t index;  // the lowest index holding `value`
};

RowMax AddBiasMaxScalar(float* x, const float* bias, int64_t n) {
  RowMax best{-std::numeric_limits<float>::infinity(), 0};
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i] + bias[i];
    x[i] = v;
    if (v > best.value) best = {v, i};
  }
  return best;
}

float ExpSumScalar(float* x, int64_t n, float max, bool store) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - max);
    if (store) x[i] = e;
    sum += e;
  }
  return static_cast<float>(sum);
}

void ScaleScalar(float* x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
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

RESEARCH_AVX512 RowMax AddBiasMaxAvx512(float* x, const float* bias, int64_t n) {
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512i best_index = _mm512_setzero_si512();
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(bias + i));
    _mm512_storeu_ps(x + i, v);
    const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
    best = _mm512_mask_mov_ps(best, greater, v);
    best_index = _mm512_mask_mov_epi32(best_index, greater, index);
    index = _mm512_add_epi32(index, step);
  }
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(tail, x + i), _mm512_maskz_loadu_ps(tail, bias + i));
    _mm512_mask_storeu_ps(x + i, tail, v);
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

RESEARCH_AVX512 float ExpSumAvx512(float* x, int64_t n, float max, bool store) {
  const __m512 shift = _mm512_set1_ps(max);
  __m512 sum0 = _mm512_setzero_ps();
  __m512 sum1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 e0 = Exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), shift));
    const __m512 e1 = Exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), shift));
    if (store) {
      _mm512_storeu_ps(x + i, e0);
      _mm512_storeu_ps(x + i + 16, e1);
    }
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (; i < n; i += 16) {
    const __mmask16 part = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = Exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(part, x + i), shift));
    if (store) _mm512_mask_storeu_ps(x + i, part, e);
    sum0 = _mm512_mask_add_ps(sum0, part, sum0, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

RESEARCH_AVX512 void ScaleAvx512(float* x, int64_t n, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), s));
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), s));
  }
}

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

RowMax AddBiasMax(float* x, const float* bias, int64_t n) {
  return HasAvx512() ? AddBiasMaxAvx512(x, bias, n) : AddBiasMaxScalar(x, bias, n);
}
float ExpSum(float* x, int64_t n, float max, bool store) {
  return HasAvx512() ? ExpSumAvx512(x, n, max, store) : ExpSumScalar(x, n, max, store);
}
void Scale(float* x, int64_t n, float scale) { HasAvx512() ? ScaleAvx512(x, n, scale) : ScaleScalar(x, n, scale); }

// ---- helpers ------------------------------------------------------------------------------------

template <typename T>
inline float ToFloat(T value) {
  return static_cast<float>(value);
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::atoll(value) : fallback;
}

// Runs work(part) for part in [0, parts) on the intra-op pool, one part per thread.
void RunParts(OpKernelContext* ctx, int64_t parts, const std::function<void(int64_t)>& work) {
  if (parts <= 1) {
    if (parts == 1) work(0);
    return;
  }
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  ::tensorflow::Shard(static_cast<int>(parts), workers, parts, /*cost_per_unit=*/int64_t{1} << 40,
                      [&work](int64_t begin, int64_t end) {
                        for (int64_t p = begin; p < end; ++p) work(p);
                      });
}

inline int64_t PartBegin(int64_t total, int64_t parts, int64_t part) { return total * part / parts; }

// ---- the kernel -----------------------------------------------------------------------------------

template <typename T>
class MaskedSoftmaxXentOp : public OpKernel {
 public:
  explicit MaskedSoftmaxXentOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("compute_gradients", &compute_gradients_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("chunk_rows", &chunk_rows_));
    // Knobs for measurements: shards per phase (default: the intra-op threads) and BLAS threads per
    // shard (default 1).
    shards_override_ = EnvInt("RESEARCH_XENT_SHARDS", 0);
    profile_ = EnvInt("RESEARCH_XENT_PROFILE", 0) != 0;
    chunk_bytes_ = std::max<int64_t>(1, EnvInt("RESEARCH_XENT_CHUNK_MB", kChunkBytes >> 20)) << 20;
    blas_threads_ = static_cast<int>(std::max<int64_t>(1, EnvInt("RESEARCH_XENT_BLAS_THREADS", 1)));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& hidden = ctx->input(0);
    const Tensor& table = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& labels = ctx->input(3);
    const Tensor& weights = ctx->input(4);
    OP_REQUIRES(ctx, hidden.dims() == 2 && table.dims() == 2 && bias.dims() == 1 && labels.dims() == 1 &&
                         weights.dims() == 1,
                absl::InvalidArgumentError(absl::StrCat(
                    "expected hidden [N, D], embedding_table [V, D], output_bias [V], labels [N], weights [N]; got ",
                    hidden.shape().DebugString(), ", ", table.shape().DebugString(), ", ", bias.shape().DebugString(),
                    ", ", labels.shape().DebugString(), ", ", weights.shape().DebugString())));
    const int64_t n = hidden.dim_size(0);
    const int64_t d = hidden.dim_size(1);
    const int64_t v = table.dim_size(0);
    OP_REQUIRES(ctx, table.dim_size(1) == d && bias.dim_size(0) == v && labels.dim_size(0) == n &&
                         weights.dim_size(0) == n,
                absl::InvalidArgumentError(absl::StrCat(
                    "inconsistent shapes: hidden ", hidden.shape().DebugString(), ", embedding_table ",
                    table.shape().DebugString(), ", output_bias ", bias.shape().DebugString(), ", labels ",
                    labels.shape().DebugString(), ", weights ", weights.shape().DebugString())));
    const int64_t kInt32Max = std::numeric_limits<int32_t>::max();
    OP_REQUIRES(ctx, v <= kInt32Max && d <= kInt32Max,
                absl::InvalidArgumentError(absl::StrCat("vocabulary ", v, " or width ", d, " exceeds int32")));

    const int32_t* label = labels.flat<int32_t>().data();
    for (int64_t i = 0; i < n; ++i) {
      OP_REQUIRES(ctx, label[i] >= 0 && label[i] < v,
                  absl::InvalidArgumentError(absl::StrCat("labels[", i, "] = ", label[i],
                                                          " is outside [0, vocab_size=", v, ")")));
    }
    const float* weight = weights.flat<float>().data();
    std::vector<int64_t> active;
    active.reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      if (weight[i] != 0.0f) active.push_back(i);
    }
    const int64_t num_active = static_cast<int64_t>(active.size());

    Tensor* loss_out = nullptr;
    Tensor* predicted_out = nullptr;
    Tensor* d_hidden_out = nullptr;
    Tensor* d_table_out = nullptr;
    Tensor* d_bias_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n}), &loss_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n}), &predicted_out));
    const bool grads = compute_gradients_;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({grads ? n : 0, d}), &d_hidden_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({grads ? v : 0, d}), &d_table_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({grads ? v : 0}), &d_bias_out));
    float* loss = loss_out->flat<float>().data();
    int32_t* predicted = predicted_out->flat<int32_t>().data();
    std::fill_n(loss, n, 0.0f);
    std::fill_n(predicted, n, -1);
    float* d_hidden = grads ? d_hidden_out->flat<float>().data() : nullptr;
    float* d_table = grads ? d_table_out->flat<float>().data() : nullptr;
    float* d_bias = grads ? d_bias_out->flat<float>().data() : nullptr;
    if (grads) {
      // Skipped rows get zeros; the active rows are written by the chunks.
      for (int64_t i = 0; i < n; ++i) {
        if (weight[i] == 0.0f) std::fill_n(d_hidden + i * d, d, 0.0f);
      }
      if (num_active == 0) {
        std::fill_n(d_table, v * d, 0.0f);
        std::fill_n(d_bias, v, 0.0f);
      }
    }
    if (num_active == 0) return;

    const int64_t shards = std::max<int64_t>(
        1, shards_override_ > 0 ? shards_override_ : ctx->device()->tensorflow_cpu_worker_threads()->num_threads);

    // float32 views of the table and bias (copies only for 16-bit inputs).
    const float* table_f = nullptr;
    const float* bias_f = nullptr;
    Tensor table_copy, bias_copy;
    if constexpr (std::is_same_v<T, float>) {
      table_f = table.flat<float>().data();
      bias_f = bias.flat<float>().data();
    } else {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({v, d}), &table_copy));
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({v}), &bias_copy));
      const T* src = table.flat<T>().data();
      float* dst = table_copy.flat<float>().data();
      RunParts(ctx, shards, [&](int64_t part) {
        const int64_t begin = PartBegin(v * d, shards, part), end = PartBegin(v * d, shards, part + 1);
        for (int64_t i = begin; i < end; ++i) dst[i] = ToFloat(src[i]);
      });
      const T* bias_src = bias.flat<T>().data();
      float* bias_dst = bias_copy.flat<float>().data();
      for (int64_t i = 0; i < v; ++i) bias_dst[i] = ToFloat(bias_src[i]);
      table_f = dst;
      bias_f = bias_dst;
    }

    int64_t rows = chunk_rows_ > 0 ? chunk_rows_ : chunk_bytes_ / (4 * std::max<int64_t>(v, 1));
    rows = std::max<int64_t>(rows, 8);
    rows = std::min<int64_t>(rows, std::max<int64_t>(1, kInt32Max / std::max<int64_t>(v, 1)));
    rows = std::min(rows, num_active);
    Tensor logits_t, hidden_t, d_hidden_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({rows, v}), &logits_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({rows, d}), &hidden_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT, TensorShape({grads ? rows : 0, d}), &d_hidden_t));
    float* logits = logits_t.flat<float>().data();
    float* hidden_c = hidden_t.flat<float>().data();
    float* d_hidden_c = grads ? d_hidden_t.flat<float>().data() : nullptr;
    const T* hidden_src = hidden.flat<T>().data();
    std::vector<float> ones(rows, 1.0f);
    // OpenBLAS's thread count is process-wide (this wheel exports no per-thread setter); only our
    // kernels use this copy of the library, so it is set here, before the shards call into it.
    if (scipy_openblas_get_num_threads() != blas_threads_) scipy_openblas_set_num_threads(blas_threads_);

    const int64_t vocab_parts = std::min(shards, v);
    const int64_t width_parts = std::max<int64_t>(1, std::min(shards, d));
    const blasint ldv = static_cast<blasint>(v), ldd = static_cast<blasint>(d);
    for (int64_t start = 0; start < num_active; start += rows) {
      const int64_t r = std::min(rows, num_active - start);
      const int64_t* chunk = active.data() + start;
      for (int64_t j = 0; j < r; ++j) {
        const T* src = hidden_src + chunk[j] * d;
        float* dst = hidden_c + j * d;
        for (int64_t k = 0; k < d; ++k) dst[k] = ToFloat(src[k]);
      }
      // Phase 1, by vocabulary range: logits = H_c E^T. Splitting the vocabulary (not the rows) keeps
      // every GEMM's M at the whole chunk, and each thread packs only its part of the table.
      const auto t0 = std::chrono::steady_clock::now();
      RunParts(ctx, vocab_parts, [&](int64_t part) {
        const int64_t v0 = PartBegin(v, vocab_parts, part), v1 = PartBegin(v, vocab_parts, part + 1);
        if (v0 == v1) return;
        if (d == 0) {
          for (int64_t j = 0; j < r; ++j) std::fill(logits + j * v + v0, logits + j * v + v1, 0.0f);
          return;
        }
        scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(r),
                          static_cast<blasint>(v1 - v0), ldd, 1.0f, hidden_c, ldd, table_f + v0 * d, ldd, 0.0f,
                          logits + v0, ldv);
      });
      // Phase 2, by rows: + bias, max and argmax, exp and sum, loss; G = w (softmax - onehot) in place.
      const auto t1 = std::chrono::steady_clock::now();
      const int64_t row_parts = std::min(shards, r);
      RunParts(ctx, row_parts, [&](int64_t part) {
        const int64_t a = PartBegin(r, row_parts, part), b = PartBegin(r, row_parts, part + 1);
        for (int64_t j = a; j < b; ++j) {
          const int64_t i = chunk[j];
          float* x = logits + j * v;
          const RowMax best = AddBiasMax(x, bias_f, v);
          const float target = x[label[i]];
          const float sum = ExpSum(x, v, best.value, /*store=*/grads);
          const float w = weight[i];
          loss[i] = w * ((best.value - target) + std::log(sum));
          predicted[i] = static_cast<int32_t>(best.index);
          if (grads) {
            Scale(x, v, w / sum);
            x[label[i]] -= w;
          }
        }
      });
      const auto t2 = std::chrono::steady_clock::now();
      if (grads) {
        // Phase 3: dH_c[:, d0:d1] = G E[:, d0:d1] by width range, then by vocabulary range
        // dE[v0:v1] (+)= G[:, v0:v1]^T H_c and db[v0:v1] (+)= column sums of G[:, v0:v1].
        const float beta = start == 0 ? 0.0f : 1.0f;
        const int64_t parts = std::max(width_parts, vocab_parts);
        RunParts(ctx, parts, [&](int64_t part) {
          if (part < width_parts && d > 0) {
            const int64_t d0 = PartBegin(d, width_parts, part), d1 = PartBegin(d, width_parts, part + 1);
            scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(r),
                              static_cast<blasint>(d1 - d0), ldv, 1.0f, logits, ldv, table_f + d0, ldd, 0.0f,
                              d_hidden_c + d0, ldd);
            for (int64_t j = 0; j < r; ++j) {
              std::copy(d_hidden_c + j * d + d0, d_hidden_c + j * d + d1, d_hidden + chunk[j] * d + d0);
            }
          }
          if (part < vocab_parts) {
            const int64_t v0 = PartBegin(v, vocab_parts, part), v1 = PartBegin(v, vocab_parts, part + 1);
            if (start == 0) std::fill(d_bias + v0, d_bias + v1, 0.0f);
            scipy_cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<blasint>(r), static_cast<blasint>(v1 - v0),
                              1.0f, logits + v0, ldv, ones.data(), 1, 1.0f, d_bias + v0, 1);
            if (d > 0) {
              scipy_cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(v1 - v0), ldd,
                                static_cast<blasint>(r), 1.0f, logits + v0, ldv, hidden_c, ldd, beta,
                                d_table + v0 * d, ldd);
            }
          }
        });
      }
      if (profile_) {
        const auto t3 = std::chrono::steady_clock::now();
        using Ms = std::chrono::duration<double, std::milli>;
        std::fprintf(stderr, "chunk %ld rows: logits %.1f ms, softmax %.1f ms, gradients %.1f ms\n", (long)r,
                     Ms(t1 - t0).count(), Ms(t2 - t1).count(), Ms(t3 - t2).count());
      }
    }
  }

 private:
  bool compute_gradients_ = false;
  int64_t chunk_rows_ = 0;
  int64_t shards_override_ = 0;
  int blas_threads_ = 1;
  bool profile_ = false;
  int64_t chunk_bytes_ = kChunkBytes;
};

#define RESEARCH_REGISTER(T)                                                                        \
  REGISTER_KERNEL_BUILDER(                                                                          \
      Name("Research>MaskedSoftmaxXent").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      MaskedSoftmaxXentOp<T>);
RESEARCH_REGISTER(float)
RESEARCH_REGISTER(::tensorflow::bfloat16)
RESEARCH_REGISTER(Eigen::half)
#undef RESEARCH_REGISTER

}  // namespace
}  // namespace research
