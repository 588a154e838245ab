// wasm/threadpool.cpp: Petal's implementation of the pthreadpool API that XNNPACK runs on. Every
// parallelize_* function must call the task exactly once per item (or tile, with the right tile
// sizes at the edges), with thread indices below the pool size, on a pool or inline without one.
#include <gtest/gtest.h>
#include <pthreadpool.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace {

struct Grid {
  std::vector<size_t> range;
  std::vector<std::atomic<int>> hits;
  std::atomic<int> bad_thread{0}, bad_tile{0};
  size_t threads = 1;
  explicit Grid(std::vector<size_t> r) : range(std::move(r)), hits(count(range)) {}
  static size_t count(const std::vector<size_t>& r) {
    size_t n = 1;
    for (size_t x : r) n *= x;
    return n;
  }
  size_t index(std::initializer_list<size_t> idx) const {
    size_t i = 0, d = 0;
    for (size_t x : idx) i = i * range[d++] + x;
    return i;
  }
  void hit(std::initializer_list<size_t> idx) { hits[index(idx)].fetch_add(1); }
  void thread(size_t t) {
    if (t >= threads) bad_thread++;
  }
  void all_once(const char* what) const {
    for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << what << ": item " << i;
    EXPECT_EQ(bad_thread.load(), 0) << what;
    EXPECT_EQ(bad_tile.load(), 0) << what;
  }
};

// Tiles: every element of [start, start+size) visited; the size is the tile or what is left.
void tile(Grid& g, size_t start, size_t size, size_t tile_size, size_t range) {
  if (start % tile_size != 0 || size != std::min(tile_size, range - start)) g.bad_tile++;
}

// long function: a table of calls, one independent block per pthreadpool_parallelize_* entry point.
void run_all(pthreadpool_t pool, size_t threads) {
  const uint32_t f = PTHREADPOOL_FLAG_DISABLE_DENORMALS;
  {
    Grid g({1001});
    g.threads = threads;
    pthreadpool_parallelize_1d(pool, [](void* c, size_t i) { static_cast<Grid*>(c)->hit({i}); }, &g, 1001, f);
    g.all_once("1d");
  }
  {
    Grid g({777});
    g.threads = threads;
    pthreadpool_parallelize_1d_with_thread(
        pool, [](void* c, size_t t, size_t i) { auto* g = static_cast<Grid*>(c); g->thread(t); g->hit({i}); }, &g, 777, 0);
    g.all_once("1d_with_thread");
  }
  {
    Grid g({103});
    g.threads = threads;
    pthreadpool_parallelize_1d_tile_1d(
        pool,
        [](void* c, size_t s, size_t n) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, s, n, 8, 103);
          for (size_t i = s; i < s + n; ++i) g->hit({i});
        },
        &g, 103, 8, f);
    g.all_once("1d_tile_1d");
  }
  {
    Grid g({13, 17});
    g.threads = threads;
    pthreadpool_parallelize_2d(pool, [](void* c, size_t i, size_t j) { static_cast<Grid*>(c)->hit({i, j}); }, &g, 13, 17, f);
    g.all_once("2d");
  }
  {
    Grid g({13, 17});
    g.threads = threads;
    pthreadpool_parallelize_2d_with_thread(
        pool, [](void* c, size_t t, size_t i, size_t j) { auto* g = static_cast<Grid*>(c); g->thread(t); g->hit({i, j}); }, &g,
        13, 17, f);
    g.all_once("2d_with_thread");
  }
  {
    Grid g({9, 50});
    g.threads = threads;
    pthreadpool_parallelize_2d_tile_1d(
        pool,
        [](void* c, size_t i, size_t s, size_t n) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, s, n, 16, 50);
          for (size_t j = s; j < s + n; ++j) g->hit({i, j});
        },
        &g, 9, 50, 16, f);
    g.all_once("2d_tile_1d");
  }
  {
    Grid g({49, 70});
    g.threads = threads;
    pthreadpool_parallelize_2d_tile_2d(
        pool,
        [](void* c, size_t si, size_t sj, size_t ni, size_t nj) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, si, ni, 6, 49);
          tile(*g, sj, nj, 16, 70);
          for (size_t i = si; i < si + ni; ++i)
            for (size_t j = sj; j < sj + nj; ++j) g->hit({i, j});
        },
        &g, 49, 70, 6, 16, f);
    g.all_once("2d_tile_2d");
  }
  {
    Grid g({3, 5, 7});
    g.threads = threads;
    pthreadpool_parallelize_3d(
        pool, [](void* c, size_t i, size_t j, size_t k) { static_cast<Grid*>(c)->hit({i, j, k}); }, &g, 3, 5, 7, f);
    g.all_once("3d");
  }
  {
    Grid g({3, 5, 21});
    g.threads = threads;
    pthreadpool_parallelize_3d_tile_1d(
        pool,
        [](void* c, size_t i, size_t j, size_t s, size_t n) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, s, n, 4, 21);
          for (size_t k = s; k < s + n; ++k) g->hit({i, j, k});
        },
        &g, 3, 5, 21, 4, f);
    g.all_once("3d_tile_1d");
  }
  {
    Grid g({3, 5, 21});
    g.threads = threads;
    pthreadpool_parallelize_3d_tile_1d_with_thread(
        pool,
        [](void* c, size_t t, size_t i, size_t j, size_t s, size_t n) {
          auto* g = static_cast<Grid*>(c);
          g->thread(t);
          tile(*g, s, n, 4, 21);
          for (size_t k = s; k < s + n; ++k) g->hit({i, j, k});
        },
        &g, 3, 5, 21, 4, f);
    g.all_once("3d_tile_1d_with_thread");
  }
  {
    Grid g({4, 11, 13});
    g.threads = threads;
    pthreadpool_parallelize_3d_tile_2d(
        pool,
        [](void* c, size_t i, size_t sj, size_t sk, size_t nj, size_t nk) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, sj, nj, 3, 11);
          tile(*g, sk, nk, 5, 13);
          for (size_t j = sj; j < sj + nj; ++j)
            for (size_t k = sk; k < sk + nk; ++k) g->hit({i, j, k});
        },
        &g, 4, 11, 13, 3, 5, f);
    g.all_once("3d_tile_2d");
  }
  {
    Grid g({2, 3, 4, 5});
    g.threads = threads;
    pthreadpool_parallelize_4d(
        pool, [](void* c, size_t i, size_t j, size_t k, size_t l) { static_cast<Grid*>(c)->hit({i, j, k, l}); }, &g, 2, 3, 4,
        5, f);
    g.all_once("4d");
  }
  {
    Grid g({2, 3, 10, 9});
    g.threads = threads;
    pthreadpool_parallelize_4d_tile_2d(
        pool,
        [](void* c, size_t i, size_t j, size_t sk, size_t sl, size_t nk, size_t nl) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, sk, nk, 4, 10);
          tile(*g, sl, nl, 2, 9);
          for (size_t k = sk; k < sk + nk; ++k)
            for (size_t l = sl; l < sl + nl; ++l) g->hit({i, j, k, l});
        },
        &g, 2, 3, 10, 9, 4, 2, f);
    g.all_once("4d_tile_2d");
  }
  {
    Grid g({2, 3, 2, 4, 3});
    g.threads = threads;
    pthreadpool_parallelize_5d(
        pool,
        [](void* c, size_t i, size_t j, size_t k, size_t l, size_t m) { static_cast<Grid*>(c)->hit({i, j, k, l, m}); }, &g,
        2, 3, 2, 4, 3, f);
    g.all_once("5d");
  }
  {
    Grid g({2, 3, 2, 7, 5});
    g.threads = threads;
    pthreadpool_parallelize_5d_tile_2d(
        pool,
        [](void* c, size_t i, size_t j, size_t k, size_t sl, size_t sm, size_t nl, size_t nm) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, sl, nl, 3, 7);
          tile(*g, sm, nm, 2, 5);
          for (size_t l = sl; l < sl + nl; ++l)
            for (size_t m = sm; m < sm + nm; ++m) g->hit({i, j, k, l, m});
        },
        &g, 2, 3, 2, 7, 5, 3, 2, f);
    g.all_once("5d_tile_2d");
  }
  {
    Grid g({2, 2, 3, 2, 5, 6});
    g.threads = threads;
    pthreadpool_parallelize_6d_tile_2d(
        pool,
        [](void* c, size_t i, size_t j, size_t k, size_t l, size_t sm, size_t sn, size_t nm, size_t nn) {
          auto* g = static_cast<Grid*>(c);
          tile(*g, sm, nm, 2, 5);
          tile(*g, sn, nn, 4, 6);
          for (size_t m = sm; m < sm + nm; ++m)
            for (size_t n = sn; n < sn + nn; ++n) g->hit({i, j, k, l, m, n});
        },
        &g, 2, 2, 3, 2, 5, 6, 2, 4, f);
    g.all_once("6d_tile_2d");
  }
}

TEST(ThreadPool, EveryItemOnceWithoutAPool) { run_all(nullptr, 1); }

TEST(ThreadPool, EveryItemOnceOnOneTwoAndFourThreads) {
  for (size_t threads : {1, 2, 4}) {
    pthreadpool_t pool = pthreadpool_create(threads);
    ASSERT_NE(pool, nullptr);
    EXPECT_EQ(pthreadpool_get_threads_count(pool), threads);
    for (int rep = 0; rep < 20; ++rep) run_all(pool, threads);
    pthreadpool_destroy(pool);
  }
}

TEST(ThreadPool, WorkersReallyHelp) {
  // With 2 threads and slow items, the worker must take part (the caller alone would see only
  // thread 0); at least one item runs on thread 1.
  pthreadpool_t pool = pthreadpool_create(2);
  std::atomic<int> on_worker{0};
  for (int rep = 0; rep < 50 && on_worker.load() == 0; ++rep)
    pthreadpool_parallelize_1d_with_thread(
        pool,
        [](void* c, size_t t, size_t) {
          if (t == 1) static_cast<std::atomic<int>*>(c)->fetch_add(1);
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        },
        &on_worker, 64, 0);
  EXPECT_GT(on_worker.load(), 0);
  pthreadpool_destroy(pool);
}

TEST(ThreadPool, CallsFromSeveralThreadsAreSerialised) {
  pthreadpool_t pool = pthreadpool_create(2);
  std::atomic<size_t> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 100; ++rep)
        pthreadpool_parallelize_1d(pool, [](void* s, size_t i) { static_cast<std::atomic<size_t>*>(s)->fetch_add(i); }, &sum,
                                   100, 0);
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), size_t(3 * 100) * (99 * 100 / 2));
  pthreadpool_destroy(pool);
}

}  // namespace
