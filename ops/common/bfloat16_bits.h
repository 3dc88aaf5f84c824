// bfloat16 as raw 16-bit patterns, for loops the compiler can vectorize (Eigen::bfloat16's own
// conversions are scalar without AVX-512 BF16).
#ifndef RESEARCH_OPS_COMMON_BFLOAT16_BITS_H_
#define RESEARCH_OPS_COMMON_BFLOAT16_BITS_H_

#include <cstdint>
#include <cstring>

namespace research {

// The float32 a bfloat16 bit pattern stands for (exact).
inline float Bfloat16BitsToFloat(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// `value` rounded to the nearest bfloat16, ties to even, NaN to the quiet NaN of its sign: what
// Eigen's (and so TensorFlow's) float-to-bfloat16 conversion gives, bit for bit.
inline uint16_t FloatToBfloat16Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const bool is_nan = (bits & 0x7fffffffU) > 0x7f800000U;
  const uint32_t rounded = (bits + 0x7fffU + ((bits >> 16) & 1U)) >> 16;
  return is_nan ? static_cast<uint16_t>((bits >> 16) & 0x8000U ? 0xffc0U : 0x7fc0U) : static_cast<uint16_t>(rounded);
}

}  // namespace research

#endif  // RESEARCH_OPS_COMMON_BFLOAT16_BITS_H_
