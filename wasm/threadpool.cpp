// Petal's thread pool, behind pthreadpool's C API (the subset XNNPACK and the engine call).
//
// Why not pthreadpool itself: pthreadpool splits every parallel operation into one range per
// thread and the calling thread then waits until every worker has woken up, even a worker whose
// whole range the caller has already stolen and finished. When the cores are shared with other
// busy processes (a browser with other tabs, a build, other users of a small VM) a worker is often
// not scheduled for a whole time slice, so each of ResNet-50's ~90 operators waits several
// milliseconds: on this project's 2-core machine under load, 2 threads ran 4-5 times slower than 1.
// Here the caller and the workers take chunks of the operation from one shared counter, and the
// caller only waits for chunks that a worker has actually started; a worker that wakes up late
// finds nothing left and goes back to sleep. With idle cores it behaves like pthreadpool.
//
// How it replaces pthreadpool: this file defines every pthreadpool_* function that XNNPACK and
// Petal use. It sits in libpetal_engine, which comes before XNNPACK's libpthreadpool.a on the link
// line, and backbone.cpp references pthreadpool_create, so the linker takes these definitions and
// never needs libpthreadpool.a's (had it pulled one, the duplicate symbols would fail the link).
// XNNPACK is not rebuilt; pthreadpool.h is its public header.
#include <pthreadpool.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PETAL_POOL_X86 1
#endif

namespace {

// One parallel operation: `items` calls of `run(item, thread)`, handed out in chunks.
struct Job {
  void (*run)(const Job&, size_t item, size_t thread) = nullptr;
  void* fn = nullptr;  // the caller's task function, cast back by `run`
  void* ctx = nullptr;
  size_t items = 0, chunk = 1;
  size_t range[6] = {0, 0, 0, 0, 0, 0};  // the grid's dimensions
  size_t tile[6] = {1, 1, 1, 1, 1, 1};   // their tile sizes (1: not tiled)
  size_t count[6] = {0, 0, 0, 0, 0, 0};  // tiles along each dimension
  uint32_t flags = 0;
  std::atomic<size_t> next{0};   // next unclaimed item
  std::atomic<size_t> done{0};   // items finished
  std::atomic<int> active{0};    // workers inside this job
};

#ifdef PETAL_POOL_X86
struct Denormals {  // PTHREADPOOL_FLAG_DISABLE_DENORMALS: flush to zero while the task runs
  explicit Denormals(bool on) : on_(on) {
    if (on_) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040);  // FTZ | DAZ
    }
  }
  ~Denormals() {
    if (on_) _mm_setcsr(saved_);
  }
  bool on_;
  unsigned saved_ = 0;
};
#else
struct Denormals {
  explicit Denormals(bool) {}
};
#endif

// Spin until `ready()` or about `kSpinMicros` have passed (the caller then sleeps until ready). A wake-up through the
// condition variable costs tens of microseconds natively and more in a browser (a Worker blocked in
// Atomics.wait), and ResNet-50 runs ~90-140 operators back to back: spinning across the short gap
// between two operators keeps both threads busy. The clock is read every 64 spins only.
constexpr double kSpinMicros = 200;
template <class Ready>
void spin_until(Ready ready) {
  const auto start = std::chrono::steady_clock::now();
  for (unsigned n = 1; !ready(); ++n) {
#ifdef PETAL_POOL_X86
    _mm_pause();
#endif
    if (n % 64 == 0 &&
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() > kSpinMicros)
      return;
  }
}

// Claim and run chunks until none is left.
void work(Job& j, size_t thread) {
  Denormals d((j.flags & PTHREADPOOL_FLAG_DISABLE_DENORMALS) != 0);
  for (;;) {
    const size_t b = j.next.fetch_add(j.chunk, std::memory_order_relaxed);
    if (b >= j.items) return;
    const size_t e = std::min(j.items, b + j.chunk);
    for (size_t i = b; i < e; ++i) j.run(j, i, thread);
    j.done.fetch_add(e - b, std::memory_order_acq_rel);
  }
}

}  // namespace

struct pthreadpool {
  size_t threads = 1;  // including the caller
  std::vector<std::thread> workers;
  std::mutex m;                       // guards job, generation, stop
  std::condition_variable wake;       // workers wait here for a job
  std::condition_variable finished;   // the caller waits here for the last chunks
  std::atomic<uint64_t> generation{0};
  Job* job = nullptr;                 // the open job, or null
  bool stop = false;
  std::mutex serial;                  // one parallel operation at a time, as pthreadpool

  void worker_loop(size_t index) {
    uint64_t seen = 0;
    for (;;) {
      // A short spin catches the next operator of a network without a sleep/wake round trip.
      spin_until([&] { return generation.load(std::memory_order_acquire) != seen; });
      Job* j = nullptr;
      {
        std::unique_lock<std::mutex> l(m);
        wake.wait(l, [&] { return stop || generation.load(std::memory_order_relaxed) != seen; });
        if (stop) return;
        seen = generation.load(std::memory_order_relaxed);
        j = job;  // null when the caller already closed it
        if (j) j->active.fetch_add(1, std::memory_order_relaxed);
      }
      if (!j) continue;
      work(*j, index);
      if (j->active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> l(m);
        finished.notify_all();
      }
    }
  }

  void execute(Job& j) {
    if (j.items == 0) return;
    if (threads <= 1 || j.items == 1) {
      Denormals d((j.flags & PTHREADPOOL_FLAG_DISABLE_DENORMALS) != 0);
      for (size_t i = 0; i < j.items; ++i) j.run(j, i, 0);
      return;
    }
    // Chunks: enough to balance (8 per thread), contiguous so neighbouring tiles share caches.
    j.chunk = std::max<size_t>(1, j.items / (threads * 8));
    std::lock_guard<std::mutex> one(serial);
    {
      std::lock_guard<std::mutex> l(m);
      job = &j;
      generation.fetch_add(1, std::memory_order_release);
    }
    wake.notify_all();
    work(j, 0);
    // The last chunks a worker is still running usually end within microseconds: wait for them
    // spinning rather than asleep (a wake-up would put its latency on the critical path).
    spin_until([&] { return j.done.load(std::memory_order_acquire) == j.items; });
    std::unique_lock<std::mutex> l(m);
    job = nullptr;  // late workers find nothing
    finished.wait(l, [&] {
      return j.done.load(std::memory_order_acquire) == j.items && j.active.load(std::memory_order_acquire) == 0;
    });
  }
};

namespace {

size_t divide_round_up(size_t n, size_t q) { return (n + q - 1) / q; }

// Calls the task of item `i` of an N-dimensional grid whose last T dimensions are tiled: `Fn`
// takes the thread index when WithThread, then the N indices (the tiled ones as tile starts),
// then the T tile sizes (smaller at the edges). The last dimension varies fastest. N and T are
// constants, so that the loop unrolls into what a hand-written function per shape would do.
template <size_t N, size_t T, bool WithThread, class Fn, size_t... D, size_t... K>
void run_item(const Job& j, size_t i, size_t thread, std::index_sequence<D...>, std::index_sequence<K...>) {
  size_t idx[N];
  for (size_t d = N - 1; d > 0; --d) {
    idx[d] = i % j.count[d];
    i /= j.count[d];
  }
  idx[0] = i;
  for (size_t d = N - T; d < N; ++d) idx[d] *= j.tile[d];
  const Fn fn = reinterpret_cast<Fn>(j.fn);
  if constexpr (WithThread)
    fn(j.ctx, thread, idx[D]..., std::min(j.tile[N - T + K], j.range[N - T + K] - idx[N - T + K])...);
  else
    fn(j.ctx, idx[D]..., std::min(j.tile[N - T + K], j.range[N - T + K] - idx[N - T + K])...);
}

// Run `j` on `p`, or inline on the calling thread when there is no pool.
void execute(pthreadpool_t p, Job& j) {
  if (p) {
    p->execute(j);
    return;
  }
  Denormals d((j.flags & PTHREADPOOL_FLAG_DISABLE_DENORMALS) != 0);
  for (size_t i = 0; i < j.items; ++i) j.run(j, i, 0);
}

// Every pthreadpool_parallelize_* function: the grid `range`, of which the last T dimensions are
// cut into tiles of `tile`.
template <size_t N, size_t T, bool WithThread = false, class Fn>
void parallelize(pthreadpool_t p, Fn fn, void* ctx, uint32_t flags, const std::array<size_t, N>& range,
                 const std::array<size_t, T>& tile = {}) {
  Job j;
  j.fn = reinterpret_cast<void*>(fn);
  j.ctx = ctx;
  j.flags = flags;
  j.items = 1;
  for (size_t d = 0; d < N; ++d) {
    j.range[d] = range[d];
    if (d >= N - T) j.tile[d] = tile[d - (N - T)];
    j.count[d] = d >= N - T ? divide_round_up(range[d], j.tile[d]) : range[d];
    j.items *= j.count[d];
  }
  j.run = [](const Job& j, size_t i, size_t thread) {
    run_item<N, T, WithThread, Fn>(j, i, thread, std::make_index_sequence<N>{}, std::make_index_sequence<T>{});
  };
  execute(p, j);
}

}  // namespace

extern "C" {

pthreadpool_t pthreadpool_create(size_t threads_count) {
  if (threads_count == 0) threads_count = std::max(1u, std::thread::hardware_concurrency());
  auto* p = new pthreadpool;
  p->threads = threads_count;
  for (size_t i = 1; i < threads_count; ++i) p->workers.emplace_back([p, i] { p->worker_loop(i); });
  return p;
}

void pthreadpool_destroy(pthreadpool_t p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> l(p->m);
    p->stop = true;
    p->generation.fetch_add(1);
  }
  p->wake.notify_all();
  for (auto& w : p->workers) w.join();
  delete p;
}

size_t pthreadpool_get_threads_count(pthreadpool_t p) { return p ? p->threads : 1; }

void pthreadpool_parallelize_1d(pthreadpool_t p, pthreadpool_task_1d_t fn, void* ctx, size_t range, uint32_t flags) {
  parallelize<1, 0>(p, fn, ctx, flags, {range});
}

void pthreadpool_parallelize_1d_with_thread(pthreadpool_t p, pthreadpool_task_1d_with_thread_t fn, void* ctx, size_t range,
                                            uint32_t flags) {
  parallelize<1, 0, true>(p, fn, ctx, flags, {range});
}

void pthreadpool_parallelize_1d_tile_1d(pthreadpool_t p, pthreadpool_task_1d_tile_1d_t fn, void* ctx, size_t range,
                                        size_t tile, uint32_t flags) {
  parallelize<1, 1>(p, fn, ctx, flags, {range}, {tile});
}

void pthreadpool_parallelize_2d(pthreadpool_t p, pthreadpool_task_2d_t fn, void* ctx, size_t range_i, size_t range_j,
                                uint32_t flags) {
  parallelize<2, 0>(p, fn, ctx, flags, {range_i, range_j});
}

void pthreadpool_parallelize_2d_with_thread(pthreadpool_t p, pthreadpool_task_2d_with_thread_t fn, void* ctx,
                                            size_t range_i, size_t range_j, uint32_t flags) {
  parallelize<2, 0, true>(p, fn, ctx, flags, {range_i, range_j});
}

void pthreadpool_parallelize_2d_tile_1d(pthreadpool_t p, pthreadpool_task_2d_tile_1d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t tile_j, uint32_t flags) {
  parallelize<2, 1>(p, fn, ctx, flags, {range_i, range_j}, {tile_j});
}

void pthreadpool_parallelize_2d_tile_2d(pthreadpool_t p, pthreadpool_task_2d_tile_2d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t tile_i, size_t tile_j, uint32_t flags) {
  parallelize<2, 2>(p, fn, ctx, flags, {range_i, range_j}, {tile_i, tile_j});
}

void pthreadpool_parallelize_3d(pthreadpool_t p, pthreadpool_task_3d_t fn, void* ctx, size_t range_i, size_t range_j,
                                size_t range_k, uint32_t flags) {
  parallelize<3, 0>(p, fn, ctx, flags, {range_i, range_j, range_k});
}

void pthreadpool_parallelize_3d_tile_1d(pthreadpool_t p, pthreadpool_task_3d_tile_1d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t range_k, size_t tile_k, uint32_t flags) {
  parallelize<3, 1>(p, fn, ctx, flags, {range_i, range_j, range_k}, {tile_k});
}

void pthreadpool_parallelize_3d_tile_1d_with_thread(pthreadpool_t p, pthreadpool_task_3d_tile_1d_with_thread_t fn,
                                                    void* ctx, size_t range_i, size_t range_j, size_t range_k,
                                                    size_t tile_k, uint32_t flags) {
  parallelize<3, 1, true>(p, fn, ctx, flags, {range_i, range_j, range_k}, {tile_k});
}

void pthreadpool_parallelize_3d_tile_2d(pthreadpool_t p, pthreadpool_task_3d_tile_2d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t range_k, size_t tile_j, size_t tile_k, uint32_t flags) {
  parallelize<3, 2>(p, fn, ctx, flags, {range_i, range_j, range_k}, {tile_j, tile_k});
}

void pthreadpool_parallelize_4d(pthreadpool_t p, pthreadpool_task_4d_t fn, void* ctx, size_t range_i, size_t range_j,
                                size_t range_k, size_t range_l, uint32_t flags) {
  parallelize<4, 0>(p, fn, ctx, flags, {range_i, range_j, range_k, range_l});
}

void pthreadpool_parallelize_4d_tile_2d(pthreadpool_t p, pthreadpool_task_4d_tile_2d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t range_k, size_t range_l, size_t tile_k, size_t tile_l,
                                        uint32_t flags) {
  parallelize<4, 2>(p, fn, ctx, flags, {range_i, range_j, range_k, range_l}, {tile_k, tile_l});
}

void pthreadpool_parallelize_5d(pthreadpool_t p, pthreadpool_task_5d_t fn, void* ctx, size_t range_i, size_t range_j,
                                size_t range_k, size_t range_l, size_t range_m, uint32_t flags) {
  parallelize<5, 0>(p, fn, ctx, flags, {range_i, range_j, range_k, range_l, range_m});
}

void pthreadpool_parallelize_5d_tile_2d(pthreadpool_t p, pthreadpool_task_5d_tile_2d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t range_k, size_t range_l, size_t range_m, size_t tile_l,
                                        size_t tile_m, uint32_t flags) {
  parallelize<5, 2>(p, fn, ctx, flags, {range_i, range_j, range_k, range_l, range_m}, {tile_l, tile_m});
}

void pthreadpool_parallelize_6d_tile_2d(pthreadpool_t p, pthreadpool_task_6d_tile_2d_t fn, void* ctx, size_t range_i,
                                        size_t range_j, size_t range_k, size_t range_l, size_t range_m, size_t range_n,
                                        size_t tile_m, size_t tile_n, uint32_t flags) {
  parallelize<6, 2>(p, fn, ctx, flags, {range_i, range_j, range_k, range_l, range_m, range_n}, {tile_m, tile_n});
}

}  // extern "C"
