// The model bundle: one file in the safetensors layout (u64 little-endian header length, JSON
// header, raw little-endian tensor bytes). `__metadata__` (string → string, as safetensors
// requires) carries what a reader needs; model/README.md is the specification.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace petal {

enum class DType { F32, F16, I32 };
const char* dtype_name(DType d);

// A tensor held as fp32 in memory whatever its storage type (I32 values are exact below 2^24).
struct Tensor {
  std::vector<size_t> shape;
  std::vector<float> data;
  DType stored = DType::F32;  // how it was read, or how it should be written
  size_t numel() const;
};

struct Bundle {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor `name`; throws petal::Error naming the bundle part that is missing or misshapen.
  const Tensor& get(const std::string& name, const std::vector<size_t>& shape = {}) const;
  const std::string& meta(const std::string& key) const;  // throws if missing
};

// Parse a bundle from bytes; a truncated, corrupted or non-bundle file throws petal::Error
// saying what is wrong. `what` names the file in messages.
Bundle read_bundle(const uint8_t* bytes, size_t size, const std::string& what = "bundle");
// Serialise; F32 tensors are written as `weights` says (F32 or F16), I32 and F16 as they are.
std::vector<uint8_t> write_bundle(const Bundle& b, DType weights = DType::F32);

// Files (native only; the page hands bytes to read_bundle).
Bundle load_bundle_file(const std::string& path);
void save_bundle_file(const Bundle& b, const std::string& path, DType weights = DType::F32);

// Bundle format version written by this build; readers refuse newer major versions.
constexpr int kBundleFormatVersion = 1;

}  // namespace petal
