// SplitMix64: the tiny PRNG shared, bit for bit, by the C++ packer and its Python twin
// (research/data/packing.py). Both sides must draw the same numbers in the same order, so every
// derived draw (Below, Uniform, Coin) is defined here once and mirrored exactly in Python.
// The masking kernel (ops/mask_tokens) draws its per-row streams from it too.
#ifndef RESEARCH_OPS_NATIVE_SPLITMIX64_H_
#define RESEARCH_OPS_NATIVE_SPLITMIX64_H_

#include <cstdint>

namespace research {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  // The next raw 64-bit value (Steele, Lea and Flood, 2014).
  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform integer in [0, n) for n >= 1, by modulo (the bias is below n / 2^64, negligible here).
  uint64_t Below(uint64_t n) { return Next() % n; }

  // Uniform double in [0, 1) from the top 53 bits: exact in IEEE double, so Python agrees.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // A fair coin from the top bit.
  bool Coin() { return (Next() >> 63) != 0; }

 private:
  uint64_t state_;
};

}  // namespace research

#endif  // RESEARCH_OPS_NATIVE_SPLITMIX64_H_
