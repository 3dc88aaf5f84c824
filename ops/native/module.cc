// research.data._native: the pybind11 face of packing.h and tfrecord.h. Inputs are borrowed from numpy without
// copies (C-contiguous arrays of the exact dtype; pybind11 refuses lossy casts with TypeError), the
// GIL is released while packing, and the outputs are handed to numpy without copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

#include "packing.h"
#include "tfrecord.h"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

// Moves `values` into a numpy array of `shape` that owns it.
py::array_t<int32_t> ToNumpy(std::vector<int32_t>&& values, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<int32_t>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<int32_t>*>(p); });
  return py::array_t<int32_t>(std::move(shape), owned->data(), free_when_done);
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
  m.def("crc32c", &Crc32cPy, py::arg("data"), "CRC32C (Castagnoli) of bytes, unmasked.");
}
