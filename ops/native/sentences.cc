// See sentences.h.
#include "sentences.h"

#include <algorithm>
#include <cstdint>

namespace research {
namespace {

bool IsCloser(char32_t c) { return c == U'"' || c == U'\'' || c == U'\u201d' || c == U'\u2019' || c == U')'; }

bool IsInitial(char32_t c) { return c >= U'A' && c <= U'Z' && c != U'I'; }

// Whether text[0, end) ends with `word`.
template <typename Unit>
bool EndsWith(const Unit* text, size_t end, const std::u32string& word) {
  if (end < word.size()) return false;
  const Unit* tail = text + end - word.size();
  for (size_t i = 0; i < word.size(); ++i) {
    if (static_cast<char32_t>(tail[i]) != word[i]) return false;
  }
  return true;
}

// Whether the '.' at text[dot] closes an abbreviation or a single capital initial.
template <typename Unit>
bool IsAbbreviation(const Unit* text, size_t dot, const SentenceRules& rules, const CharClasses& classes) {
  for (const auto& title : rules.titles) {
    if (EndsWith(text, dot, title)) return true;
  }
  for (const auto& word : rules.words) {
    if (EndsWith(text, dot, word) && (dot == word.size() || !classes.is_word(text[dot - word.size() - 1]))) {
      return true;
    }
  }
  return dot >= 1 && IsInitial(text[dot - 1]) && (dot == 1 || !classes.is_word(text[dot - 2]));
}

}  // namespace

CharClasses::CharClasses(bool (*is_space)(char32_t), bool (*is_word)(char32_t))
    : is_space_(is_space), is_word_(is_word) {
  for (char32_t c = 0; c < 256; ++c) {
    latin1_space_[c] = is_space(c);
    latin1_word_[c] = is_word(c);
  }
}

template <typename Unit>
std::vector<std::pair<size_t, size_t>> SplitAtBlankLines(const Unit* text, size_t n) {
  // Positions k index the padded text P = "\n" + text + "\n", where P[k] = text[k - 1] for 1 <= k <= n.
  const size_t padded = n + 2;
  auto at = [&](size_t k) -> char32_t { return k == 0 || k == padded - 1 ? U'\n' : text[k - 1]; };
  auto is_line_space = [](char32_t c) { return c == U' ' || c == U'\t' || c == U'\r' || c == U'\f' || c == U'\v'; };
  auto to_text = [&](size_t begin, size_t end) {  // a range of P as a range of text, padding left out
    return std::make_pair(begin == 0 ? 0 : std::min(begin - 1, n), end == 0 ? 0 : std::min(end - 1, n));
  };
  std::vector<std::pair<size_t, size_t>> parts;
  size_t part_start = 0;
  size_t k = 0;
  while (k < padded) {
    if (at(k) == U'\n') {
      size_t j = k + 1;
      while (j < padded && is_line_space(at(j))) ++j;
      if (j < padded && at(j) == U'\n') {  // a match P[k, j]: the part before it ends at k
        parts.push_back(to_text(part_start, k));
        part_start = k = j + 1;
        continue;
      }
    }
    ++k;
  }
  parts.push_back(to_text(part_start, padded));
  return parts;
}

template <typename Unit>
void NormalizeWhitespace(const Unit* text, size_t n, const CharClasses& classes, std::vector<Unit>* out) {
  out->clear();
  out->reserve(n);
  bool space_pending = false;
  for (size_t i = 0; i < n; ++i) {
    if (classes.is_space(text[i])) {
      space_pending = !out->empty();
    } else {
      if (space_pending) out->push_back(static_cast<Unit>(U' '));
      space_pending = false;
      out->push_back(text[i]);
    }
  }
}

template <typename Unit>
std::vector<std::pair<size_t, size_t>> SplitSentences(const Unit* text, size_t n, const SentenceRules& rules,
                                                      const CharClasses& classes) {
  std::vector<std::pair<size_t, size_t>> sentences;
  size_t start = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    const char32_t c = text[i];
    if (c != U'.' && c != U'!' && c != U'?') continue;
    size_t end;
    if (IsCloser(text[i + 1]) && i + 2 < n && text[i + 2] == U' ') {
      end = i + 2;
    } else if (text[i + 1] == U' ' && !(c == U'.' && IsAbbreviation(text, i, rules, classes))) {
      end = i + 1;
    } else {
      continue;
    }
    sentences.emplace_back(start, end);
    start = end + 1;
    i = end;
  }
  if (start < n) sentences.emplace_back(start, n);
  return sentences;
}

#define RESEARCH_INSTANTIATE_SENTENCES(Unit)                                                              \
  template std::vector<std::pair<size_t, size_t>> SplitAtBlankLines<Unit>(const Unit*, size_t);             \
  template void NormalizeWhitespace<Unit>(const Unit*, size_t, const CharClasses&, std::vector<Unit>*); \
  template std::vector<std::pair<size_t, size_t>> SplitSentences<Unit>(const Unit*, size_t,              \
                                                                        const SentenceRules&,            \
                                                                        const CharClasses&);
RESEARCH_INSTANTIATE_SENTENCES(uint8_t)
RESEARCH_INSTANTIATE_SENTENCES(uint16_t)
RESEARCH_INSTANTIATE_SENTENCES(char32_t)
#undef RESEARCH_INSTANTIATE_SENTENCES

}  // namespace research
