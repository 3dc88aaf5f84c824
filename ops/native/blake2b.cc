// See blake2b.h. Written from RFC 7693, sections 2 and 3 (parameters, mixing G, compression F).
#include "blake2b.h"

#include <cstring>

namespace research {
namespace {

constexpr uint64_t kIv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                             0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                             0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

constexpr uint8_t kSigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

constexpr size_t kBlock = 128;

inline uint64_t RotateRight(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

inline uint64_t LoadLittleEndian(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

inline void Mix(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) {
  v[a] = v[a] + v[b] + x;
  v[d] = RotateRight(v[d] ^ v[a], 32);
  v[c] = v[c] + v[d];
  v[b] = RotateRight(v[b] ^ v[c], 24);
  v[a] = v[a] + v[b] + y;
  v[d] = RotateRight(v[d] ^ v[a], 16);
  v[c] = v[c] + v[d];
  v[b] = RotateRight(v[b] ^ v[c], 63);
}

// F: folds one 128-byte block into the state h; `bytes` counts everything hashed so far, this block
// included (the key block counts as 128 bytes).
void Compress(uint64_t h[8], const uint8_t block[kBlock], uint64_t bytes, bool last) {
  uint64_t m[16], v[16];
  for (int i = 0; i < 16; ++i) m[i] = LoadLittleEndian(block + 8 * i);
  for (int i = 0; i < 8; ++i) {
    v[i] = h[i];
    v[i + 8] = kIv[i];
  }
  v[12] ^= bytes;  // the high 64 bits of the 128-bit counter stay 0 below 2**64 bytes
  if (last) v[14] = ~v[14];
  for (const auto& s : kSigma) {
    Mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
    Mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
    Mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
    Mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
    Mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
    Mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
    Mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
    Mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (int i = 0; i < 8; ++i) h[i] ^= v[i] ^ v[i + 8];
}

}  // namespace

void Blake2b(const void* data, size_t size, const void* key, size_t key_size, size_t digest_size,
             uint8_t* digest) {
  uint64_t h[8];
  std::memcpy(h, kIv, sizeof(h));
  h[0] ^= 0x01010000ULL ^ (static_cast<uint64_t>(key_size) << 8) ^ digest_size;
  const auto* in = static_cast<const uint8_t*>(data);
  uint8_t block[kBlock];
  uint64_t hashed = 0;
  if (key_size > 0) {
    std::memset(block, 0, kBlock);
    std::memcpy(block, key, key_size);
    hashed = kBlock;
    Compress(h, block, hashed, /*last=*/size == 0);
  }
  // Every full block but the last is compressed as it stands; the last (possibly partial or, for
  // an empty unkeyed message, empty) block is zero-padded and flagged.
  while (size > kBlock) {
    hashed += kBlock;
    Compress(h, in, hashed, /*last=*/false);
    in += kBlock;
    size -= kBlock;
  }
  if (size > 0 || key_size == 0) {
    std::memset(block, 0, kBlock);
    std::memcpy(block, in, size);
    hashed += size;
    Compress(h, block, hashed, /*last=*/true);
  }
  for (size_t i = 0; i < digest_size; ++i) digest[i] = static_cast<uint8_t>(h[i / 8] >> (8 * (i % 8)));
}

}  // namespace research
