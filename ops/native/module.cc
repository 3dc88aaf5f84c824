// research.data._native: the pybind11 face of packing.h, sentences.h, select_documents.h, tfrecord.h,
// blake2b.h and unigram.h. Inputs are borrowed from numpy without copies (C-contiguous arrays of the exact dtype;
// pybind11 refuses lossy casts with TypeError), the GIL is released while packing, and the outputs
// are handed to numpy without copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "blake2b.h"
#include "packing.h"
#include "select_documents.h"
#include "sentences.h"
#include "tfrecord.h"
#include "unigram.h"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

// Moves `values` into a numpy array of `shape` that owns it.
template <typename T>
py::array_t<T> ToNumpy(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(std::move(shape), owned->data(), free_when_done);
}

void RequireOneDimensional(const py::array& array, const char* name) {
  if (array.ndim() != 1) {
    throw std::invalid_argument(std::string(name) + " must be 1-D, got " +
                                std::to_string(array.ndim()) + " dimensions");
  }
}

py::tuple PackExamplesPy(const CArray<int32_t>& token_ids, const CArray<int64_t>& sentence_offsets,
                         const CArray<int64_t>& document_offsets, int64_t seq_len,
                         const std::string& mode, uint64_t seed, int32_t cls_id, int32_t sep_id,
                         int32_t pad_id, double short_seq_prob) {
  RequireOneDimensional(token_ids, "token_ids");
  RequireOneDimensional(sentence_offsets, "sentence_offsets");
  RequireOneDimensional(document_offsets, "document_offsets");
  const research::Corpus corpus{token_ids.data(), token_ids.size(),
                                sentence_offsets.data(), sentence_offsets.size(),
                                document_offsets.data(), document_offsets.size()};
  research::PackOptions options;
  options.seq_len = seq_len;
  options.mode = research::ParsePackMode(mode);
  options.seed = seed;
  options.cls_id = cls_id;
  options.sep_id = sep_id;
  options.pad_id = pad_id;
  options.short_seq_prob = short_seq_prob;
  research::PackResult result;
  {
    py::gil_scoped_release release;
    result = research::PackExamples(corpus, options);
  }
  const py::ssize_t rows = result.num_examples;
  py::dict features;
  features["input_word_ids"] = ToNumpy(std::move(result.input_word_ids), {rows, seq_len});
  features["input_type_ids"] = ToNumpy(std::move(result.input_type_ids), {rows, seq_len});
  if (options.mode == research::PackMode::kNextSentence) {
    features["next_sentence_labels"] = ToNumpy(std::move(result.next_sentence_labels), {rows});
  }
  return py::make_tuple(features, result.num_tokens);
}

py::bytes SerializeExamplesPy(const py::list& named_arrays) {
  std::vector<research::Int64Feature> features;
  std::vector<CArray<int32_t>> keep_alive;  // the borrowed arrays outlive the GIL release
  int64_t rows = -1;
  for (const py::handle& item : named_arrays) {
    auto pair = item.cast<py::tuple>();
    if (pair.size() != 2) throw std::invalid_argument("each feature must be a (name, array) pair");
    auto name = pair[0].cast<std::string>();
    auto array = pair[1].cast<CArray<int32_t>>();
    if (array.ndim() != 2) {
      throw std::invalid_argument("feature '" + name + "' must be int32 [rows, width], got " +
                                  std::to_string(array.ndim()) + " dimensions");
    }
    if (rows >= 0 && array.shape(0) != rows) {
      throw std::invalid_argument("feature '" + name + "' has " + std::to_string(array.shape(0)) +
                                  " rows, the features before it " + std::to_string(rows));
    }
    rows = array.shape(0);
    features.push_back({name, array.data(), static_cast<int64_t>(array.shape(1))});
    keep_alive.push_back(std::move(array));
  }
  std::string out;
  {
    py::gil_scoped_release release;
    research::AppendExampleRecords(features, std::max<int64_t>(rows, 0), &out);
  }
  return py::bytes(out);
}

// Python's own character classes (str.split and re's \s; re's \w), so the native splitter agrees with
// research/data/text_input.py on every script.
bool PythonSpace(char32_t c) { return Py_UNICODE_ISSPACE(static_cast<Py_UCS4>(c)); }
bool PythonWord(char32_t c) { return Py_UNICODE_ISALNUM(static_cast<Py_UCS4>(c)) || c == U'_'; }

// Appends the whitespace-normalized document of `part` (code units of one Python string layout) to
// `documents`, its sentences to `sentences` and their number to `counts`; nothing for a blank part.
template <typename Unit>
void SplitDocument(const Unit* part, size_t n, int kind, const research::SentenceRules& rules,
                   const research::CharClasses& classes, std::vector<Unit>* normalized, py::list* documents,
                   py::list* sentences, std::vector<int64_t>* counts) {
  research::NormalizeWhitespace(part, n, classes, normalized);
  if (normalized->empty()) return;
  auto document = py::reinterpret_steal<py::object>(
      PyUnicode_FromKindAndData(kind, normalized->data(), static_cast<Py_ssize_t>(normalized->size())));
  if (!document) throw py::error_already_set();
  const auto ranges = research::SplitSentences(normalized->data(), normalized->size(), rules, classes);
  for (const auto& [begin, end] : ranges) {
    auto sentence = py::reinterpret_steal<py::object>(PyUnicode_Substring(
        document.ptr(), static_cast<Py_ssize_t>(begin), static_cast<Py_ssize_t>(end)));
    if (!sentence) throw py::error_already_set();
    sentences->append(sentence);
  }
  counts->push_back(static_cast<int64_t>(ranges.size()));
  documents->append(document);
}

py::tuple SplitDocumentsPy(const py::list& parts, const std::vector<std::u32string>& titles,
                           const std::vector<std::u32string>& words, bool blank_lines) {
  const research::CharClasses classes(&PythonSpace, &PythonWord);
  const research::SentenceRules rules{titles, words};
  py::list documents, sentences;
  std::vector<int64_t> counts;
  std::vector<uint8_t> latin1;
  std::vector<uint16_t> basic_plane;
  std::vector<char32_t> any;
  for (const py::handle& part : parts) {
    if (!PyUnicode_Check(part.ptr())) {
      throw py::type_error("split_documents takes a list of str, got an item of type " +
                           std::string(Py_TYPE(part.ptr())->tp_name));
    }
    const int kind = PyUnicode_KIND(part.ptr());
    const void* data = PyUnicode_DATA(part.ptr());
    const auto n = static_cast<size_t>(PyUnicode_GET_LENGTH(part.ptr()));
    auto split = [&](const auto* text, auto* normalized) {
      if (!blank_lines) {
        SplitDocument(text, n, kind, rules, classes, normalized, &documents, &sentences, &counts);
        return;
      }
      for (const auto& [begin, end] : research::SplitAtBlankLines(text, n)) {
        SplitDocument(text + begin, end - begin, kind, rules, classes, normalized, &documents, &sentences, &counts);
      }
    };
    if (kind == PyUnicode_1BYTE_KIND) {
      split(static_cast<const uint8_t*>(data), &latin1);
    } else if (kind == PyUnicode_2BYTE_KIND) {
      split(static_cast<const uint16_t*>(data), &basic_plane);
    } else {
      split(static_cast<const char32_t*>(data), &any);
    }
  }
  const auto num_documents = static_cast<py::ssize_t>(counts.size());
  return py::make_tuple(documents, sentences, ToNumpy(std::move(counts), {num_documents}));
}

py::tuple FlattenIdsPy(const py::list& encoded) {
  std::vector<int32_t> tokens;
  std::vector<int64_t> lengths;
  lengths.reserve(encoded.size());
  for (const py::handle& item : encoded) {
    auto ids = py::reinterpret_steal<py::object>(PySequence_Fast(item.ptr(), "each item must be a list of ids"));
    if (!ids) throw py::error_already_set();
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(ids.ptr());
    PyObject** values = PySequence_Fast_ITEMS(ids.ptr());
    for (Py_ssize_t i = 0; i < n; ++i) {
      const long id = PyLong_AsLong(values[i]);
      if (id == -1 && PyErr_Occurred()) throw py::error_already_set();
      if (id < 0 || id > INT32_MAX) {
        throw std::invalid_argument("token id " + std::to_string(id) + " is not in [0, 2**31)");
      }
      tokens.push_back(static_cast<int32_t>(id));
    }
    lengths.push_back(static_cast<int64_t>(n));
  }
  const auto num_tokens = static_cast<py::ssize_t>(tokens.size());
  const auto num_texts = static_cast<py::ssize_t>(lengths.size());
  return py::make_tuple(ToNumpy(std::move(tokens), {num_tokens}), ToNumpy(std::move(lengths), {num_texts}));
}

py::array_t<uint64_t> KeyedBlake2b128Py(const py::list& texts, const py::bytes& key) {
  const std::string_view key_view(key);
  if (key_view.size() > 64) {
    throw std::invalid_argument("a BLAKE2b key has at most 64 bytes, got " + std::to_string(key_view.size()));
  }
  std::vector<uint64_t> keys;
  keys.reserve(2 * texts.size());
  uint8_t digest[16];
  for (const py::handle& text : texts) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_Check(text.ptr()) ? PyUnicode_AsUTF8AndSize(text.ptr(), &size) : nullptr;
    if (utf8 == nullptr) {
      if (PyErr_Occurred()) throw py::error_already_set();
      throw py::type_error("keyed_blake2b_128 takes a list of str, got an item of type " +
                           std::string(Py_TYPE(text.ptr())->tp_name));
    }
    research::Blake2b(utf8, static_cast<size_t>(size), key_view.data(), key_view.size(), sizeof(digest), digest);
    for (int half = 0; half < 2; ++half) {
      uint64_t value = 0;
      for (int i = 7; i >= 0; --i) value = (value << 8) | digest[8 * half + i];
      keys.push_back(value);
    }
  }
  const auto rows = static_cast<py::ssize_t>(texts.size());
  return ToNumpy(std::move(keys), {rows, 2});
}

template <typename Token>
py::tuple SelectDocumentsPy(const CArray<int32_t>& num_sentences, const CArray<int32_t>& sentence_lengths,
                            const CArray<Token>& tokens, const CArray<int64_t>& selected) {
  RequireOneDimensional(num_sentences, "num_sentences");
  RequireOneDimensional(sentence_lengths, "sentence_lengths");
  RequireOneDimensional(tokens, "tokens");
  RequireOneDimensional(selected, "selected");
  const research::FlatDocuments<Token> corpus{num_sentences.data(), num_sentences.size(),
                                              sentence_lengths.data(), sentence_lengths.size(),
                                              tokens.data(), tokens.size()};
  research::SelectedDocuments<Token> out;
  {
    py::gil_scoped_release release;
    out = research::SelectDocuments(corpus, selected.data(), selected.size());
  }
  const auto rows = static_cast<py::ssize_t>(out.num_sentences.size());
  const auto sentences = static_cast<py::ssize_t>(out.sentence_lengths.size());
  const auto num_tokens = static_cast<py::ssize_t>(out.tokens.size());
  return py::make_tuple(ToNumpy(std::move(out.num_sentences), {rows}),
                        ToNumpy(std::move(out.sentence_lengths), {sentences}),
                        ToNumpy(std::move(out.tokens), {num_tokens}));
}

// A UnigramEncoder and the lock that serializes its calls (its word cache), taken without the GIL.
struct LockedUnigramEncoder {
  research::UnigramEncoder encoder;
  std::mutex mutex;
};

// Encodes each str of `texts` it takes; returns (ids int32 [sum of lengths], lengths int64 [texts], the
// indices of the texts it refused (their length is 0), int64).
py::tuple UnigramEncodePy(LockedUnigramEncoder& locked, const py::list& texts) {
  std::vector<std::pair<const char*, size_t>> views;
  views.reserve(texts.size());
  for (const py::handle& text : texts) {
    if (!PyUnicode_Check(text.ptr())) {
      throw py::type_error("encode takes a list of str, got an item of type " +
                           std::string(Py_TYPE(text.ptr())->tp_name));
    }
    // Only ASCII strings are taken, and their UTF-8 is their own data: no conversion, no copy.
    const bool ascii = PyUnicode_IS_ASCII(text.ptr());
    views.emplace_back(ascii ? static_cast<const char*>(PyUnicode_DATA(text.ptr())) : nullptr,
                       ascii ? static_cast<size_t>(PyUnicode_GET_LENGTH(text.ptr())) : 0);
  }
  std::vector<int32_t> ids;
  std::vector<int64_t> lengths, refused;
  lengths.reserve(views.size());
  {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(locked.mutex);
    for (size_t i = 0; i < views.size(); ++i) {
      const size_t before = ids.size();
      if (views[i].first == nullptr || !locked.encoder.Encode(views[i].first, views[i].second, &ids)) {
        refused.push_back(static_cast<int64_t>(i));
      }
      lengths.push_back(static_cast<int64_t>(ids.size() - before));
    }
  }
  const auto num_ids = static_cast<py::ssize_t>(ids.size());
  const auto num_texts = static_cast<py::ssize_t>(lengths.size());
  const auto num_refused = static_cast<py::ssize_t>(refused.size());
  return py::make_tuple(ToNumpy(std::move(ids), {num_ids}), ToNumpy(std::move(lengths), {num_texts}),
                        ToNumpy(std::move(refused), {num_refused}));
}

uint32_t Crc32cPy(const py::bytes& data) {
  const std::string_view view(data);
  return research::Crc32c(view.data(), view.size());
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Native (C++) packing core of the pretraining-record builder; see research/data/packing.py.";
  m.def("pack_examples", &PackExamplesPy, py::arg("token_ids"), py::arg("sentence_offsets"),
        py::arg("document_offsets"), py::arg("seq_len"), py::arg("mode"), py::arg("seed"),
        py::arg("cls_id"), py::arg("sep_id"), py::arg("pad_id"), py::arg("short_seq_prob"),
        R"doc(Packs a flat tokenized corpus into fixed-length examples.

Args:
  token_ids: int32 [num_tokens], C-contiguous.
  sentence_offsets: int64 [num_sentences + 1]; sentence i is token_ids[o[i]:o[i + 1]].
  document_offsets: int64 [num_documents + 1], in sentences.
  seq_len, mode, seed, cls_id, sep_id, pad_id, short_seq_prob: see research.data.packing.

Returns:
  (features, num_tokens): features maps input_word_ids and input_type_ids to int32
  [num_examples, seq_len] and, in next_sentence mode, next_sentence_labels to int32 [num_examples].

Raises:
  ValueError: unknown mode, seq_len too small, offsets out of range or decreasing.
)doc");
  m.def("serialize_examples", &SerializeExamplesPy, py::arg("features"),
        R"doc(TFRecord bytes of one tf.train.Example per row (see research.data.tfrecord).

Args:
  features: list of (name, int32 [rows, width] C-contiguous array), in the order the features are
    written; every array has the same rows.

Returns:
  bytes: the records, framed as in a .tfrecord file.
)doc");
  m.def("split_documents", &SplitDocumentsPy, py::arg("parts"), py::arg("titles"), py::arg("words"),
        py::arg("blank_lines") = false,
        R"doc(Whitespace-normalized documents and their sentences (see research.data.text_input).

Args:
  parts: list[str], the text of one document each (any whitespace).
  titles: list[str], abbreviations (without their '.') matched without a word boundary before them.
  words: list[str], abbreviations (without their '.') matched after a word boundary only.
  blank_lines: first split each part at blank lines (lines empty or of spaces, tabs, \r, \f, \v),
    as re.split(r"\n[ \t\r\f\v]*\n", "\n" + part + "\n") does.

Returns:
  (documents, sentences, sentence_counts): documents list[str], the parts with every run of
  whitespace made one space, empty ones dropped; sentences list[str], those of every document in
  order; sentence_counts int64 [len(documents)].
)doc");
  m.def("flatten_ids", &FlattenIdsPy, py::arg("encoded"),
        R"doc(One array of the ids of many texts.

Args:
  encoded: list of id lists (ints in [0, 2**31)).

Returns:
  (tokens, lengths): int32 [sum of lengths], the lists concatenated; int64 [len(encoded)].
)doc");
  m.def("keyed_blake2b_128", &KeyedBlake2b128Py, py::arg("texts"), py::arg("key"),
        R"doc(The 16-byte keyed BLAKE2b of each text's UTF-8, as hashlib.blake2b(text.encode(), digest_size=16, key=key).

Args:
  texts: list[str].
  key: bytes, at most 64.

Returns:
  uint64 [len(texts), 2]: each digest read as two little-endian uint64.
)doc");
  m.def("select_documents", &SelectDocumentsPy<uint16_t>, py::arg("num_sentences"), py::arg("sentence_lengths"),
        py::arg("tokens").noconvert(), py::arg("selected"), R"doc(Whole documents of a flat corpus, in the order given.

Args:
  num_sentences: int32 [documents], sentences per document.
  sentence_lengths: int32 [sentences], tokens per sentence (they add up to len(tokens)).
  tokens: uint16 or int32 [tokens], C-contiguous.
  selected: int64 [k], document indices (any order, repeats allowed).

Returns:
  (num_sentences[selected], their sentence lengths, their tokens), same dtypes as the inputs.

Raises:
  ValueError: counts that disagree or an index out of range (named).
)doc");
  m.def("select_documents", &SelectDocumentsPy<int32_t>, py::arg("num_sentences"), py::arg("sentence_lengths"),
        py::arg("tokens").noconvert(), py::arg("selected"));
  py::class_<LockedUnigramEncoder>(m, "UnigramEncoder", R"doc(SentencePiece's unigram Viterbi for printable-ASCII
sentences, with a cache of words, ids written to flat arrays (see ops/native/unigram.h and
research/data/unigram_encoder.py). Calls from several threads take turns.)doc")
      .def(py::init([](const std::vector<py::bytes>& pieces, const std::vector<float>& scores,
                       const std::vector<bool>& in_lattice, int32_t unk_id, float min_score,
                       size_t max_cached_words) {
             if (scores.size() != pieces.size() || in_lattice.size() != pieces.size()) {
               throw std::invalid_argument("pieces, scores and in_lattice must have one item per piece");
             }
             if (unk_id < 0 || static_cast<size_t>(unk_id) >= pieces.size()) {
               throw std::invalid_argument("unk_id " + std::to_string(unk_id) + " is not a piece id");
             }
             std::vector<std::string> piece_strings(pieces.begin(), pieces.end());
             return std::unique_ptr<LockedUnigramEncoder>(new LockedUnigramEncoder{
                 research::UnigramEncoder(piece_strings, scores, in_lattice, unk_id, min_score, max_cached_words), {}});
           }),
           py::arg("pieces"), py::arg("scores"), py::arg("in_lattice"), py::arg("unk_id"), py::arg("min_score"),
           py::arg("max_cached_words"))
      .def("encode", &UnigramEncodePy, py::arg("texts"),
           R"doc((ids int32, lengths int64 [len(texts)], refused int64): the ids of every text taken, one after the
other; the indices of the texts refused (other characters or spacing), whose length is 0.)doc")
      .def_property_readonly("caches_words", [](LockedUnigramEncoder& locked) {
             return locked.encoder.caches_words();
           }, R"doc(Whether the model lets words be cached (no piece holds '▁' inside, '▁' is a piece) and the
cache is on.)doc")
      .def("cache_stats", [](LockedUnigramEncoder& locked) {
             const std::lock_guard<std::mutex> lock(locked.mutex);
             const auto& stats = locked.encoder.cache_stats();
             py::dict out;
             out["hits"] = stats.hits;
             out["misses"] = stats.misses;
             out["whole_sentences"] = stats.whole_sentences;
             out["clears"] = stats.clears;
             return out;
           }, R"doc(dict: words found in the cache, words encoded (and cached unless longer than 24 bytes or of
more than 6 pieces), sentences run through the whole Viterbi because a word's choice was within float rounding, and cache clears.)doc");
  m.def("crc32c", &Crc32cPy, py::arg("data"), "CRC32C (Castagnoli) of bytes, unmasked.");
}
