// Gathers whole documents of a flat tokenized corpus, in a given order: the record builder routes a
// block's documents to buckets and sorts a bucket's documents by key with it, in one pass over the
// chosen documents and without index arrays of every sentence and token.
#ifndef RESEARCH_OPS_NATIVE_SELECT_DOCUMENTS_H_
#define RESEARCH_OPS_NATIVE_SELECT_DOCUMENTS_H_

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace research {

// A flat corpus (borrowed): document d has num_sentences[d] sentences, sentence s has
// sentence_lengths[s] tokens, all of them one after the other in `tokens`.
template <typename Token>
struct FlatDocuments {
  const int32_t* num_sentences;
  int64_t num_documents;
  const int32_t* sentence_lengths;
  int64_t num_sentence_lengths;
  const Token* tokens;
  int64_t num_tokens;
};

template <typename Token>
struct SelectedDocuments {
  std::vector<int32_t> num_sentences;     // [selected]
  std::vector<int32_t> sentence_lengths;  // their sentences' lengths, in selected order
  std::vector<Token> tokens;              // their tokens, in selected order
};

// Documents selected[0], selected[1], ... of `corpus` (any order, repeats allowed). Throws
// std::invalid_argument when the corpus' counts disagree or a selected index is out of range.
template <typename Token>
SelectedDocuments<Token> SelectDocuments(const FlatDocuments<Token>& corpus, const int64_t* selected,
                                         int64_t num_selected) {
  std::vector<int64_t> first_sentence(corpus.num_documents + 1, 0);
  for (int64_t d = 0; d < corpus.num_documents; ++d) {
    if (corpus.num_sentences[d] < 0) throw std::invalid_argument("num_sentences has a negative count");
    first_sentence[d + 1] = first_sentence[d] + corpus.num_sentences[d];
  }
  if (first_sentence.back() != corpus.num_sentence_lengths) {
    throw std::invalid_argument("num_sentences adds up to " + std::to_string(first_sentence.back()) +
                                " sentences, sentence_lengths has " + std::to_string(corpus.num_sentence_lengths));
  }
  std::vector<int64_t> first_token(corpus.num_sentence_lengths + 1, 0);
  for (int64_t s = 0; s < corpus.num_sentence_lengths; ++s) {
    if (corpus.sentence_lengths[s] < 0) throw std::invalid_argument("sentence_lengths has a negative length");
    first_token[s + 1] = first_token[s] + corpus.sentence_lengths[s];
  }
  if (first_token.back() != corpus.num_tokens) {
    throw std::invalid_argument("sentence_lengths adds up to " + std::to_string(first_token.back()) +
                                " tokens, tokens has " + std::to_string(corpus.num_tokens));
  }
  SelectedDocuments<Token> out;
  out.num_sentences.reserve(num_selected);
  int64_t sentences = 0, tokens = 0;
  for (int64_t i = 0; i < num_selected; ++i) {
    const int64_t d = selected[i];
    if (d < 0 || d >= corpus.num_documents) {
      throw std::invalid_argument("selected[" + std::to_string(i) + "] = " + std::to_string(d) +
                                  " is not a document in [0, " + std::to_string(corpus.num_documents) + ")");
    }
    sentences += corpus.num_sentences[d];
    tokens += first_token[first_sentence[d + 1]] - first_token[first_sentence[d]];
  }
  out.sentence_lengths.resize(sentences);
  out.tokens.resize(tokens);
  int32_t* lengths_out = out.sentence_lengths.data();
  Token* tokens_out = out.tokens.data();
  for (int64_t i = 0; i < num_selected; ++i) {
    const int64_t d = selected[i];
    const int64_t s0 = first_sentence[d], s1 = first_sentence[d + 1];
    const int64_t t0 = first_token[s0], t1 = first_token[s1];
    out.num_sentences.push_back(corpus.num_sentences[d]);
    std::memcpy(lengths_out, corpus.sentence_lengths + s0, (s1 - s0) * sizeof(int32_t));
    std::memcpy(tokens_out, corpus.tokens + t0, (t1 - t0) * sizeof(Token));
    lengths_out += s1 - s0;
    tokens_out += t1 - t0;
  }
  return out;
}

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_SELECT_DOCUMENTS_H_
