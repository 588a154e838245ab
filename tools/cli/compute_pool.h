// Threads for head training and prediction outside a backbone (petal train, eval, teach, fewshot).
#pragma once
#include <pthreadpool.h>

#include <cstddef>

namespace petal::cli {

// XNNPACK initialised, a pthreadpool of `threads` (0 = all cores; none when 1).
class ComputePool {
 public:
  explicit ComputePool(size_t threads = 0);
  ~ComputePool();
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;
  pthreadpool_t get() const { return pool_; }

 private:
  pthreadpool_t pool_ = nullptr;
};

}  // namespace petal::cli
