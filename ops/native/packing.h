// The packing core of the pretraining-record builder: turns a flat, tokenized corpus into
// fixed-length examples. Free of Python so that it can be tested and reused on its own;
// module.cc binds it. research/data/packing.py holds the pure Python twin, which must produce
// identical output for the same inputs and seed (tests/data compare them exactly).
#ifndef RESEARCH_OPS_NATIVE_PACKING_H_
#define RESEARCH_OPS_NATIVE_PACKING_H_

#include <cstdint>
#include <string>
#include <vector>

namespace research {

enum class PackMode {
  kFullSentences,  // RoBERTa FULL-SENTENCES: [CLS] s1 s2 ... [SEP], may cross documents.
  kSegmentPair,    // BERT-style [CLS] A [SEP] B [SEP], B the true continuation of A.
  kNextSentence,   // Like kSegmentPair, but half the time B comes from another document.
};

// Parses "full_sentences" | "segment_pair" | "next_sentence"; throws std::invalid_argument.
PackMode ParsePackMode(const std::string& name);

// The name ParsePackMode accepts for `mode`.
const char* PackModeName(PackMode mode);

// The smallest seq_len that can hold one example of `mode` (3 for full sentences, 5 for pairs).
int64_t MinSeqLen(PackMode mode);

// A flat corpus, borrowed (never copied): sentence i is
// token_ids[sentence_offsets[i] : sentence_offsets[i + 1]], document d is sentences
// [document_offsets[d], document_offsets[d + 1]).
struct Corpus {
  const int32_t* token_ids;          // int32 [num_tokens]
  int64_t num_tokens;
  const int64_t* sentence_offsets;   // int64 [num_sentences + 1]
  int64_t num_sentence_offsets;
  const int64_t* document_offsets;   // int64 [num_documents + 1], in sentences
  int64_t num_document_offsets;
};

struct PackOptions {
  int64_t seq_len = 128;
  PackMode mode = PackMode::kFullSentences;
  uint64_t seed = 0;
  int32_t cls_id = 2;
  int32_t sep_id = 3;
  int32_t pad_id = 0;
  double short_seq_prob = 0.1;  // pair modes: chance that a document targets a shorter length
};

// Row-major outputs; num_examples rows of seq_len.
struct PackResult {
  std::vector<int32_t> input_word_ids;        // int32 [num_examples * seq_len]
  std::vector<int32_t> input_type_ids;        // int32 [num_examples * seq_len]
  std::vector<int32_t> next_sentence_labels;  // int32 [num_examples], next_sentence mode only
  int64_t num_examples = 0;
  int64_t num_tokens = 0;                     // corpus tokens placed in examples (no specials)
};

// Checks the corpus and options; throws std::invalid_argument naming the offending value.
void ValidatePackArguments(const Corpus& corpus, const PackOptions& options);

// Validates, then packs. Deterministic in (corpus, options).
PackResult PackExamples(const Corpus& corpus, const PackOptions& options);

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_PACKING_H_
