// Reductions over one row, written so that the compiler vectorizes them.
//
// A single float accumulator is a serial dependency chain that the compiler may not reorder (float
// addition is not associative), so the loop stays scalar; kLanes independent accumulators, combined
// at the end, let it use full-width vector registers. The helpers are always inlined, so they run
// with the instruction set of the (target_clones) row loop that calls them.
#ifndef RESEARCH_OPS_COMMON_LANE_REDUCTIONS_H_
#define RESEARCH_OPS_COMMON_LANE_REDUCTIONS_H_

#include <algorithm>
#include <cstdint>

namespace research {

constexpr int kLanes = 16;

// The sum of a loop's kLanes accumulators.
__attribute__((always_inline)) inline float SumOfLanes(const float (&lanes)[kLanes]) {
  float total = 0.0f;
  for (int k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
}

// The sum of term(j) over j in [0, n). `term` is called exactly once for each j, so it may also write
// per-element results (an exponential, a gradient) as it goes.
template <typename Term>
__attribute__((always_inline)) inline float LaneSum(int64_t n, Term&& term) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] += term(j + k);
  }
  float total = SumOfLanes(lanes);
  for (; j < n; ++j) total += term(j);
  return total;
}

// The largest of x[0], ..., x[n - 1]; n >= 1.
__attribute__((always_inline)) inline float LaneMax(const float* x, int64_t n) {
  float lanes[kLanes];
  std::fill(lanes, lanes + kLanes, x[0]);
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) lanes[k] = std::max(lanes[k], x[j + k]);
  }
  float largest = lanes[0];
  for (int k = 1; k < kLanes; ++k) largest = std::max(largest, lanes[k]);
  for (; j < n; ++j) largest = std::max(largest, x[j]);
  return largest;
}

}  // namespace research

#endif  // RESEARCH_OPS_COMMON_LANE_REDUCTIONS_H_
