// A unigram-model (SentencePiece) encoder for printable-ASCII sentences, exactly as SentencePiece's own
// optimized Viterbi encodes them, writing ids straight into a flat array.
//
// The text is taken as already normalized: printable ASCII (U+0020-U+007E) without leading, trailing
// or doubled spaces, which SentencePiece's NFKC normalizers leave as it is; the encoder adds the
// dummy prefix and writes each space as U+2581 ("▁", 3 bytes in UTF-8). Viterbi runs over UTF-8 bytes,
// one candidate per vocabulary piece that starts at a character, in order of length: path scores
// are float sums (as in the sentencepiece wheel: double sums differ on ties such as "---" = "-" "--"
// or "--" "-"), a later candidate wins only when strictly better, and a
// character no one-character piece covers gets the unknown piece at min(normal scores) - 10, and a
// run of unknown pieces on the best path is written as one. Text the encoder does not take (other
// characters, other spacing) is refused, and research/data/unigram_encoder.py hands it to
// SentencePiece itself.
#ifndef RESEARCH_OPS_NATIVE_UNIGRAM_H_
#define RESEARCH_OPS_NATIVE_UNIGRAM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace research {

class UnigramEncoder {
 public:
  // pieces[i], scores[i]: the vocabulary; in_lattice[i]: whether piece i is a normal piece (the only
  // ones a path may use; all others are left out); unk_id: the unknown piece; min_score: the
  // smallest score of the normal pieces.
  UnigramEncoder(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                 const std::vector<bool>& in_lattice, int32_t unk_id, float min_score);

  // Appends the ids of text[0, n) to `ids` and returns true, or returns false (ids unchanged) when
  // the text is not taken.
  bool Encode(const char* text, size_t n, std::vector<int32_t>* ids) const;

 private:
  // The bytes a normalized text can hold: printable ASCII and the three of U+2581. Pieces with any
  // other byte can never match and stay out of the trie.
  static constexpr int kAlphabet = 0x7F - 0x20 + 3;
  static int Symbol(uint8_t byte);  // in [0, kAlphabet), or -1

  // The trie: node 0 is the root; a node holds the piece ending there (or -1) and, when it has
  // children, the offset of its row of kAlphabet child nodes (0: none) in rows_ (or -1).
  struct Node {
    int32_t id = -1;
    int64_t row = -1;
  };
  std::vector<Node> nodes_;
  std::vector<uint32_t> rows_;
  std::vector<float> scores_;
  int32_t unk_id_;
  float unk_score_;
};

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_UNIGRAM_H_
