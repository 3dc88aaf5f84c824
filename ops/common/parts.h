// Splitting a kernel's work into a few large parts on the op's intra-op thread pool.
#ifndef RESEARCH_OPS_COMMON_PARTS_H_
#define RESEARCH_OPS_COMMON_PARTS_H_

#include <cstdint>
#include <functional>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/work_sharder.h"

namespace research {

// Runs work(part) for part in [0, parts) on the intra-op pool, one part per thread.
inline void RunParts(::tensorflow::OpKernelContext* ctx, int64_t parts, const std::function<void(int64_t)>& work) {
  if (parts <= 1) {
    if (parts == 1) work(0);
    return;
  }
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  ::tensorflow::Shard(static_cast<int>(parts), workers, parts, /*cost_per_unit=*/int64_t{1} << 40,
                      [&work](int64_t begin, int64_t end) {
                        for (int64_t p = begin; p < end; ++p) work(p);
                      });
}

// The first index of `part` when [0, total) is cut into `parts` contiguous ranges.
inline int64_t PartBegin(int64_t total, int64_t parts, int64_t part) { return total * part / parts; }

}  // namespace research

#endif  // RESEARCH_OPS_COMMON_PARTS_H_
