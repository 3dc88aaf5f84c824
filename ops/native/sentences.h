// Documents' whitespace and sentence boundaries for the record builder: the native twin of
// research/data/text_input.py's `normalize_whitespace` and `split_sentences`, which define the
// behaviour (tests compare the two on random and shipped text).
//
// Text is a sequence of Unicode code points. Which code points are whitespace and which are word
// characters (regex \w: letters and digits of any script, and '_') comes from the caller, so that
// the rules are Python's own (str.split, re's \s, \b and \w).
#ifndef RESEARCH_OPS_NATIVE_SENTENCES_H_
#define RESEARCH_OPS_NATIVE_SENTENCES_H_

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace research {

struct CharClasses {
  bool (*is_space)(char32_t);
  bool (*is_word)(char32_t);
};

// Words whose '.' does not end a sentence.
struct SentenceRules {
  std::vector<std::u32string> titles;  // matched without a word boundary before them ("_Mr.")
  std::vector<std::u32string> words;   // matched after a word boundary only ("vs.", not "xvs.")
};

// Writes text[0, n) to `out` with every run of whitespace made one space and none at either end
// (Python's " ".join(text.split())).
void NormalizeWhitespace(const char32_t* text, size_t n, const CharClasses& classes, std::u32string* out);

// The [begin, end) code-point ranges of the sentences of whitespace-normalized `text`. A sentence
// ends after '.', '!' or '?' followed by a space, or by one closing quote or parenthesis
// (" ' U+201D U+2019 ")") and a space; a '.' directly before the space does not end one after one of
// `rules`' words or after a single capital initial other than 'I' ("J. Smith").
std::vector<std::pair<size_t, size_t>> SplitSentences(const std::u32string& text, const SentenceRules& rules,
                                                      const CharClasses& classes);

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_SENTENCES_H_
