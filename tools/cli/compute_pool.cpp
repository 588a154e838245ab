#include "compute_pool.h"

#include <xnnpack.h>

#include <algorithm>
#include <thread>

#include "error.h"

namespace petal::cli {

ComputePool::ComputePool(size_t threads) {
  if (xnn_initialize(nullptr) != xnn_status_success)
    throw Error("this processor lacks the instructions XNNPACK needs (SSE2)");
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (threads > 1) pool_ = pthreadpool_create(threads);
}

ComputePool::~ComputePool() {
  if (pool_) pthreadpool_destroy(pool_);
}

}  // namespace petal::cli
