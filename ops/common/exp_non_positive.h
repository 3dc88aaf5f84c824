// exp(x) for x <= 0 as a polynomial the compiler can vectorize (a libm call keeps a loop scalar).
#ifndef RESEARCH_OPS_COMMON_EXP_NON_POSITIVE_H_
#define RESEARCH_OPS_COMMON_EXP_NON_POSITIVE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace research {

// exp(x) for x <= 0 (Cephes' expf, about 1 ulp): 2^t p(r) with t = round(x / ln 2) and
// r = x - t ln 2. Below -87, where exp(x) is under float32's smallest normal, it returns 0.
inline float ExpNonPositive(float x) {
  constexpr float kRoundToInteger = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to nearest
  const float clamped = std::max(x, -87.0f);
  const float t = (clamped * 1.44269504088896341f + kRoundToInteger) - kRoundToInteger;
  float r = clamped - t * 0.693359375f;
  r = r - t * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float mantissa = p * (r * r) + r + 1.0f;
  const uint32_t exponent_bits = static_cast<uint32_t>(static_cast<int32_t>(t) + 127) << 23;  // 2^t, t >= -126
  float power;
  std::memcpy(&power, &exponent_bits, sizeof(power));
  return x < -87.0f ? 0.0f : mantissa * power;
}

}  // namespace research

#endif  // RESEARCH_OPS_COMMON_EXP_NON_POSITIVE_H_
