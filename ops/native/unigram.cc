// See unigram.h.
#include "unigram.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

namespace research {
namespace {

constexpr float kUnknownPenalty = 10.0f;
constexpr char kWordStart[] = "\xE2\x96\x81";  // U+2581 in UTF-8
constexpr size_t kWordStartBytes = 3;
// Half an ulp of a float relative to its magnitude, and the safety factor on the rounding bound.
constexpr double kFloatRounding = 1.0 / (1 << 24);
constexpr double kRoundingSafety = 4.0;

// Whether text[0, n) is taken: printable ASCII, not empty, no leading, trailing or doubled space.
bool Taken(const char* text, size_t n) {
  if (n == 0 || text[0] == ' ' || text[n - 1] == ' ') return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c < 0x20 || c > 0x7E || (c == ' ' && text[i + 1] == ' ')) return false;
  }
  return true;
}

// "▁" + text[0, n) with each space made "▁" (text already Taken).
void Normalize(const char* text, size_t n, std::string* out) {
  out->clear();
  out->append(kWordStart, kWordStartBytes);
  for (size_t i = 0; i < n; ++i) {
    if (text[i] == ' ') {
      out->append(kWordStart, kWordStartBytes);
    } else {
      out->push_back(text[i]);
    }
  }
}

// A 32-bit hash of bytes[0, size), never 0.
uint32_t HashWord(const char* bytes, size_t size) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ size;
  for (size_t i = 0; i < size; i += 8) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, bytes + i, std::min<size_t>(8, size - i));
    h = (h ^ chunk) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
  }
  h *= 0x94D049BB133111EBULL;
  const auto hash = static_cast<uint32_t>(h >> 32);
  return hash == 0 ? 1 : hash;
}

}  // namespace

int UnigramEncoder::Symbol(uint8_t byte) {
  static const auto* const table = [] {
    auto* symbols = new std::array<int8_t, 256>;
    symbols->fill(-1);
    for (int b = 0x20; b < 0x7F; ++b) (*symbols)[b] = static_cast<int8_t>(b - 0x20);
    (*symbols)[0xE2] = kAlphabet - 3;
    (*symbols)[0x96] = kAlphabet - 2;
    (*symbols)[0x81] = kAlphabet - 1;
    return symbols;
  }();
  return (*table)[byte];
}

UnigramEncoder::UnigramEncoder(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                               const std::vector<bool>& in_lattice, int32_t unk_id, float min_score,
                               size_t max_cached_words)
    : nodes_(1), scores_(scores), unk_id_(unk_id), unk_score_(min_score - kUnknownPenalty),
      max_cached_words_(max_cached_words) {
  bool word_start_is_a_piece = false, word_start_inside_a_piece = false;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& piece = pieces[i];
    if (!in_lattice[i] || piece.empty() ||
        std::any_of(piece.begin(), piece.end(), [](char c) { return Symbol(static_cast<uint8_t>(c)) < 0; })) {
      continue;
    }
    word_start_is_a_piece |= piece == kWordStart;
    word_start_inside_a_piece |= piece.find(kWordStart, 1) != std::string::npos;
    uint32_t node = 0;
    for (const char c : piece) {
      if (nodes_[node].row < 0) {
        nodes_[node].row = static_cast<int64_t>(rows_.size());
        rows_.resize(rows_.size() + kAlphabet, 0);
      }
      const size_t slot = static_cast<size_t>(nodes_[node].row) + Symbol(static_cast<uint8_t>(c));
      if (rows_[slot] == 0) {
        rows_[slot] = static_cast<uint32_t>(nodes_.size());
        nodes_.emplace_back();
      }
      node = rows_[slot];
    }
    nodes_[node].id = static_cast<int32_t>(i);
  }
  // Without these, words are not independent (see unigram.h): no cache.
  if (!word_start_is_a_piece || word_start_inside_a_piece) max_cached_words_ = 0;
}

UnigramEncoder::PathFacts UnigramEncoder::Viterbi(const uint8_t* bytes, size_t size,
                                                  std::vector<int32_t>* ids) const {
  struct BestPath {
    int32_t id = -1;
    float score = 0;
    int32_t starts_at = -1;
    float runner_up = -std::numeric_limits<float>::infinity();  // best score of the other candidates
  };
  thread_local std::vector<BestPath> best;
  best.assign(size + 1, BestPath());
  PathFacts facts;
  const auto offer = [&facts](BestPath& target, float candidate, int64_t start, int32_t id) {
    facts.magnitude = std::max(facts.magnitude, std::fabs(static_cast<double>(candidate)));
    if (target.starts_at == -1 || candidate > target.score) {
      if (target.starts_at != -1) target.runner_up = target.score;
      target.score = candidate;
      target.starts_at = static_cast<int32_t>(start);
      target.id = id;
    } else {
      target.runner_up = std::max(target.runner_up, candidate);
    }
  };
  const auto length = static_cast<int64_t>(size);
  int64_t start = 0;
  while (start < length) {
    const float till_here = best[start].score;
    const int64_t char_length = bytes[start] == 0xE2 ? static_cast<int64_t>(kWordStartBytes) : 1;
    bool has_single_piece = false;
    const Node* node = &nodes_[0];
    for (int64_t end = start + 1; end <= length && node->row >= 0; ++end) {
      const uint32_t next = rows_[static_cast<size_t>(node->row) + Symbol(bytes[end - 1])];
      if (next == 0) break;
      node = &nodes_[next];
      const int32_t id = node->id;
      if (id < 0) continue;
      offer(best[end], scores_[id] + till_here, start, id);
      if (end - start == char_length) has_single_piece = true;
    }
    if (!has_single_piece) offer(best[start + char_length], unk_score_ + till_here, start, unk_id_);
    start += char_length;
  }
  // Backtracking; a run of unknown pieces becomes one, as SentencePiece joins their surfaces.
  facts.gap = std::numeric_limits<double>::infinity();
  const size_t first = ids->size();
  for (int64_t end = length; end > 0; end = best[end].starts_at) {
    const BestPath& node = best[end];
    facts.gap = std::min(facts.gap, static_cast<double>(node.score) - static_cast<double>(node.runner_up));
    if (node.id == unk_id_ && ids->size() > first && ids->back() == unk_id_) continue;
    ids->push_back(node.id);
  }
  std::reverse(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end());
  return facts;
}

bool UnigramEncoder::Encode(const char* text, size_t n, std::vector<int32_t>* ids) {
  if (!Taken(text, n)) return false;
  if (max_cached_words_ > 0 && EncodeByWords(text, n, ids)) return true;
  Normalize(text, n, &normalized_);
  Viterbi(reinterpret_cast<const uint8_t*>(normalized_.data()), normalized_.size(), ids);
  return true;
}

bool UnigramEncoder::EncodeByWords(const char* text, size_t n, std::vector<int32_t>* ids) {
  if (cached_.size() >= max_cached_words_) {  // only between sentences
    std::fill(index_.begin(), index_.end(), IndexSlot());
    cached_.clear();
    ++stats_.clears;
  }
  pending_.clear();
  // The words, their hashes and, by a first probe of the index, their likely cache entries: three
  // passes over the sentence, each prefetching what the next reads, so that its cache misses overlap.
  words_.clear();
  const size_t mask = index_.empty() ? 0 : index_.size() - 1;
  for (size_t begin = 0; begin < n;) {
    const char* end = static_cast<const char*>(std::memchr(text + begin, ' ', n - begin));
    const size_t size = (end == nullptr ? n : static_cast<size_t>(end - text)) - begin;
    const uint32_t hash = HashWord(text + begin, size);
    if (!index_.empty()) __builtin_prefetch(&index_[hash & mask]);
    words_.push_back(WordAt{begin, size, hash, -1, PathFacts()});
    begin += size + 1;
  }
  if (!index_.empty()) {
    for (WordAt& word : words_) {
      for (size_t slot = word.hash & mask; index_[slot].hash != 0; slot = (slot + 1) & mask) {
        if (index_[slot].hash == word.hash) {
          word.entry = index_[slot].word;
          __builtin_prefetch(&cached_[index_[slot].word]);
          break;
        }
      }
    }
  }
  for (WordAt& word : words_) {
    const char* bytes = text + word.begin;
    if (word.entry >= 0) {
      const CachedWord& cached = cached_[static_cast<size_t>(word.entry)];
      if (cached.key_bytes == word.size && std::memcmp(cached.key, bytes, word.size) == 0) {
        ++stats_.hits;
        pending_.insert(pending_.end(), cached.ids, cached.ids + cached.id_count);
        word.facts = PathFacts{cached.gap, cached.magnitude};
        continue;
      }
    }
    word.facts = EncodeWord(bytes, word.size, word.hash, &pending_);  // new, or a hash collision
  }
  // Each word's choices hold in the sentence when its gaps exceed both roundings (see unigram.h):
  // in the sentence, the candidates of a word's nodes are sums over at most the bytes up to the
  // word's end, of magnitude at most the words' magnitudes summed up to there.
  double magnitude_so_far = 0;
  size_t bytes_so_far = 0;
  for (const WordAt& word : words_) {
    const size_t bytes = word.size + kWordStartBytes;
    const PathFacts& facts = word.facts;
    magnitude_so_far += facts.magnitude;
    bytes_so_far += bytes;
    const double sentence_error = static_cast<double>(bytes_so_far) * magnitude_so_far * kFloatRounding;
    const double word_error = static_cast<double>(bytes) * facts.magnitude * kFloatRounding;
    if (!(facts.gap > kRoundingSafety * (sentence_error + word_error))) {
      ++stats_.whole_sentences;
      return false;
    }
  }
  ids->insert(ids->end(), pending_.begin(), pending_.end());
  return true;
}

UnigramEncoder::PathFacts UnigramEncoder::EncodeWord(const char* word, size_t size, uint32_t hash,
                                                     std::vector<int32_t>* ids) {
  const bool fits = size <= kCachedKeyBytes;
  size_t slot = 0;
  if (fits && !index_.empty()) {
    const size_t mask = index_.size() - 1;
    for (slot = hash & mask; index_[slot].hash != 0; slot = (slot + 1) & mask) {
      if (index_[slot].hash != hash) continue;
      const CachedWord& cached = cached_[index_[slot].word];
      if (cached.key_bytes == size && std::memcmp(cached.key, word, size) == 0) {
        ++stats_.hits;
        ids->insert(ids->end(), cached.ids, cached.ids + cached.id_count);
        return PathFacts{cached.gap, cached.magnitude};
      }
    }
  }
  ++stats_.misses;
  normalized_.assign(kWordStart, kWordStartBytes);
  normalized_.append(word, size);
  const size_t first = ids->size();
  PathFacts facts = Viterbi(reinterpret_cast<const uint8_t*>(normalized_.data()), normalized_.size(), ids);
  const size_t count = ids->size() - first;
  if (!fits || count > kCachedIds) return facts;
  // Stored as floats: the gap rounded down and the magnitude up, so that the check stays safe.
  const auto gap = std::nextafter(static_cast<float>(facts.gap), -std::numeric_limits<float>::infinity());
  const auto magnitude = std::nextafter(static_cast<float>(facts.magnitude), std::numeric_limits<float>::infinity());
  facts = PathFacts{gap, magnitude};
  if (2 * (cached_.size() + 1) > index_.size()) {
    GrowIndex();
    const size_t mask = index_.size() - 1;
    for (slot = hash & mask; index_[slot].hash != 0;) slot = (slot + 1) & mask;
  }
  index_[slot] = IndexSlot{hash, static_cast<uint32_t>(cached_.size())};
  CachedWord& cached = cached_.emplace_back();
  cached.key_bytes = static_cast<uint8_t>(size);
  cached.id_count = static_cast<uint8_t>(count);
  cached.gap = gap;
  cached.magnitude = magnitude;
  std::memcpy(cached.key, word, size);
  std::copy(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end(), cached.ids);
  return facts;
}

void UnigramEncoder::GrowIndex() {
  std::vector<IndexSlot> old(std::max<size_t>(4096, 2 * index_.size()));
  old.swap(index_);
  const size_t mask = index_.size() - 1;
  for (const IndexSlot& entry : old) {
    if (entry.hash == 0) continue;
    size_t slot = entry.hash & mask;
    while (index_[slot].hash != 0) slot = (slot + 1) & mask;
    index_[slot] = entry;
  }
}

}  // namespace research
