// See unigram.h.
#include "unigram.h"

#include <algorithm>
#include <array>
#include <utility>

namespace research {
namespace {

constexpr float kUnknownPenalty = 10.0f;
constexpr char kWordStart[] = "\xE2\x96\x81";  // U+2581 in UTF-8
constexpr size_t kWordStartBytes = 3;

// The normalized text: "▁" + text with each space made "▁"; empty when the text is not taken.
bool Normalize(const char* text, size_t n, std::string* out) {
  out->clear();
  if (n == 0 || text[0] == ' ' || text[n - 1] == ' ') return false;
  out->append(kWordStart, kWordStartBytes);
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c < 0x20 || c > 0x7E) return false;
    if (c == ' ') {
      if (text[i + 1] == ' ') return false;
      out->append(kWordStart, kWordStartBytes);
    } else {
      out->push_back(c);
    }
  }
  return true;
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
                               const std::vector<bool>& in_lattice, int32_t unk_id, float min_score)
    : nodes_(1), scores_(scores), unk_id_(unk_id), unk_score_(min_score - kUnknownPenalty) {
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& piece = pieces[i];
    if (!in_lattice[i] || piece.empty() ||
        std::any_of(piece.begin(), piece.end(), [](char c) { return Symbol(static_cast<uint8_t>(c)) < 0; })) {
      continue;
    }
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
}

bool UnigramEncoder::Encode(const char* text, size_t n, std::vector<int32_t>* ids) const {
  thread_local std::string normalized;
  if (!Normalize(text, n, &normalized)) return false;
  struct BestPath {
    int32_t id = -1;
    float score = 0;
    int32_t starts_at = -1;
  };
  thread_local std::vector<BestPath> best;
  const auto size = static_cast<int64_t>(normalized.size());
  best.assign(static_cast<size_t>(size) + 1, BestPath());
  const auto* bytes = reinterpret_cast<const uint8_t*>(normalized.data());
  int64_t start = 0;
  while (start < size) {
    const float till_here = best[start].score;
    const int64_t char_length = bytes[start] == 0xE2 ? static_cast<int64_t>(kWordStartBytes) : 1;
    bool has_single_piece = false;
    const Node* node = &nodes_[0];
    for (int64_t end = start + 1; end <= size && node->row >= 0; ++end) {
      const uint32_t next = rows_[static_cast<size_t>(node->row) + Symbol(bytes[end - 1])];
      if (next == 0) break;
      node = &nodes_[next];
      const int32_t id = node->id;
      if (id < 0) continue;
      BestPath& target = best[end];
      const float candidate = scores_[id] + till_here;
      if (target.starts_at == -1 || candidate > target.score) {
        target.score = candidate;
        target.starts_at = static_cast<int32_t>(start);
        target.id = id;
      }
      if (end - start == char_length) has_single_piece = true;
    }
    if (!has_single_piece) {
      BestPath& target = best[start + char_length];
      const float candidate = unk_score_ + till_here;
      if (target.starts_at == -1 || candidate > target.score) {
        target.score = candidate;
        target.starts_at = static_cast<int32_t>(start);
        target.id = unk_id_;
      }
    }
    start += char_length;
  }
  // Backtracking; a run of unknown pieces becomes one, as SentencePiece joins their surfaces.
  const size_t first = ids->size();
  for (int64_t end = size; end > 0; end = best[end].starts_at) {
    const int32_t id = best[end].id;
    if (id == unk_id_ && ids->size() > first && ids->back() == unk_id_) continue;
    ids->push_back(id);
  }
  std::reverse(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end());
  return true;
}

}  // namespace research
