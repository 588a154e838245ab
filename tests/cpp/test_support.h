// What the tests share: where they find real data and models, reading files, and checking
// petal::Error messages. Missing inputs fail the test with what to run; they never skip silently.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <stdlib.h>  // mkdtemp
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>
#include <algorithm>

#include "error.h"

namespace petal::test {

// The checkout: $PETAL_SOURCE_DIR, else the one this test binary was built from.
inline std::string source_dir() {
  if (const char* s = std::getenv("PETAL_SOURCE_DIR"); s && *s) return s;
  return PETAL_SOURCE_DIR;
}

// ../shared/data beside the checkout, or $PETAL_DATA.
inline std::string data_dir() {
  if (const char* d = std::getenv("PETAL_DATA"); d && *d) return d;
  return source_dir() + "/../shared/data";
}

// The flower photos, one folder per class.
inline std::string flowers_dir() { return data_dir() + "/flower_photos"; }

// Paths of photos of one class of the flower set: the n after the first `skip`, sorted by name.
inline std::vector<std::string> flower_photos(const std::string& cls, size_t n, size_t skip = 0) {
  std::vector<std::string> v;
  for (auto& e : std::filesystem::directory_iterator(flowers_dir() + "/" + cls)) v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  v.erase(v.begin(), v.begin() + std::min(skip, v.size()));
  if (v.size() > n) v.resize(n);
  return v;
}

// The ImageNet ResNet-50 backbone bundle: $PETAL_BACKBONE, else the one tools/setup/make-models.sh
// wrote into $PETAL_CACHE.
inline std::string backbone_path() {
  if (const char* p = std::getenv("PETAL_BACKBONE"); p && *p) return p;
  const char* c = std::getenv("PETAL_CACHE");
  return std::string(c && *c ? c : "/var/cache/petal") + "/models/resnet50-imagenet.safetensors";
}

// A new empty folder for one test under the system's temporary folder ($TMPDIR, else what the C++
// library names), removed with the TempDir.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name = "petal-test") {
    std::string t = (std::filesystem::temp_directory_path() / (name + "-XXXXXX")).string();
    if (!::mkdtemp(t.data())) throw std::runtime_error("cannot make a temporary folder in " + std::filesystem::temp_directory_path().string());
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

inline bool exists(const std::string& p) { return std::ifstream(p).good(); }

// A file's bytes (empty when it cannot be read).
inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A file's bytes as a string (empty when it cannot be read).
inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Writes `data` to `path`, creating its folder.
inline void write_text(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

inline std::vector<float> read_f32(const std::string& path) {
  auto b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// A real photo of the data set, a JPEG without EXIF, wider than high (so a transpose shows).
inline const std::vector<uint8_t>& photo() {
  static const std::vector<uint8_t> b = [] {
    const std::string p = flowers_dir() + "/daisy/5512287917_9f5d3f0f98_n.jpg";
    std::vector<uint8_t> r = read_bytes(p);
    if (r.empty()) ADD_FAILURE() << "missing " << p << " (set PETAL_DATA to the folder holding flower_photos/)";
    return r;
  }();
  return b;
}

// Cosine similarity of two feature vectors.
inline double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}

// The message of the petal::Error that `f` throws; says so when it throws something else or nothing.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A petal::Error: ") + e.what();
  }
  return "(no error)";
}

// Whether `s` is well-formed UTF-8 (error messages quote names from files, which may not be).
inline bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((uint8_t(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

}  // namespace petal::test

#define PETAL_REQUIRE_FILE(path)                                                                       \
  ASSERT_TRUE(petal::test::exists(path)) << "missing " << (path)                                      \
                                         << ": run tools/setup.sh (models) or set PETAL_BACKBONE/PETAL_DATA"

// `stmt` throws a petal::Error whose message contains `text`, on one line, in UTF-8.
#define EXPECT_ERROR_HAS(stmt, text)                                                    \
  do {                                                                                  \
    const std::string _m = petal::test::error_of([&] { stmt; });                        \
    EXPECT_NE(_m.find(text), std::string::npos) << "message: " << _m;                   \
    EXPECT_EQ(_m.find('\n'), std::string::npos) << "not one line: " << _m;              \
    EXPECT_TRUE(petal::test::valid_utf8(_m)) << "not UTF-8: " << _m;                    \
  } while (0)
