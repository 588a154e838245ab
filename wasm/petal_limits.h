// Named limits on untrusted input. Each one is documented in the README (Limits) and has a
// test at the limit and just past it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace petal::limits {

// Largest image accepted, in pixels (width × height), checked from the header before decoding.
// 50 megapixels covers phone and camera photos; a decoded image at the limit takes 150 MB.
constexpr uint64_t kMaxImagePixels = 50'000'000;
// Largest image file accepted, in bytes.
constexpr size_t kMaxImageBytes = 64u << 20;
// Largest side of an image, in pixels (stb_image's own limit is 1 << 24).
constexpr uint32_t kMaxImageSide = 1u << 16;
// Smallest and largest side of the backbone's input, in pixels (a model's input_size, `petal
// train --image-size`, `petal preprocess`, inputOf in the page): ResNet-50's five stride-2 steps
// need 32 to leave a 1×1 map; 1024 is the largest size Petal is built and tested for.
constexpr int kMinInputSide = 32;
constexpr int kMaxInputSide = 1024;
constexpr bool input_side_ok(int side) { return side >= kMinInputSide && side <= kMaxInputSide; }
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
