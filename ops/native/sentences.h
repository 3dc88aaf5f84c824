// Documents' whitespace and sentence boundaries for the record builder: the native twin of
// research/data/text_input.py's `normalize_whitespace` and `split_sentences`, which define the
// behaviour (tests compare the two on random and shipped text).
//
// Text is a sequence of Unicode code points, held in the narrowest unit that fits them (Python's
// own string layouts: uint8_t for Latin-1, uint16_t for the Basic Multilingual Plane, char32_t), so
// that a Python string is read in place. Which code points are whitespace and which are word
// characters (regex \w: letters and digits of any script, and '_') comes from the caller, so that
// the rules are Python's own (str.split, re's \s, \b and \w).
#ifndef RESEARCH_OPS_NATIVE_SENTENCES_H_
#define RESEARCH_OPS_NATIVE_SENTENCES_H_

#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace research {

// The caller's character classes, with the Latin-1 range tabulated (looked up for every character).
class CharClasses {
 public:
  CharClasses(bool (*is_space)(char32_t), bool (*is_word)(char32_t));
  bool is_space(char32_t c) const { return c < 256 ? latin1_space_[c] : is_space_(c); }
  bool is_word(char32_t c) const { return c < 256 ? latin1_word_[c] : is_word_(c); }

 private:
  bool (*is_space_)(char32_t);
  bool (*is_word_)(char32_t);
  std::array<bool, 256> latin1_space_;
  std::array<bool, 256> latin1_word_;
};

// Words whose '.' does not end a sentence.
struct SentenceRules {
  std::vector<std::u32string> titles;  // matched without a word boundary before them ("_Mr.")
  std::vector<std::u32string> words;   // matched after a word boundary only ("vs.", not "xvs.")
};

// The [begin, end) ranges of text[0, n) between blank lines: the parts of Python's
// re.split(r"\n[ \t\r\f\v]*\n", "\n" + text + "\n") without the two added newlines (so a part may be
// empty or only whitespace).
template <typename Unit>
std::vector<std::pair<size_t, size_t>> SplitAtBlankLines(const Unit* text, size_t n);

// Writes text[0, n) to `out` with every run of whitespace made one space and none at either end
// (Python's " ".join(text.split())). Unit: uint8_t, uint16_t or char32_t.
template <typename Unit>
void NormalizeWhitespace(const Unit* text, size_t n, const CharClasses& classes, std::vector<Unit>* out);

// The [begin, end) code-point ranges of the sentences of whitespace-normalized text[0, n). A sentence
// ends after '.', '!' or '?' followed by a space, or by one closing quote or parenthesis
// (" ' U+201D U+2019 ")") and a space; a '.' directly before the space does not end one after one of
// `rules`' words or after a single capital initial other than 'I' ("J. Smith").
template <typename Unit>
std::vector<std::pair<size_t, size_t>> SplitSentences(const Unit* text, size_t n, const SentenceRules& rules,
                                                      const CharClasses& classes);

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_SENTENCES_H_
