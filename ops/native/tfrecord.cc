// See tfrecord.h.
#include "tfrecord.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace research {
namespace {

constexpr uint32_t kCastagnoli = 0x82F63B78u;  // the reflected CRC32C polynomial

// Slicing-by-8 tables: kTables[k][b] is the CRC of byte b followed by k zero bytes.
struct Tables {
  std::array<std::array<uint32_t, 256>, 8> t;
  Tables() {
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t crc = b;
      for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ (kCastagnoli & (0u - (crc & 1u)));
      t[0][b] = crc;
    }
    for (uint32_t b = 0; b < 256; ++b) {
      for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    }
  }
};

const Tables& CrcTables() {
  static const Tables tables;
  return tables;
}

uint32_t Crc32cSoftware(const unsigned char* p, size_t n, uint32_t crc) {
  const auto& t = CrcTables().t;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);  // little-endian hosts only (x86-64, aarch64)
    word ^= crc;
    crc = t[7][word & 0xFF] ^ t[6][(word >> 8) & 0xFF] ^ t[5][(word >> 16) & 0xFF] ^
          t[4][(word >> 24) & 0xFF] ^ t[3][(word >> 32) & 0xFF] ^ t[2][(word >> 40) & 0xFF] ^
          t[1][(word >> 48) & 0xFF] ^ t[0][word >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(const unsigned char* p, size_t n,
                                                          uint32_t crc) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

// Bytes of `value` as a protobuf varint (int64 semantics: negative values take 10 bytes).
inline size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

inline char* PutVarint(uint64_t value, char* p) {
  while (value >= 0x80) {
    *p++ = static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  *p++ = static_cast<char>(value);
  return p;
}

inline uint64_t AsInt64Varint(int32_t v) { return static_cast<uint64_t>(static_cast<int64_t>(v)); }

inline char* PutFixed32(uint32_t v, char* p) {
  for (int i = 0; i < 4; ++i) *p++ = static_cast<char>((v >> (8 * i)) & 0xFF);
  return p;
}

// Field tags (field number << 3 | wire type 2, length-delimited) of the protos written here.
constexpr char kTagField1 = 0x0A;  // Example.features, Features.feature, map key, Int64List.value
constexpr char kTagField2 = 0x12;  // map entry value
constexpr char kTagField3 = 0x1A;  // Feature.int64_list

}  // namespace

uint32_t Crc32c(const char* data, size_t n, uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (HasSse42()) return ~Crc32cHardware(p, n, crc);
#endif
  return ~Crc32cSoftware(p, n, crc);
}

uint32_t MaskCrc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

void AppendExampleRecords(const std::vector<Int64Feature>& features, int64_t rows, std::string* out) {
  const size_t num_features = features.size();
  std::vector<size_t> packed(num_features), int64_list(num_features), feature(num_features),
      entry(num_features);
  for (int64_t r = 0; r < rows; ++r) {
    // Sizes, innermost first: packed varints, Int64List, Feature, map entry, Features, Example.
    size_t features_size = 0;
    for (size_t f = 0; f < num_features; ++f) {
      const int32_t* values = features[f].values + r * features[f].width;
      size_t n = 0;
      for (int64_t i = 0; i < features[f].width; ++i) n += VarintSize(AsInt64Varint(values[i]));
      packed[f] = n;
      int64_list[f] = 1 + VarintSize(n) + n;
      feature[f] = 1 + VarintSize(int64_list[f]) + int64_list[f];
      const size_t key = features[f].name.size();
      entry[f] = 1 + VarintSize(key) + key + 1 + VarintSize(feature[f]) + feature[f];
      features_size += 1 + VarintSize(entry[f]) + entry[f];
    }
    const size_t example_size = 1 + VarintSize(features_size) + features_size;
    const size_t record_start = out->size();
    if (r == 0) out->reserve(record_start + (example_size + 16) * rows * 11 / 10);
    out->resize(record_start + 8 + 4 + example_size + 4);
    char* const length = &(*out)[record_start];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((example_size >> (8 * i)) & 0xFF);
    char* p = PutFixed32(MaskCrc32c(Crc32c(length, 8)), length + 8);
    char* const example = p;
    *p++ = kTagField1;
    p = PutVarint(features_size, p);
    for (size_t f = 0; f < num_features; ++f) {
      *p++ = kTagField1;
      p = PutVarint(entry[f], p);
      *p++ = kTagField1;
      p = PutVarint(features[f].name.size(), p);
      std::memcpy(p, features[f].name.data(), features[f].name.size());
      p += features[f].name.size();
      *p++ = kTagField2;
      p = PutVarint(feature[f], p);
      *p++ = kTagField3;
      p = PutVarint(int64_list[f], p);
      *p++ = kTagField1;
      p = PutVarint(packed[f], p);
      const int32_t* values = features[f].values + r * features[f].width;
      for (int64_t i = 0; i < features[f].width; ++i) p = PutVarint(AsInt64Varint(values[i]), p);
    }
    PutFixed32(MaskCrc32c(Crc32c(example, example_size)), p);
  }
}

}  // namespace research
