// The 32-bit hash behind Research>Dropout's keep mask, shared by the kernel and documented for the
// TensorFlow twin in research/ops/dropout.py, which must compute the same bits.
//
//   Mix(h)      = lowbias32: h ^= h >> 16; h *= 0x7feb352d; h ^= h >> 15; h *= 0x846ca68b; h ^= h >> 16
//   key         = Mix(s0 ^ Mix(s1 ^ Mix(s2 ^ Mix(s3 ^ 0x9e3779b9))))
//                 with s0, s1 the low and high words of seed[0], s2, s3 those of seed[1]
//   hash(i)     = Mix(Mix(lo(i) ^ key) + (hi(i) ^ 0x85ebca6b))       (i: the flat element index)
//
// Keras' SeedGenerator hands consecutive calls seeds that differ by one in seed[1]; the key passes
// every seed word through the mixer, so neighbouring seeds give unrelated masks.
#ifndef RESEARCH_OPS_DROPOUT_DROPOUT_HASH_H_
#define RESEARCH_OPS_DROPOUT_DROPOUT_HASH_H_

#include <cstdint>

namespace research {

inline uint32_t DropoutMix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352dU;
  h ^= h >> 15;
  h *= 0x846ca68bU;
  h ^= h >> 16;
  return h;
}

inline uint32_t DropoutKey(int64_t seed0, int64_t seed1) {
  const uint64_t a = static_cast<uint64_t>(seed0), b = static_cast<uint64_t>(seed1);
  const uint32_t s0 = static_cast<uint32_t>(a), s1 = static_cast<uint32_t>(a >> 32);
  const uint32_t s2 = static_cast<uint32_t>(b), s3 = static_cast<uint32_t>(b >> 32);
  return DropoutMix(s0 ^ DropoutMix(s1 ^ DropoutMix(s2 ^ DropoutMix(s3 ^ 0x9e3779b9U))));
}

inline uint32_t DropoutHash(uint32_t key, uint32_t index_lo, uint32_t index_hi) {
  return DropoutMix(DropoutMix(index_lo ^ key) + (index_hi ^ 0x85ebca6bU));
}

}  // namespace research

#endif  // RESEARCH_OPS_DROPOUT_DROPOUT_HASH_H_
