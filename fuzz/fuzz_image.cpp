// libFuzzer target: photo bytes as the page and the CLI receive them. probe_image, decode_image
// (JPEG/PNG/BMP/GIF, EXIF orientation), exif_orientation, then the resize and preprocessing the
// engine applies to a decoded photo. Only petal::Error may escape the engine; the checks below
// abort on any inconsistency between what the probe promised and what decoding produced.
#include <cstdlib>
#include <vector>

#include "error.h"
#include "image.h"
#include "petal_limits.h"

using namespace petal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int o = exif_orientation(data, size);
  if (o < 1 || o > 8) std::abort();
  ImageInfo info;
  try {
    info = probe_image(data, size);
  } catch (const Error&) {
    // decode_image must refuse it too
    try {
      decode_image(data, size);
    } catch (const Error&) {
      return 0;
    }
    std::abort();  // probe refused what decode accepted
  }
  if (info.width <= 0 || info.height <= 0 || uint64_t(info.width) * uint64_t(info.height) > limits::kMaxImagePixels)
    std::abort();
  // Decoding and resizing are linear in the pixels: past a few megapixels they only cost time
  // (under the sanitizers on a loaded 2-core machine a 12-megapixel garbage JPEG took >10 s to
  // resize; natively 1 s), not new code paths. tests/cpp/limits_test.cpp decodes 50 megapixels.
  if (uint64_t(info.width) * uint64_t(info.height) > 4'000'000) return 0;
  Image img;
  try {
    img = decode_image(data, size);
  } catch (const Error&) {
    return 0;
  }
  // The decoded size is the probed one (transposed for EXIF orientations 5..8).
  const bool t = info.format == "jpeg" && o >= 5;
  if (img.width != (t ? info.height : info.width) || img.height != (t ? info.width : info.height)) std::abort();
  if (img.rgb.size() != size_t(img.width) * size_t(img.height) * 3) std::abort();
  if (uint64_t(img.width) * uint64_t(img.height) > 1'000'000) return 0;
  const Image small = resize_image(img, 224, 224);
  std::vector<float> x(224 * 224 * 3);
  preprocess_caffe(small, x.data(), (size & 1) != 0);
  const Image th = thumbnail(img, 96);
  if (th.width > 96 || th.height > 96 || th.rgb.size() != size_t(th.width) * th.height * 3) std::abort();
  return 0;
}
