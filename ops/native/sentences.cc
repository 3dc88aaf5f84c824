// See sentences.h.
#include "sentences.h"

namespace research {
namespace {

bool IsCloser(char32_t c) { return c == U'"' || c == U'\'' || c == U'\u201d' || c == U'\u2019' || c == U')'; }

bool IsInitial(char32_t c) { return c >= U'A' && c <= U'Z' && c != U'I'; }

// Whether text[0, end) ends with `word`.
bool EndsWith(const std::u32string& text, size_t end, const std::u32string& word) {
  return end >= word.size() && text.compare(end - word.size(), word.size(), word) == 0;
}

// Whether the '.' at text[dot] closes an abbreviation or a single capital initial.
bool IsAbbreviation(const std::u32string& text, size_t dot, const SentenceRules& rules,
                    const CharClasses& classes) {
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

void NormalizeWhitespace(const char32_t* text, size_t n, const CharClasses& classes, std::u32string* out) {
  out->clear();
  bool space_pending = false;
  for (size_t i = 0; i < n; ++i) {
    if (classes.is_space(text[i])) {
      space_pending = !out->empty();
    } else {
      if (space_pending) out->push_back(U' ');
      space_pending = false;
      out->push_back(text[i]);
    }
  }
}

std::vector<std::pair<size_t, size_t>> SplitSentences(const std::u32string& text, const SentenceRules& rules,
                                                      const CharClasses& classes) {
  std::vector<std::pair<size_t, size_t>> sentences;
  const size_t n = text.size();
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

}  // namespace research
