// Every named limit in wasm/petal_limits.h, at the limit (accepted) and just past it (refused
// with a one-line message that names the limit). Images are made in the test from a real photo.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "engine.h"
#include "error.h"
#include "graph.h"
#include "head.h"
#include "image.h"
#include "image_writers.h"
#include "petal_limits.h"
#include "test_support.h"

using namespace petal;
using namespace petal::imgtest;

namespace {

Image tile(const Image& src, int w, int h) {  // a w×h image tiled from a real photo
  Image r;
  r.width = w;
  r.height = h;
  r.rgb.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    const uint8_t* s = &src.rgb[size_t(y % src.height) * src.width * 3];
    uint8_t* d = &r.rgb[size_t(y) * w * 3];
    for (int x = 0; x < w; x += src.width) std::memcpy(d + size_t(x) * 3, s, size_t(std::min(src.width, w - x)) * 3);
  }
  return r;
}

}  // namespace

// kMaxImagePixels = 50,000,000: 10000×5000 is exactly at the limit.
TEST(Limits, ImagePixels) {
  static_assert(limits::kMaxImagePixels == 50'000'000, "update the sizes below");
  ASSERT_FALSE(test::photo().empty());
  // Header-only: a real JPEG whose frame header says 10000×5000 / 10000×5001 / 5001×10000.
  const ImageInfo at = [&] { auto b = with_jpeg_size(test::photo(), 10000, 5000); return probe_image(b.data(), b.size()); }();
  EXPECT_EQ(at.width, 10000);
  EXPECT_EQ(at.height, 5000);
  for (auto [w, h] : {std::pair{10000, 5001}, std::pair{5001, 10000}, std::pair{7072, 7071}}) {
    const Bytes b = with_jpeg_size(test::photo(), w, h);
    const std::string size = std::to_string(w) + "x" + std::to_string(h);
    EXPECT_ERROR_HAS(probe_image(b.data(), b.size()), "the image is " + size + " (50.01 megapixels)");
    EXPECT_ERROR_HAS(decode_image(b.data(), b.size()), "the limit is 50 megapixels");
  }
  // A PNG header claiming 30000×30000 (900 megapixels) is refused before any pixel is decoded.
  const Bytes png = png_header(30000, 30000);
  EXPECT_ERROR_HAS(decode_image(png.data(), png.size()), "the image is 30000x30000 (900.00 megapixels); the limit is 50 megapixels");
  // A real 10000×5000 JPEG decodes.
  const Image src = decode_image(test::photo().data(), test::photo().size());
  const Bytes big = encode_jpeg(tile(src, 10000, 5000), 40);
  const Image d = decode_image(big.data(), big.size());
  EXPECT_EQ(d.width, 10000);
  EXPECT_EQ(d.height, 5000);
  EXPECT_EQ(d.rgb.size(), size_t(50'000'000) * 3);
}

// kMaxImageSide = 65536 pixels.
TEST(Limits, ImageSide) {
  static_assert(limits::kMaxImageSide == 65536, "update the sizes below");
  ASSERT_FALSE(test::photo().empty());
  const Image src = decode_image(test::photo().data(), test::photo().size());
  for (auto [w, h] : {std::pair{65536, 2}, std::pair{2, 65536}}) {
    const Bytes png = encode_png(tile(src, w, h));
    const Image d = decode_image(png.data(), png.size());
    EXPECT_EQ(d.width, w);
    EXPECT_EQ(d.height, h);
  }
  for (auto [w, h] : {std::pair{65537, 2}, std::pair{2, 65537}}) {
    SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h));
    const Bytes png = encode_png(tile(src, w, h));
    EXPECT_ERROR_HAS(probe_image(png.data(), png.size()), "65536 pixels a side");
    EXPECT_ERROR_HAS(decode_image(png.data(), png.size()), "65536 pixels a side");
  }
}

// kMaxImageBytes = 64 MiB: a real JPEG padded after its end-of-image marker.
TEST(Limits, ImageFileBytes) {
  static_assert(limits::kMaxImageBytes == 64u << 20, "update the message below");
  ASSERT_FALSE(test::photo().empty());
  Bytes b = test::photo();
  b.resize(limits::kMaxImageBytes, 0);
  const Image d = decode_image(b.data(), b.size());
  EXPECT_EQ(d.width, 320);
  b.push_back(0);
  EXPECT_ERROR_HAS(decode_image(b.data(), b.size()), "the file is too large (67.1 MB); photos up to 67.1 MB are accepted");
  EXPECT_ERROR_HAS(probe_image(b.data(), b.size()), "the file is too large (67.1 MB); photos up to 67.1 MB are accepted");
}

// kMaxClasses = 1000.
TEST(Limits, Classes) {
  std::vector<std::string> names;
  for (size_t i = 0; i < limits::kMaxClasses; ++i) names.push_back("class " + std::to_string(i));
  EXPECT_NO_THROW(validate_class_names(names));
  Head at(16, 8, int(limits::kMaxClasses), 1);
  EXPECT_EQ(at.classes(), 1000);
  Bundle b;
  at.save(b);
  EXPECT_EQ(Head::load(b).classes(), 1000);

  names.push_back("one too many");
  EXPECT_ERROR_HAS(validate_class_names(names), "too many classes (1001); the limit is 1000");
  EXPECT_ERROR_HAS(Head(16, 8, 1001, 1), "too many classes (1001); the limit is 1000");
  // A bundle whose head has 1001 outputs.
  Bundle past = b;
  Tensor& w2 = past.tensors["head.dense2.weight"];
  w2.shape[0] = 1001;
  w2.data.resize(w2.numel(), 0.f);
  past.tensors["head.dense2.bias"].shape = {1001};
  past.tensors["head.dense2.bias"].data.assign(1001, 0.f);
  auto bytes = write_bundle(past);
  Bundle read = read_bundle(bytes.data(), bytes.size());
  EXPECT_ERROR_HAS(Head::load(read), "class count");
}

// kMaxClassNameBytes = 64 bytes of UTF-8.
TEST(Limits, ClassNameBytes) {
  static_assert(limits::kMaxClassNameBytes == 64, "update the names below");
  std::string e_acute;
  for (int i = 0; i < 32; ++i) e_acute += "\xC3\xA9";  // "é" × 32 = 64 bytes
  ASSERT_EQ(e_acute.size(), 64u);
  EXPECT_NO_THROW(validate_class_names({std::string(64, 'a'), e_acute}));
  EXPECT_ERROR_HAS(validate_class_names({std::string(65, 'a'), "b"}), "longer than 64 bytes");
  // Past the limit by one byte; the message quotes the start of the name without splitting a character.
  EXPECT_ERROR_HAS(validate_class_names({"a" + e_acute, "b"}), "longer than 64 bytes");
}

// The class-name rule's other parts: a name is not empty and is one class whatever the ASCII case
// of its letters (the page asks the same function before it adds a class).
TEST(Limits, ClassNameRule) {
  EXPECT_EQ(class_name_problem("lily", {"daisy", "roses"}), "");
  EXPECT_EQ(class_name_problem("Roses", {"daisy", "roses"}), "there is already a class 'roses'");
  EXPECT_EQ(class_name_problem("", {"daisy"}), "a class name cannot be empty");
  EXPECT_ERROR_HAS(validate_class_names({"Tulips", "daisy", "tulips"}), "there is already a class 'Tulips'");
  EXPECT_ERROR_HAS(validate_class_names({"daisy", ""}), "a class name cannot be empty");
  // (a letter outside ASCII keeps its case: "É" and "é" are two names)
  EXPECT_EQ(class_name_problem("\xC3\x89t\xC3\xA9", {"\xC3\xA9t\xC3\xA9"}), "");
}

// kMinInputSide = 32 and kMaxInputSide = 1024 pixels: a model's input size.
TEST(Limits, InputSide) {
  Graph g;
  g.input_c = 3;
  g.ops.resize(1);
  for (int side : {limits::kMinInputSide - 1, limits::kMaxInputSide + 1}) {
    g.input_h = g.input_w = side;
    EXPECT_ERROR_HAS(g.validate(), "the model's input size " + std::to_string(side) + "x" + std::to_string(side) +
                                       " is outside the 32 to 1024 pixels a side that Petal runs");
  }
  g.input_h = g.input_w = 224;
  g.input_c = 4;
  EXPECT_ERROR_HAS(g.validate(), "the model's input has 4 channels; Petal runs 3 (RGB)");
  EXPECT_EQ(limits::input_size_problem(224, 1025), "224x1025 is outside the 32 to 1024 pixels a side that Petal runs");
  EXPECT_EQ(limits::input_size_problem(32, 1024), "");
  for (int side : {limits::kMinInputSide, limits::kMaxInputSide}) EXPECT_TRUE(limits::input_side_ok(side));
}

// kMaxTrainExamples = 200,000 (a small head keeps this quick).
TEST(Limits, TrainExamples) {
  const size_t n = limits::kMaxTrainExamples, dim = 4;
  std::vector<float> x((n + 1) * dim);
  std::vector<int32_t> y(n + 1);
  Rng rng(7);
  for (size_t i = 0; i <= n; ++i) {
    y[i] = int32_t(i % 2);
    for (size_t k = 0; k < dim; ++k) x[i * dim + k] = rng.uniform() + (k == 0 ? 2.f * float(y[i]) : 0.f);
  }
  TrainOptions opt;
  opt.epochs = 1;
  opt.batch_size = 1024;
  opt.learning_rate = 0.02f;
  Head h(int(dim), 8, 2, 1);
  FeatureSet at{x.data(), y.data(), n, dim};
  auto hist = h.train(at, nullptr, opt);
  ASSERT_EQ(hist.size(), 1u);
  EXPECT_GT(hist[0].accuracy, 0.9);  // separable on feature 0: it learned
  FeatureSet past{x.data(), y.data(), n + 1, dim};
  EXPECT_ERROR_HAS(h.train(past, nullptr, opt), "too many training examples (200001); the limit is 200000");
}

// kMaxBundleHeaderBytes = 16 MiB of JSON header.
TEST(Limits, BundleHeaderBytes) {
  auto make = [](size_t header_bytes) {
    Bundle b;
    b.metadata["format"] = "petal-bundle";
    b.metadata["pad"] = "";
    Tensor t;
    t.shape = {2};
    t.data = {1.f, 2.f};
    b.tensors["w"] = t;
    auto bytes = write_bundle(b);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = hlen << 8 | bytes[size_t(i)];
    // Grow the "pad" value (inside the header) until the header has `header_bytes`.
    b.metadata["pad"] = std::string(header_bytes - hlen, 'x');
    bytes = write_bundle(b);
    hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = hlen << 8 | bytes[size_t(i)];
    EXPECT_EQ(hlen, header_bytes);
    return bytes;
  };
  const auto at = make(limits::kMaxBundleHeaderBytes);
  Bundle r = read_bundle(at.data(), at.size());
  EXPECT_EQ(r.get("w").data[1], 2.f);
  // One byte more: a space after the JSON (still valid JSON), the length field one larger.
  auto past = at;
  past.insert(past.begin() + 8 + long(limits::kMaxBundleHeaderBytes), ' ');
  const uint64_t hlen = limits::kMaxBundleHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) past[size_t(i)] = uint8_t(hlen >> (8 * i));
  EXPECT_ERROR_HAS(read_bundle(past.data(), past.size(), "'big.safetensors'"), "the limit is 16 MB");
}

// The one wording of the image file size limit (kMaxImageBytes), which the CLI's reader and the page (Embind imageBytesProblem)
// give too.
TEST(Limits, ImageFileBytesWording) {
  EXPECT_EQ(limits::image_bytes_problem(limits::kMaxImageBytes + 1), "the file is too large (67.1 MB); photos up to 67.1 MB are accepted");
  EXPECT_EQ(limits::image_bytes_problem(70'000'000), "the file is too large (70.0 MB); photos up to 67.1 MB are accepted");
  EXPECT_EQ(limits::image_bytes_problem(limits::kMaxImageBytes), "");
  EXPECT_EQ(limits::image_bytes_problem(0), "the file is empty (0 bytes)");
}
