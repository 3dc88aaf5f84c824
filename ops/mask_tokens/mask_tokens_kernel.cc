// CPU kernel of Research>MaskTokens. Each row draws from its own random stream (see RowRandom), so a
// row's result depends only on its ids, the seed and its index.
// The kernel runs single-threaded: inside tf.data, parallel map already spreads batches over cores,
// and sharding rows of one batch measured slower there (thread hand-offs cost more than the work).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "native/splitmix64.h"

namespace research {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// The random draws of one row: a SplitMix64 stream whose starting state hashes (seed, row), so rows
// are independent of each other and of the batch they sit in. SplitMix64 costs two multiplies per
// 64-bit draw, against about twenty for TensorFlow's Philox, which was a quarter of the kernel's time.
class RowRandom {
 public:
  RowRandom(uint64_t key, uint64_t counter, int64_t row) : stream_(StartingState(key, counter, row)) {}

  // Uniform in [0, n) for n <= 2^32, by multiply-shift of 32 random bits.
  int64_t Uniform(int64_t n) {
    return static_cast<int64_t>(((stream_.Next() >> 32) * static_cast<uint64_t>(n)) >> 32);
  }

  // Fills `out[0, n)` with uniform floats in [0, 1), 24 bits of resolution each.
  void UniformFloats(int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(stream_.Next() >> 40) * (1.0f / 16777216.0f);
  }

 private:
  // Each seed word and the row index pass through the mixer in turn: neighbouring seeds (a new one per
  // step) and neighbouring rows start at unrelated points of the sequence.
  static uint64_t StartingState(uint64_t key, uint64_t counter, int64_t row) {
    const uint64_t keyed = SplitMix64(key).Next();
    const uint64_t stepped = SplitMix64(keyed ^ counter).Next();
    return SplitMix64(stepped ^ static_cast<uint64_t>(row)).Next();
  }

  SplitMix64 stream_;
};

// Per-row working memory, allocated once per call.
struct RowScratch {
  explicit RowScratch(int64_t seq_len)
      : chosen((seq_len + 63) / 64), picked(seq_len), candidates(seq_len), word_begin(seq_len),
        word_length(seq_len), order(seq_len), decisions(seq_len) {}
  std::vector<uint64_t> chosen;     // a bit per position, set where the row predicts
  std::vector<int32_t> picked;      // the chosen positions, ascending
  std::vector<int32_t> candidates;  // positions of the candidate tokens, ascending
  std::vector<int32_t> word_begin;  // whole-word mode: first position of each word
  std::vector<int32_t> word_length;
  std::vector<int32_t> order;       // whole-word mode: the random visiting order of the words
  std::vector<float> decisions;     // one uniform draw per chosen position: [MASK], random id or keep
};

class MaskTokensOp : public OpKernel {
 public:
  explicit MaskTokensOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("vocab_size", &vocab_size_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mask_token_id", &mask_token_id_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("special_token_ids", &special_token_ids_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_predictions_per_seq", &max_predictions_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mask_rate", &mask_rate_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mask_prob", &mask_prob_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("random_prob", &random_prob_));
    OP_REQUIRES(ctx, vocab_size_ >= 1,
                absl::InvalidArgumentError(absl::StrCat("vocab_size must be >= 1, got ", vocab_size_)));
    CheckRate(ctx, "mask_rate", mask_rate_);
    CheckRate(ctx, "mask_prob", mask_prob_);
    CheckRate(ctx, "random_prob", random_prob_);
    OP_REQUIRES(ctx, mask_prob_ + random_prob_ <= 1.0f,
                absl::InvalidArgumentError(absl::StrCat("mask_prob + random_prob must be <= 1, got ", mask_prob_,
                                                        " + ", random_prob_, " = ", mask_prob_ + random_prob_)));
    OP_REQUIRES(ctx, mask_token_id_ >= 0 && mask_token_id_ < vocab_size_,
                absl::InvalidArgumentError(absl::StrCat("mask_token_id ", mask_token_id_,
                                                        " is outside [0, vocab_size=", vocab_size_, ")")));
    for (size_t i = 0; i < special_token_ids_.size(); ++i) {
      const int32_t id = special_token_ids_[i];
      OP_REQUIRES(ctx, id >= 0 && id < vocab_size_,
                  absl::InvalidArgumentError(absl::StrCat("special_token_ids[", i, "] = ", id,
                                                          " is outside [0, vocab_size=", vocab_size_, ")")));
      OP_REQUIRES(ctx, id != mask_token_id_,
                  absl::InvalidArgumentError(absl::StrCat(
                      "special_token_ids[", i, "] = ", id, " is the mask_token_id; [MASK] is never selected nor ",
                      "drawn as a random replacement on its own, so list only the other special ids")));
    }
    excluded_ = std::vector<int32_t>(special_token_ids_.begin(), special_token_ids_.end());
    excluded_.push_back(mask_token_id_);
    std::sort(excluded_.begin(), excluded_.end());
    excluded_.erase(std::unique(excluded_.begin(), excluded_.end()), excluded_.end());
    is_excluded_.assign(vocab_size_, 0);
    for (int32_t id : excluded_) is_excluded_[id] = 1;
    num_replacements_ = vocab_size_ - static_cast<int64_t>(excluded_.size());
    OP_REQUIRES(ctx, random_prob_ == 0.0f || num_replacements_ > 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "random_prob is ", random_prob_, " but every id of vocab_size=", vocab_size_,
                    " is special, so there is no id to draw a random replacement from")));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& token_ids = ctx->input(0);
    const Tensor& seed = ctx->input(1);
    OP_REQUIRES(ctx, token_ids.dims() == 2,
                absl::InvalidArgumentError(absl::StrCat("token_ids must be rank 2 [batch, seq_len], got shape ",
                                                        token_ids.shape().DebugString())));
    OP_REQUIRES(ctx, seed.dims() == 1 && seed.NumElements() == 2,
                absl::InvalidArgumentError(
                    absl::StrCat("seed must be int64 [2], got shape ", seed.shape().DebugString())));
    const bool whole_word = ctx->num_inputs() > 2;
    if (whole_word) {
      OP_REQUIRES(ctx, ctx->input(2).shape() == token_ids.shape(),
                  absl::InvalidArgumentError(absl::StrCat(
                      "word_starts must have the shape of token_ids ", token_ids.shape().DebugString(), ", got ",
                      ctx->input(2).shape().DebugString())));
    }
    const int64_t batch = token_ids.dim_size(0);
    const int64_t seq_len = token_ids.dim_size(1);
    OP_REQUIRES(ctx, seq_len <= (int64_t{1} << 31) - 1,
                absl::InvalidArgumentError(absl::StrCat("seq_len ", seq_len, " does not fit int32 positions")));
    const int32_t* in = token_ids.flat<int32_t>().data();
    Tensor* input_word_ids = nullptr;
    Tensor* positions = nullptr;
    Tensor* masked_ids = nullptr;
    Tensor* weights = nullptr;
    const TensorShape predictions_shape({batch, max_predictions_});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, token_ids.shape(), &input_word_ids));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, predictions_shape, &positions));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, predictions_shape, &masked_ids));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, predictions_shape, &weights));

    const auto seed_values = seed.vec<int64_t>();
    const uint64_t key = static_cast<uint64_t>(seed_values(0));
    const uint64_t counter = static_cast<uint64_t>(seed_values(1));
    const bool* word_starts = whole_word ? ctx->input(2).flat<bool>().data() : nullptr;
    int32_t* out = input_word_ids->flat<int32_t>().data();
    int32_t* out_positions = positions->flat<int32_t>().data();
    int32_t* out_ids = masked_ids->flat<int32_t>().data();
    float* out_weights = weights->flat<float>().data();

    RowScratch scratch(seq_len);
    for (int64_t r = 0; r < batch; ++r) {
      const int64_t offset = r * seq_len;
      OP_REQUIRES_OK(ctx, CheckRowInRange(in + offset, r, seq_len));  // while the row is in cache
      RowRandom random(key, counter, r);
      SelectPositions(in + offset, word_starts ? word_starts + offset : nullptr, seq_len, &random, &scratch);
      WriteRow(in + offset, seq_len, &random, &scratch, out + offset,
               out_positions + r * max_predictions_, out_ids + r * max_predictions_,
               out_weights + r * max_predictions_);
    }
  }

 private:
  static void CheckRate(OpKernelConstruction* ctx, const char* name, float value) {
    OP_REQUIRES(ctx, value >= 0.0f && value <= 1.0f,
                absl::InvalidArgumentError(absl::StrCat(name, " must be in [0, 1], got ", value)));
  }

  // A vectorized scan of one row first; the slow search for the culprit only runs when there is one.
  absl::Status CheckRowInRange(const int32_t* ids, int64_t row, int64_t seq_len) const {
    const uint32_t limit = static_cast<uint32_t>(vocab_size_);
    uint32_t num_bad = 0;  // a count (< 2^31 per row), not a bool, so that the compiler vectorizes the scan
    for (int64_t j = 0; j < seq_len; ++j) num_bad += static_cast<uint32_t>(ids[j]) >= limit ? 1u : 0u;
    if (num_bad == 0) return absl::OkStatus();
    for (int64_t j = 0;; ++j) {
      if (static_cast<uint32_t>(ids[j]) >= limit) {
        return absl::InvalidArgumentError(absl::StrCat("token_ids[", row, ", ", j, "] = ", ids[j],
                                                       " is outside [0, vocab_size=", vocab_size_, ")"));
      }
    }
  }

  // min(P, max(1, round(mask_rate * candidates))), 0 without candidates; rounding is half up.
  int64_t NumToPredict(int64_t candidates) const {
    if (candidates == 0) return 0;
    const double wanted = std::floor(static_cast<double>(mask_rate_) * static_cast<double>(candidates) + 0.5);
    return std::min<int64_t>(max_predictions_, std::max<int64_t>(1, static_cast<int64_t>(wanted)));
  }

  static void Choose(int64_t position, uint64_t* chosen) { chosen[position >> 6] |= uint64_t{1} << (position & 63); }

  // Marks in `scratch->chosen` the positions to predict in one row.
  void SelectPositions(const int32_t* ids, const bool* word_starts, int64_t seq_len, RowRandom* random,
                       RowScratch* scratch) const {
    std::fill(scratch->chosen.begin(), scratch->chosen.end(), uint64_t{0});
    int32_t* candidates = scratch->candidates.data();
    int64_t num_candidates = 0;
    for (int64_t j = 0; j < seq_len; ++j) {  // branch-free compaction of the candidate positions
      candidates[num_candidates] = static_cast<int32_t>(j);
      num_candidates += 1 - is_excluded_[ids[j]];
    }
    const int64_t wanted = NumToPredict(num_candidates);
    if (wanted == 0) return;
    if (word_starts == nullptr) {
      for (int64_t i = 0; i < wanted; ++i) {  // partial Fisher-Yates: a uniform subset of size `wanted`
        const int64_t pick = i + random->Uniform(num_candidates - i);
        std::swap(candidates[i], candidates[pick]);
        Choose(candidates[i], scratch->chosen.data());
      }
      return;
    }
    // A word starts at a flagged candidate or at a candidate that follows a non-candidate.
    int32_t* word_begin = scratch->word_begin.data();
    int32_t* word_length = scratch->word_length.data();
    int64_t num_words = 0;
    for (int64_t i = 0; i < num_candidates; ++i) {
      const int32_t j = candidates[i];
      if (word_starts[j] || i == 0 || candidates[i - 1] != j - 1) {
        word_begin[num_words] = j;
        word_length[num_words] = 1;
        ++num_words;
      } else {
        ++word_length[num_words - 1];
      }
    }
    int32_t* order = scratch->order.data();
    for (int64_t w = 0; w < num_words; ++w) order[w] = static_cast<int32_t>(w);
    for (int64_t w = num_words - 1; w > 0; --w) std::swap(order[w], order[random->Uniform(w + 1)]);
    int64_t total = 0;
    for (int64_t w = 0; w < num_words && total < wanted; ++w) {
      const int32_t word = order[w];
      const int64_t next = total + word_length[word];
      if (next <= max_predictions_ && std::llabs(next - wanted) < wanted - total) {
        for (int32_t k = 0; k < word_length[word]; ++k) Choose(word_begin[word] + k, scratch->chosen.data());
        total = next;
      }
    }
  }

  // Applies [MASK] / random id / keep to the chosen positions, in ascending order, and writes the
  // row's outputs. The chosen positions come from the bitset's set bits (a few per word, not a scan of
  // every position); choosing between [MASK] and the rest is branch-free.
  void WriteRow(const int32_t* ids, int64_t seq_len, RowRandom* random, RowScratch* scratch, int32_t* out,
                int32_t* out_positions, int32_t* out_ids, float* out_weights) const {
    int32_t* picked = scratch->picked.data();
    int64_t count = 0;
    for (size_t word = 0; word < scratch->chosen.size(); ++word) {
      for (uint64_t bits = scratch->chosen[word]; bits != 0; bits &= bits - 1) {
        picked[count++] = static_cast<int32_t>(word * 64 + __builtin_ctzll(bits));
      }
    }
    std::copy(ids, ids + seq_len, out);
    float* decisions = scratch->decisions.data();
    random->UniformFloats(count, decisions);
    const float mask_or_random = mask_prob_ + random_prob_;
    const int32_t mask_id = static_cast<int32_t>(mask_token_id_);
    for (int64_t i = 0; i < count; ++i) {
      const int32_t position = picked[i];
      const int32_t original = ids[position];
      const float u = decisions[i];
      int32_t kept_or_random = original;
      if (u >= mask_prob_ && u < mask_or_random) kept_or_random = RandomReplacement(random);
      out[position] = u < mask_prob_ ? mask_id : kept_or_random;
      out_positions[i] = position;
      out_ids[i] = original;
      out_weights[i] = 1.0f;
    }
    std::fill(out_positions + count, out_positions + max_predictions_, 0);
    std::fill(out_ids + count, out_ids + max_predictions_, 0);
    std::fill(out_weights + count, out_weights + max_predictions_, 0.0f);
  }

  // A uniform id among the non-excluded ones: the r-th allowed id, found by stepping over the sorted
  // excluded ids.
  int32_t RandomReplacement(RowRandom* random) const {
    int64_t id = random->Uniform(num_replacements_);
    for (int32_t excluded : excluded_) {
      if (id >= excluded) ++id;
    }
    return static_cast<int32_t>(id);
  }

  int64_t vocab_size_ = 0;
  int64_t mask_token_id_ = 0;
  std::vector<int32_t> special_token_ids_;
  int64_t max_predictions_ = 0;
  float mask_rate_ = 0.f;
  float mask_prob_ = 0.f;
  float random_prob_ = 0.f;
  std::vector<int32_t> excluded_;   // sorted, unique: the special ids and [MASK]
  std::vector<uint8_t> is_excluded_;  // [vocab_size], 1 for the special ids and [MASK]
  int64_t num_replacements_ = 0;    // vocab_size - |excluded_|
};

REGISTER_KERNEL_BUILDER(Name("Research>MaskTokens").Device(::tensorflow::DEVICE_CPU), MaskTokensOp);

}  // namespace
}  // namespace research
