// Named limits on untrusted input. Each one is documented in the README (Limits) and has a
// test at the limit and just past it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace petal::limits {

// Largest image accepted, in pixels (width × height), checked from the header before decoding.
// 50 megapixels covers phone and camera photos; a decoded image at the limit takes 150 MB.
constexpr uint64_t kMaxImagePixels = 50'000'000;
// Largest image file accepted, in bytes.
constexpr size_t kMaxImageBytes = 64u << 20;
// What is wrong with an image file of this many bytes, "" when nothing: the one wording of this
// limit, for the engine's decoder, the CLI's file reader and the page (Embind imageBytesProblem,
// asked before a photo is even read). Sizes in MB of 10^6 bytes, as the page shows every size.
inline std::string image_bytes_problem(uint64_t bytes) {
  if (bytes == 0) return "the file is empty (0 bytes)";
  if (bytes <= kMaxImageBytes) return "";
  auto mb = [](uint64_t n) {
    char s[32];
    const int k = std::snprintf(s, sizeof s, "%.1f MB", double(n) / 1e6);
    return std::string(s, k > 0 ? size_t(k) : 0);
  };
  return "the file is too large (" + mb(bytes) + "); photos up to " + mb(kMaxImageBytes) + " are accepted";
}
// Largest side of an image, in pixels (stb_image's own limit is 1 << 24).
constexpr uint32_t kMaxImageSide = 1u << 16;
// Smallest and largest side of the backbone's input, in pixels (a model's input_size, `petal
// train --image-size`, `petal preprocess`, inputOf in the page): ResNet-50's five stride-2 steps
// need 32 to leave a 1×1 map; 1024 is the largest size Petal is built and tested for.
constexpr int kMinInputSide = 32;
constexpr int kMaxInputSide = 1024;
constexpr bool input_side_ok(int side) { return side >= kMinInputSide && side <= kMaxInputSide; }
// What is wrong with an input of height × width pixels, "" when nothing: the one wording of this
// limit, which the graph, the bundle reader and inputOf put after what they checked.
inline std::string input_size_problem(int height, int width) {
  if (input_side_ok(height) && input_side_ok(width)) return "";
  return std::to_string(height) + "x" + std::to_string(width) + " is outside the " + std::to_string(kMinInputSide) + " to " +
         std::to_string(kMaxInputSide) + " pixels a side that Petal runs";
}
// Largest number of classes a head may have.
constexpr size_t kMaxClasses = 1000;
// Longest class name, in bytes of UTF-8.
constexpr size_t kMaxClassNameBytes = 64;
// Largest number of training examples (features) a head is trained on at once.
constexpr size_t kMaxTrainExamples = 200'000;
// WebAssembly memory the engine may grow to (Emscripten's -sMAXIMUM_MEMORY, read from this line by
// wasm/CMakeLists.txt): 2 GB, the most a 32-bit wasm heap addresses safely in every browser. The
// page's engine needs ~256 MB; past the limit an allocation fails with kOutOfMemoryMessage.
constexpr uint64_t kMaxWasmMemoryBytes = 2147483648;
// Largest safetensors JSON header accepted, in bytes.
constexpr uint64_t kMaxBundleHeaderBytes = 16u << 20;

}  // namespace petal::limits
