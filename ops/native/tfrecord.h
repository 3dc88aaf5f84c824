// TFRecord files of tf.train.Example protos, written without TensorFlow or protobuf.
//
// A TFRecord file is a sequence of records, each
//   uint64 length (little-endian) | uint32 masked CRC32C of the length bytes | data | uint32 masked CRC32C of data
// where masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8. The data here is a serialized
// tf.train.Example whose features are all Int64Lists: Example{features = 1: Features{feature = 1:
// map<string, Feature>}}, Feature{int64_list = 3: Int64List{value = 1, packed varints}}, map
// entries {key = 1, value = 2} in the order the features are given. research/data/tfrecord.py holds
// the Python twin, which must produce the same bytes (tests compare them, and read the files back
// with tf.data.TFRecordDataset).
#ifndef RESEARCH_OPS_NATIVE_TFRECORD_H_
#define RESEARCH_OPS_NATIVE_TFRECORD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace research {

// CRC32C (Castagnoli) of data[0, n), continuing from `crc` (0 to start). Uses the SSE4.2
// instruction where the CPU has it, a table otherwise; both give the same value.
uint32_t Crc32c(const char* data, size_t n, uint32_t crc = 0);

// TFRecord's masking of a CRC (see the file comment).
uint32_t MaskCrc32c(uint32_t crc);

// One int64 feature of every example: row r holds values[r * width, (r + 1) * width).
struct Int64Feature {
  std::string name;
  const int32_t* values;  // int32 [rows, width], row-major
  int64_t width;
};

// Appends `rows` records (one tf.train.Example each, features in the given order) to `out`.
void AppendExampleRecords(const std::vector<Int64Feature>& features, int64_t rows, std::string* out);

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_TFRECORD_H_
