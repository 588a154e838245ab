// Dense matrix products for the trainable head, on XNNPACK's batch-matrix-multiply operator
// (dynamic weights, so the same call serves forward and backward passes).
#pragma once
#include <cstddef>
#include <vector>

typedef struct pthreadpool* pthreadpool_t;

namespace petal {

// C[m×n] = A[m×k] · B, where B is [k×n], or [n×k] used transposed when `transpose_b`.
// A and B must have XNN_EXTRA_BYTES of readable slack past their end (use PaddedBuffer).
void matmul(const float* A, const float* B, float* C, size_t m, size_t k, size_t n, bool transpose_b,
            pthreadpool_t pool);

// A float buffer with the slack XNNPACK may read past the end.
struct PaddedBuffer {
  std::vector<float> v;
  void resize(size_t n) { v.resize(n + 32); }
  float* data() { return v.data(); }
  const float* data() const { return v.data(); }
};

// Run `fn(begin, end)` over [0, n) split across the pool's threads (inline when pool is null).
void parallel_for(pthreadpool_t pool, size_t n, void (*fn)(void* ctx, size_t begin, size_t end), void* ctx);

}  // namespace petal
