// SHA-256 of bytes: the feature cache's key of a photo (its file's bytes) and of a backbone.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace petal::cli {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  Digest finish();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};
Digest sha256(const void* data, size_t n);
std::string hex(const Digest& d);  // lower-case, 64 characters

}  // namespace petal::cli
