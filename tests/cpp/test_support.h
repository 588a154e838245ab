// Where tests find real data and models. Missing inputs fail the test with what to run; they
// never skip silently.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace petal::test {

inline std::string source_dir() {
  if (const char* s = std::getenv("PETAL_SOURCE_DIR")) return s;
  return PETAL_SOURCE_DIR;
}

// ../shared/data beside the checkout, or $PETAL_DATA.
inline std::string data_dir() {
  if (const char* d = std::getenv("PETAL_DATA"); d && *d) return d;
  return source_dir() + "/../shared/data";
}

inline std::string backbone_path() {
  if (const char* p = std::getenv("PETAL_BACKBONE"); p && *p) return p;
  const char* c = std::getenv("PETAL_CACHE");
  return std::string(c && *c ? c : "/var/cache/petal") + "/models/resnet50-imagenet.safetensors";
}

inline bool exists(const std::string& p) { return std::ifstream(p).good(); }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline std::vector<float> read_f32(const std::string& path) {
  auto b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// Cosine similarity of two feature vectors.
inline double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

}  // namespace petal::test

#define PETAL_REQUIRE_FILE(path)                                                                       \
  ASSERT_TRUE(petal::test::exists(path)) << "missing " << (path)                                      \
                                         << ": run tools/setup.sh (models) or set PETAL_BACKBONE/PETAL_DATA"
