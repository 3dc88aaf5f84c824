// A unigram-model (SentencePiece) encoder for printable-ASCII sentences, exactly as SentencePiece's own
// optimized Viterbi encodes them, writing ids straight into a flat array, with a cache of words.
//
// The text is taken as already normalized: printable ASCII (U+0020-U+007E) without leading, trailing
// or doubled spaces, which SentencePiece's NFKC normalizers leave as it is; the encoder adds the
// dummy prefix and writes each space as U+2581 ("▁", 3 bytes in UTF-8). Viterbi runs over UTF-8 bytes,
// one candidate per vocabulary piece that starts at a character, in order of length: path scores
// are float sums (as in the sentencepiece wheel: double sums differ on ties such as "---" = "-" "--"
// or "--" "-"), a later candidate wins only when strictly better, and a character no one-character
// piece covers gets the unknown piece at min(normal scores) - 10, and a run of unknown pieces on the
// best path is written as one. Text the encoder does not take (other characters, other spacing) is
// refused, and research/data/unigram_encoder.py hands it to SentencePiece itself.
//
// Word cache. When no vocabulary piece holds "▁" after its first byte and "▁" is a piece, every
// "▁" of the normalized text starts a piece on every path, so the best path of a sentence is the best
// path of each of its words ("▁" + the bytes up to the next space) put end to end, in exact
// arithmetic. In float arithmetic a word's path can still depend on its offset in the sentence where
// two candidates of one lattice node are within rounding of each other (the "---" kind of tie). So a
// cached word keeps, beside its ids, the smallest gap between the chosen and any other candidate at
// the nodes of its path and the largest candidate magnitude in its lattice; a sentence is assembled
// from its words only when every word's gap exceeds a bound on the rounding of both computations
// (float error <= bytes * magnitude * 2^-24 each side, taken 4x), and is run through the whole
// Viterbi otherwise. Words repeat (Zipf), so most sentences never run the Viterbi at all.
#ifndef RESEARCH_OPS_NATIVE_UNIGRAM_H_
#define RESEARCH_OPS_NATIVE_UNIGRAM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace research {

class UnigramEncoder {
 public:
  // What the word cache did since construction: words found, words encoded and cached, sentences
  // run through the whole Viterbi because a word's gap was within rounding, and cache clears.
  struct CacheStats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t whole_sentences = 0;
    int64_t clears = 0;
  };

  // pieces[i], scores[i]: the vocabulary; in_lattice[i]: whether piece i is a normal piece (the only
  // ones a path may use; all others are left out); unk_id: the unknown piece; min_score: the
  // smallest score of the normal pieces; max_cached_words: the cache is emptied when it holds this
  // many words (0: no cache).
  UnigramEncoder(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                 const std::vector<bool>& in_lattice, int32_t unk_id, float min_score, size_t max_cached_words);

  // Appends the ids of text[0, n) to `ids` and returns true, or returns false (ids unchanged) when
  // the text is not taken. Not thread-safe (the cache): callers serialize calls.
  bool Encode(const char* text, size_t n, std::vector<int32_t>* ids);

  bool caches_words() const { return max_cached_words_ > 0; }
  const CacheStats& cache_stats() const { return stats_; }

 private:
  // The bytes a normalized text can hold: printable ASCII and the three of U+2581. Pieces with any
  // other byte can never match and stay out of the trie.
  static constexpr int kAlphabet = 0x7F - 0x20 + 3;
  static int Symbol(uint8_t byte);  // in [0, kAlphabet), or -1

  // What a word's Viterbi found besides its ids (see the word cache above).
  struct PathFacts {
    double gap = 0;        // smallest (chosen - other) candidate score at a node of the best path
    double magnitude = 0;  // largest |candidate score| in the lattice
  };
  // One word of the cache in one cache line: its bytes (without the "▁"), its ids and facts. Words
  // longer than kCachedKeyBytes or of more than kCachedIds pieces are not cached. Words sit in the
  // order they were first seen, so the frequent ones share a few cache lines at the front; a
  // hash index (open addressing, linear probing, at most half full) finds them.
  static constexpr size_t kCachedKeyBytes = 24;
  static constexpr size_t kCachedIds = 6;
  struct alignas(64) CachedWord {
    uint8_t key_bytes = 0;
    uint8_t id_count = 0;
    float gap = 0;
    float magnitude = 0;
    char key[kCachedKeyBytes];
    int32_t ids[kCachedIds];
  };
  static_assert(sizeof(CachedWord) == 64, "a CachedWord is one cache line");
  struct IndexSlot {
    uint32_t hash = 0;  // 0: empty (a word's hash is never 0)
    uint32_t word = 0;  // in cached_
  };

  // Viterbi over normalized bytes[0, size), appending the best path's ids to `ids`.
  PathFacts Viterbi(const uint8_t* bytes, size_t size, std::vector<int32_t>* ids) const;
  // Appends the ids of `word` ("▁" + word; `hash` its HashWord) to `ids` and returns its facts,
  // from the cache or by Viterbi (caching the word when it fits a CachedWord).
  PathFacts EncodeWord(const char* word, size_t size, uint32_t hash, std::vector<int32_t>* ids);
  bool EncodeByWords(const char* text, size_t n, std::vector<int32_t>* ids);
  void GrowIndex();

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

  size_t max_cached_words_;
  std::vector<CachedWord> cached_;
  std::vector<IndexSlot> index_;  // size a power of two (or 0)
  std::string normalized_;       // scratch of Encode
  // Scratch of EncodeByWords: the sentence's words, and their ids one word after the other.
  struct WordAt {
    size_t begin;
    size_t size;
    uint32_t hash;
    int64_t entry;  // in cached_ by the hash alone, or -1
    PathFacts facts;
  };
  std::vector<WordAt> words_;
  std::vector<int32_t> pending_;
  CacheStats stats_;
};

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_UNIGRAM_H_
