#include "matmul.h"

#include <xnnpack.h>

#include <memory>
#include <string>

#include "error.h"

namespace petal {

void matmul(const float* A, const float* B, float* C, size_t m, size_t k, size_t n, bool transpose_b,
            pthreadpool_t pool) {
  // The head may train before (or without) a backbone, which otherwise initialises XNNPACK.
  static const xnn_status init = xnn_initialize(nullptr);  // idempotent and thread-safe
  if (init != xnn_status_success)
    throw Error("XNNPACK cannot run on this processor (status " + std::to_string(int(init)) + ")");
  xnn_operator_t op = nullptr;
  if (xnn_create_batch_matrix_multiply_nc_f32(transpose_b ? XNN_FLAG_TRANSPOSE_B : 0, &op) != xnn_status_success)
    throw Error("XNNPACK could not create a matrix multiply (is xnn_initialize done?)");
  size_t ws_size = 0, ws_align = 0;
  const size_t one = 1;
  xnn_status s = xnn_reshape_batch_matrix_multiply_nc_f32(op, 1, &one, &one, m, k, n, &ws_size, &ws_align, pool);
  std::unique_ptr<char[]> ws(new char[ws_size + ws_align + 1]);  // not zero-filled: XNNPACK writes it before reading
  void* wsp = ws.get();
  if (ws_align) wsp = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(wsp) + ws_align - 1) & ~(uintptr_t(ws_align) - 1));
  if (s == xnn_status_success) s = xnn_setup_batch_matrix_multiply_nc_f32(op, wsp, A, B, C);
  if (s == xnn_status_success) s = xnn_run_operator(op, pool);
  xnn_delete_operator(op);
  if (s != xnn_status_success) throw Error("XNNPACK matrix multiply failed (status " + std::to_string(int(s)) + ")");
}

namespace {
struct ForCtx {
  void (*fn)(void*, size_t, size_t);
  void* ctx;
  size_t n, chunk;
};
void for_task(void* p, size_t i) {
  auto* c = static_cast<ForCtx*>(p);
  const size_t b = i * c->chunk, e = std::min(c->n, b + c->chunk);
  if (b < e) c->fn(c->ctx, b, e);
}
}  // namespace

void parallel_for(pthreadpool_t pool, size_t n, void (*fn)(void*, size_t, size_t), void* ctx) {
  const size_t threads = pool ? pthreadpool_get_threads_count(pool) : 1;
  if (threads <= 1 || n < 4096) {
    fn(ctx, 0, n);
    return;
  }
  ForCtx c{fn, ctx, n, (n + threads * 4 - 1) / (threads * 4)};
  pthreadpool_parallelize_1d(pool, for_task, &c, (n + c.chunk - 1) / c.chunk, 0);
}

}  // namespace petal
