// See packing.h. Every random draw here has a twin, in the same order, in research/data/packing.py.
#include "packing.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "splitmix64.h"

namespace research {
namespace {

void Fail(const std::string& message) { throw std::invalid_argument(message); }

// Checks that offsets are non-empty, start at 0, end at `end` and never decrease.
void ValidateOffsets(const char* name, const int64_t* offsets, int64_t count, int64_t end,
                     const char* end_name) {
  if (count < 1) Fail(std::string(name) + " must hold at least one value (0), got an empty array");
  if (offsets[0] != 0) Fail(std::string(name) + "[0] must be 0, got " + std::to_string(offsets[0]));
  for (int64_t i = 1; i < count; ++i) {
    if (offsets[i] < offsets[i - 1]) {
      Fail(std::string(name) + " must not decrease, but " + name + "[" + std::to_string(i) +
           "]=" + std::to_string(offsets[i]) + " < " + name + "[" + std::to_string(i - 1) +
           "]=" + std::to_string(offsets[i - 1]));
    }
  }
  if (offsets[count - 1] != end) {
    Fail(std::string(name) + "[-1] must equal " + end_name + "=" + std::to_string(end) + ", got " +
         std::to_string(offsets[count - 1]));
  }
}

// Reserves room for about `rows` examples: only a hint that spares the outputs repeated regrowth
// (untouched reserved pages cost nothing), never a limit.
void ReserveRows(int64_t rows, const PackOptions& o, PackResult* r) {
  r->input_word_ids.reserve(rows * o.seq_len);
  r->input_type_ids.reserve(rows * o.seq_len);
  if (o.mode == PackMode::kNextSentence) r->next_sentence_labels.reserve(rows);
}

// Appends one row of seq_len to the outputs: padding (pad_id, type 0) everywhere, CLS first.
// Returns the row's offset in the flat outputs.
size_t BeginRow(const PackOptions& o, PackResult* r) {
  const size_t row = r->input_word_ids.size();
  r->input_word_ids.resize(row + o.seq_len, o.pad_id);
  r->input_type_ids.resize(row + o.seq_len, 0);
  r->input_word_ids[row] = o.cls_id;
  ++r->num_examples;
  return row;
}

// FULL-SENTENCES: contiguous sentences fill [CLS] ... [SEP]; a [SEP] separates documents inside an
// example; a sentence that does not fit the room left starts a new example, and one longer than a
// whole example is split, its first piece filling the current example.
void PackFullSentences(const Corpus& c, const PackOptions& o, PackResult* r) {
  const int64_t room_max = o.seq_len - 2;
  std::vector<int32_t> buf(room_max);
  int64_t fill = 0;
  // Two consecutive examples hold about room_max tokens and separators between them.
  ReserveRows(2 * (c.num_tokens + c.num_document_offsets) / room_max + 2, o, r);
  auto emit = [&]() {
    const size_t row = BeginRow(o, r);
    std::copy(buf.begin(), buf.begin() + fill, r->input_word_ids.begin() + row + 1);
    r->input_word_ids[row + 1 + fill] = o.sep_id;
    fill = 0;
  };
  auto put = [&](const int32_t* tokens, int64_t n) {
    std::copy(tokens, tokens + n, buf.begin() + fill);
    fill += n;
  };
  bool pending_sep = false;
  const int64_t num_documents = c.num_document_offsets - 1;
  for (int64_t d = 0; d < num_documents; ++d) {
    bool document_has_tokens = false;
    for (int64_t s = c.document_offsets[d]; s < c.document_offsets[d + 1]; ++s) {
      int64_t lo = c.sentence_offsets[s];
      const int64_t hi = c.sentence_offsets[s + 1];
      const int64_t n = hi - lo;
      if (n == 0) continue;
      document_has_tokens = true;
      r->num_tokens += n;
      const bool sep = pending_sep && fill > 0;
      pending_sep = false;
      const int64_t room = room_max - fill;
      if (sep && 1 + n <= room) {
        buf[fill++] = o.sep_id;
        put(c.token_ids + lo, n);
      } else if (!sep && n <= room) {
        put(c.token_ids + lo, n);
      } else if (n <= room_max) {
        emit();
        put(c.token_ids + lo, n);
      } else {
        if (sep) {
          if (room >= 2) {
            buf[fill++] = o.sep_id;
          } else {
            emit();
          }
        }
        while (lo < hi) {
          if (fill == room_max) emit();
          const int64_t k = std::min(room_max - fill, hi - lo);
          put(c.token_ids + lo, k);
          lo += k;
        }
      }
    }
    if (document_has_tokens) pending_sep = true;
  }
  if (fill > 0) emit();
}

// The token range [token_begin, token_end) of one sentence.
struct Span {
  int64_t token_begin;
  int64_t token_end;
};

// BERT's create_instances_from_document over every document, once, with one PRNG.
void PackSegmentPairs(const Corpus& c, const PackOptions& o, PackResult* r) {
  const bool nsp = o.mode == PackMode::kNextSentence;
  const int64_t max_num_tokens = o.seq_len - 3;
  // Documents as ranges of non-empty sentences; empty sentences and documents take no part.
  std::vector<Span> sentences;  // token range of each non-empty sentence
  std::vector<std::pair<int64_t, int64_t>> docs;  // [begin, end) into `sentences`
  const int64_t num_documents = c.num_document_offsets - 1;
  for (int64_t d = 0; d < num_documents; ++d) {
    const int64_t begin = static_cast<int64_t>(sentences.size());
    for (int64_t s = c.document_offsets[d]; s < c.document_offsets[d + 1]; ++s) {
      if (c.sentence_offsets[s + 1] > c.sentence_offsets[s]) {
        sentences.push_back({c.sentence_offsets[s], c.sentence_offsets[s + 1]});
      }
    }
    const int64_t end = static_cast<int64_t>(sentences.size());
    if (end > begin) docs.emplace_back(begin, end);
  }
  const int64_t num_docs = static_cast<int64_t>(docs.size());
  ReserveRows(static_cast<int64_t>(sentences.size()), o, r);  // every chunk uses a new sentence
  auto length = [&](int64_t i) { return sentences[i].token_end - sentences[i].token_begin; };
  auto append = [&](std::vector<int32_t>* out, int64_t begin, int64_t end) {
    out->insert(out->end(), c.token_ids + begin, c.token_ids + end);
  };

  SplitMix64 rng(o.seed);
  std::vector<int32_t> a, b;
  for (int64_t di = 0; di < num_docs; ++di) {
    const int64_t doc_begin = docs[di].first, doc_end = docs[di].second;
    int64_t target = max_num_tokens;
    if (rng.Uniform() < o.short_seq_prob) {
      target = 2 + static_cast<int64_t>(rng.Below(max_num_tokens - 1));
    }
    int64_t chunk_begin = doc_begin;
    int64_t chunk_length = 0;
    for (int64_t i = doc_begin; i < doc_end; ++i) {
      chunk_length += length(i);
      if (i != doc_end - 1 && chunk_length < target) continue;
      const int64_t n = i - chunk_begin + 1;
      const int64_t a_end = chunk_begin + (n >= 2 ? 1 + static_cast<int64_t>(rng.Below(n - 1)) : 1);
      const bool is_random = nsp && num_docs >= 2 && rng.Uniform() < 0.5;
      a.clear();
      b.clear();
      for (int64_t j = chunk_begin; j < a_end; ++j) {
        append(&a, sentences[j].token_begin, sentences[j].token_end);
      }
      if (is_random) {
        int64_t other = static_cast<int64_t>(rng.Below(num_docs - 1));
        if (other >= di) ++other;
        const int64_t other_begin = docs[other].first, other_end = docs[other].second;
        const int64_t target_b = target - static_cast<int64_t>(a.size());
        for (int64_t j = other_begin + static_cast<int64_t>(rng.Below(other_end - other_begin));
             j < other_end; ++j) {
          append(&b, sentences[j].token_begin, sentences[j].token_end);
          if (static_cast<int64_t>(b.size()) >= target_b) break;
        }
        i = a_end - 1;  // the unused true continuation starts the next chunk
      } else if (n >= 2) {
        for (int64_t j = a_end; j <= i; ++j) {
          append(&b, sentences[j].token_begin, sentences[j].token_end);
        }
      } else if (a.size() >= 2) {  // one sentence: cut it at a random token
        const int64_t cut = 1 + static_cast<int64_t>(rng.Below(a.size() - 1));
        b.assign(a.begin() + cut, a.end());
        a.resize(cut);
      }
      // Truncate the longer side, one token at a time from a random end, until the pair fits.
      int64_t a_lo = 0, a_hi = static_cast<int64_t>(a.size());
      int64_t b_lo = 0, b_hi = static_cast<int64_t>(b.size());
      while ((a_hi - a_lo) + (b_hi - b_lo) > max_num_tokens) {
        const bool trim_a = (a_hi - a_lo) > (b_hi - b_lo);
        const bool front = rng.Coin();
        if (trim_a) {
          front ? ++a_lo : --a_hi;
        } else {
          front ? ++b_lo : --b_hi;
        }
      }
      const size_t row = BeginRow(o, r);
      int32_t* words = r->input_word_ids.data() + row;
      int32_t* types = r->input_type_ids.data() + row;
      int64_t pos = 1;
      std::copy(a.begin() + a_lo, a.begin() + a_hi, words + pos);
      pos += a_hi - a_lo;
      words[pos++] = o.sep_id;
      const int64_t b_start = pos;
      std::copy(b.begin() + b_lo, b.begin() + b_hi, words + pos);
      pos += b_hi - b_lo;
      words[pos++] = o.sep_id;
      std::fill(types + b_start, types + pos, 1);
      r->num_tokens += (a_hi - a_lo) + (b_hi - b_lo);
      if (nsp) r->next_sentence_labels.push_back(is_random ? 1 : 0);
      chunk_begin = i + 1;
      chunk_length = 0;
    }
  }
}

}  // namespace

PackMode ParsePackMode(const std::string& name) {
  if (name == "full_sentences") return PackMode::kFullSentences;
  if (name == "segment_pair") return PackMode::kSegmentPair;
  if (name == "next_sentence") return PackMode::kNextSentence;
  Fail("unknown mode '" + name + "'; expected one of full_sentences, segment_pair, next_sentence");
  return PackMode::kFullSentences;  // unreachable
}

int64_t MinSeqLen(PackMode mode) { return mode == PackMode::kFullSentences ? 3 : 5; }

const char* PackModeName(PackMode mode) {
  switch (mode) {
    case PackMode::kFullSentences: return "full_sentences";
    case PackMode::kSegmentPair: return "segment_pair";
    case PackMode::kNextSentence: return "next_sentence";
  }
  return "?";
}

void ValidatePackArguments(const Corpus& c, const PackOptions& o) {
  const int64_t minimum = MinSeqLen(o.mode);
  if (o.seq_len < minimum) {
    Fail("seq_len=" + std::to_string(o.seq_len) + " is too small for mode '" +
         PackModeName(o.mode) + "' (minimum " +
         std::to_string(minimum) + ")");
  }
  if (!(o.short_seq_prob >= 0.0 && o.short_seq_prob <= 1.0)) {
    Fail("short_seq_prob must be in [0, 1], got " + std::to_string(o.short_seq_prob));
  }
  ValidateOffsets("sentence_offsets", c.sentence_offsets, c.num_sentence_offsets, c.num_tokens,
                  "len(token_ids)");
  ValidateOffsets("document_offsets", c.document_offsets, c.num_document_offsets,
                  c.num_sentence_offsets - 1, "num_sentences");
}

PackResult PackExamples(const Corpus& corpus, const PackOptions& options) {
  ValidatePackArguments(corpus, options);
  PackResult result;
  if (options.mode == PackMode::kFullSentences) {
    PackFullSentences(corpus, options, &result);
  } else {
    PackSegmentPairs(corpus, options, &result);
  }
  return result;
}

}  // namespace research
