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

// [0, sizes[0], sizes[0] + sizes[1], ...]: where each of n consecutive groups starts (n + 1 values).
// Throws std::invalid_argument when a size is negative or they do not add up to `total`, the number of
// `items` that `holder` has.
inline std::vector<int64_t> StartOffsets(const int32_t* sizes, int64_t n, int64_t total, const char* sizes_name,
                                         const char* items, const char* holder) {
  std::vector<int64_t> starts(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (sizes[i] < 0) throw std::invalid_argument(std::string(sizes_name) + " has a negative size");
    starts[i + 1] = starts[i] + sizes[i];
  }
  if (starts.back() != total) {
    throw std::invalid_argument(std::string(sizes_name) + " adds up to " + std::to_string(starts.back()) + " " +
                                items + ", " + holder + " has " + std::to_string(total));
  }
  return starts;
}

// Documents selected[0], selected[1], ... of `corpus` (any order, repeats allowed). Throws
// std::invalid_argument when the corpus' counts disagree or a selected index is out of range.
template <typename Token>
SelectedDocuments<Token> SelectDocuments(const FlatDocuments<Token>& corpus, const int64_t* selected,
                                         int64_t num_selected) {
  const std::vector<int64_t> first_sentence = StartOffsets(
      corpus.num_sentences, corpus.num_documents, corpus.num_sentence_lengths, "num_sentences", "sentences",
      "sentence_lengths");
  const std::vector<int64_t> first_token = StartOffsets(
      corpus.sentence_lengths, corpus.num_sentence_lengths, corpus.num_tokens, "sentence_lengths", "tokens", "tokens");
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
