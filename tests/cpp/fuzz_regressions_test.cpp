// Regression tests for what fuzzing (fuzz/, tools/fuzz.sh) and the limit tests found, each
// rebuilt by hand from the finding so the test says what the input was:
//  - JPEG Huffman tables with more than 256 codes overran stb_image's table (heap overflow)
//  - model.json / layer-list errors escaped as nlohmann exceptions instead of one-line messages;
//    out-of-range numbers were converted with undefined behaviour
//  - a weight shape whose element count overflows; a Dense bias of the wrong size
//  - a graph with stride 0 (division by zero in the backbone), negative padding, mismatched
//    channels, a classifier not on the features: refused when the bundle is read
//  - bank labels stored as floats out of int range (undefined conversion)
//  - an 8-byte bundle was read one byte past its end
//  - a zero-element weight in model.json's manifest was copied from a null pointer
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "engine.h"
#include "error.h"
#include "graph.h"
#include "image.h"
#include "image_writers.h"
#include "keras_import.h"
#include "test_support.h"

using namespace petal;
using nlohmann::json;
using Bytes = std::vector<uint8_t>;

namespace {

// A DHT segment with one table whose 16 code counts are `counts` (values follow).
Bytes dht(const std::vector<int>& counts, int table_class_id = 0x00) {
  int n = 0;
  for (int c : counts) n += c;
  Bytes s = {0xFF, 0xC4};
  const size_t len = 2 + 1 + 16 + size_t(n);
  s.push_back(uint8_t(len >> 8));
  s.push_back(uint8_t(len));
  s.push_back(uint8_t(table_class_id));
  for (int c : counts) s.push_back(uint8_t(c));
  for (int i = 0; i < n; ++i) s.push_back(uint8_t(i));
  return s;
}

// Bytes `seg` inserted just before the final end-of-image marker (i.e. after the scan).
Bytes before_eoi(const Bytes& jpeg, const Bytes& seg) {
  Bytes r(jpeg.begin(), jpeg.end() - 2);
  r.insert(r.end(), seg.begin(), seg.end());
  r.push_back(0xFF);
  r.push_back(0xD9);
  return r;
}

// A tiny Keras model (input 32×32×3 → 3×3 conv 'same' 3→4, ReLU → GAP → Dense 4→2), its
// layer list and weights; `edit` may change the layer list before import.
struct Tiny {
  json layers;
  std::map<std::string, Tensor> w;
  Tiny() {
    auto L = [](const std::string& name, const std::string& cls, json cfg, const std::string& in) {
      cfg["name"] = name;
      json nodes = in.empty() ? json::array() : json::array({json::array({json::array({in, 0, 0, json::object()})})});
      return json{{"name", name}, {"class_name", cls}, {"config", cfg}, {"inbound_nodes", nodes}};
    };
    layers = json::array();
    layers.push_back(L("in", "InputLayer", {{"batch_input_shape", {nullptr, 32, 32, 3}}}, ""));
    layers.push_back(L("conv", "Conv2D",
                       {{"filters", 4}, {"kernel_size", {3, 3}}, {"strides", {1, 1}}, {"padding", "same"},
                        {"activation", "relu"}, {"use_bias", true}},
                       "in"));
    layers.push_back(L("gap", "GlobalAveragePooling2D", json::object(), "conv"));
    layers.push_back(L("fc", "Dense", {{"units", 2}, {"use_bias", true}}, "gap"));
    auto t = [](std::vector<size_t> shape) {
      Tensor x;
      x.shape = shape;
      x.data.resize(x.numel());
      for (size_t i = 0; i < x.data.size(); ++i) x.data[i] = float(i % 7) * 0.1f - 0.3f;
      return x;
    };
    w["conv/kernel"] = t({3, 3, 3, 4});
    w["conv/bias"] = t({4});
    w["fc/kernel"] = t({4, 2});
    w["fc/bias"] = t({2});
  }
  ImportedBackbone import() const {
    return import_keras_layers(layers.dump(), [&](const std::string& k) -> const Tensor* {
      auto it = w.find(k);
      return it == w.end() ? nullptr : &it->second;
    });
  }
};

}  // namespace

TEST(FuzzRegressions, JpegHuffmanTableWithTooManyCodes) {
  ASSERT_FALSE(test::photo().empty()) << "missing the flower photos (PETAL_DATA)";
  const std::vector<int> too_many(16, 255);  // 4080 codes; a table holds 256
  // Before the frame header (where stb_image's probe reads it too) ...
  const Bytes early = imgtest::insert_segment(test::photo(), dht(too_many));
  EXPECT_ERROR_HAS(probe_image(early.data(), early.size()), "Huffman table");
  EXPECT_ERROR_HAS(decode_image(early.data(), early.size()), "Huffman table");
  // ... after the scan, where a progressive JPEG keeps its later tables ...
  const Bytes late = before_eoi(test::photo(), dht(too_many, 0x11));
  EXPECT_ERROR_HAS(decode_image(late.data(), late.size()), "Huffman table");
  // ... with fill bytes and a restart marker in the way, and one code too many (257).
  std::vector<int> c257(16, 0);
  c257[15] = 255;
  c257[14] = 2;
  Bytes hidden = {0xFF, 0xD0, 0x12, 0xFF, 0xFF};
  const Bytes seg = dht(c257, 0x10);
  hidden.insert(hidden.end(), seg.begin() + 1, seg.end());
  const Bytes late257 = before_eoi(test::photo(), hidden);
  EXPECT_ERROR_HAS(decode_image(late257.data(), late257.size()), "Huffman table");
  // 256 codes is allowed (the table is full, not overrun): the photo still decodes.
  std::vector<int> c256(16, 0);
  c256[15] = 255;
  c256[14] = 1;
  const Bytes ok = before_eoi(test::photo(), dht(c256, 0x11));
  const std::string m = test::error_of([&] { decode_image(ok.data(), ok.size()); });
  EXPECT_EQ(m.find("Huffman table"), std::string::npos) << m;
}

// A PNG whose first IDAT chunk is empty (valid: the image data may be split anywhere): stb_image
// copied 0 bytes to a null pointer, undefined behaviour that UBSan stopped on (fuzz_image found it).
// A 1x1 grey pixel of 0x80 in a stored zlib block; stb_image checks no CRC, so those are zero.
TEST(FuzzRegressions, PngWithAnEmptyFirstIdatChunk) {
  const std::vector<uint8_t> png = {
      0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a,                                     // signature
      0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0,  // 1x1, 8-bit grey
      0, 0, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 0, 0,                                       // the empty chunk
      0, 0, 0, 13, 'I', 'D', 'A', 'T', 0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x80,
      0x00, 0x82, 0x00, 0x81, 0, 0, 0, 0,                                               // filter 0, pixel 0x80, Adler-32
      0, 0, 0, 0, 'I', 'E', 'N', 'D', 0, 0, 0, 0};
  const Image im = decode_image(png.data(), png.size());
  ASSERT_EQ(im.width, 1);
  ASSERT_EQ(im.height, 1);
  EXPECT_EQ(im.rgb, (std::vector<uint8_t>{0x80, 0x80, 0x80}));
}

// The Huffman check must not refuse real photos: every photo of the data set probes fine.
TEST(FuzzRegressions, HuffmanCheckAcceptsEveryRealPhoto) {
  const std::filesystem::path dir = test::flowers_dir();
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing " << dir;
  size_t n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.path().extension() != ".jpg") continue;
    const Bytes b = test::read_bytes(e.path().string());
    const std::string m = test::error_of([&] { probe_image(b.data(), b.size()); });
    EXPECT_EQ(m, "(no error)") << e.path();
    ++n;
  }
  EXPECT_GT(n, 2500u);
}

TEST(FuzzRegressions, MalformedModelJsonGivesOneLineErrors) {
  // A weight entry without "shape" (the fuzzer's first tfjs finding).
  const std::string no_shape = R"({"modelTopology":{"model_config":{"class_name":"Model","config":{"layers":[]}}},
    "weightsManifest":[{"paths":["a.bin"],"weights":[{"name":"conv1/kernel","dtype":"float32"}]}]})";
  auto shards = [](const std::string&) { return std::vector<uint8_t>(64, 0); };
  EXPECT_ERROR_HAS(import_tfjs(no_shape, shards), "model.json is malformed");
  // Wrong types, and numbers no int can hold, in the layer list.
  Tiny t;
  t.layers[1]["config"]["kernel_size"] = "3x3";
  EXPECT_ERROR_HAS(t.import(), "layer list is malformed");
  t = Tiny();
  t.layers[1]["config"]["strides"] = {1e300, 1};
  EXPECT_ERROR_HAS(t.import(), "where a whole number belongs");
  t = Tiny();
  t.layers[1]["config"]["filters"] = 4294967300ull;
  EXPECT_ERROR_HAS(t.import(), "out-of-range number");
  t = Tiny();
  t.layers[1]["inbound_nodes"] = 5;
  EXPECT_ERROR_HAS(t.import(), "layer list is malformed");
  t = Tiny();
  t.layers[1]["config"]["strides"] = {0, 1};
  EXPECT_ERROR_HAS(t.import(), "invalid kernel size or stride");
}

TEST(FuzzRegressions, WeightShapesThatOverflowOrMismatch) {
  // 2^31-1 × 2^31-1 × 4 elements: the byte count overflows 64 bits; there are 16 bytes of shards.
  const std::string huge = R"({"modelTopology":{"model_config":{"class_name":"Model","config":{"layers":[]}}},
    "weightsManifest":[{"paths":["a.bin"],"weights":[{"name":"w","shape":[2147483647,2147483647,4,1073741824],"dtype":"float32"}]}]})";
  EXPECT_ERROR_HAS(import_tfjs(huge, [](const std::string&) { return std::vector<uint8_t>(16, 0); }),
                   "the weight shards end before weight 'w'");
  // A weight with no elements (shape [0, 4]) and empty shards: memcpy from a null pointer was
  // undefined behaviour (found by fuzz_tfjs); now the import goes on to the real error.
  const std::string empty = R"({"modelTopology":{"model_config":{"class_name":"Model","config":{"layers":[]}}},
    "weightsManifest":[{"paths":["a.bin"],"weights":[{"name":"w","shape":[0,4],"dtype":"float32"}]}]})";
  EXPECT_THROW(import_tfjs(empty, [](const std::string&) { return std::vector<uint8_t>(); }), Error);
  Tiny t;
  t.w["fc/bias"].shape = {3};
  t.w["fc/bias"].data.resize(3);
  EXPECT_ERROR_HAS(t.import(), "weight 'fc/bias' has the wrong shape");
}

TEST(FuzzRegressions, BundleGraphsTheBackboneCannotRunAreRefusedWhenRead) {
  const Tiny t;
  const ImportedBackbone m = t.import();
  const json good = json::parse(m.graph.to_json());
  EXPECT_NO_THROW(Graph::from_json(good.dump()));
  auto with = [&](const std::function<void(json&)>& edit) {
    json g = good;
    edit(g);
    return g.dump();
  };
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][0]["s"] = {0, 1}; })), "invalid kernel size or stride");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][0]["k"] = {0, 3}; })), "invalid kernel size or stride");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) {
                     g["ops"][0].erase("same");
                     g["ops"][0]["pad"] = {-5, 0, 0, 0};
                   })),
                   "invalid padding");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][0]["cin"] = 5; })), "expects 5 channels but gets 3");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][0]["in"] = {"nowhere"}; })), "not defined before it");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][2]["in"] = {"conv"}; })), "needs pooled features");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["feature_dim"] = 7; })), "features");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) { g["ops"][0]["k"] = {1e300, 3}; })), "whole number");
  EXPECT_ERROR_HAS(Graph::from_json(with([](json& g) {
                     g["input"] = {64, 64, 3};
                     g["ops"][0]["cout"] = 60000;  // 64×64×60000 floats in one tensor
                     g["ops"][2]["cin"] = 60000;
                     g["feature_dim"] = 60000;
                   })),
                   "too large");
  // Through the engine: a bundle whose graph has stride 0 is refused before XNNPACK sees it.
  Bundle b = make_backbone_bundle(m, {});
  b.metadata["graph"] = with([](json& g) { g["ops"][0]["s"] = {0, 0}; });
  EXPECT_ERROR_HAS(Engine(b, 1), "invalid kernel size or stride");
}

TEST(FuzzRegressions, BankLabelsOutOfIntRange) {
  const Tiny t;
  Bundle b = make_backbone_bundle(t.import(), {});
  Head(4, 3, 2, 1).save(b);
  b.metadata["class_names"] = R"(["a","b"])";
  Tensor f, l;
  f.shape = {2, 4};
  f.data.assign(8, 0.5f);
  l.shape = {2};
  l.data = {1.f, 3e9f};  // stored as F32: no int holds 3e9
  b.tensors["bank.features"] = f;
  b.tensors["bank.labels"] = l;
  auto bytes = write_bundle(b);
  Bundle r = read_bundle(bytes.data(), bytes.size());
  EXPECT_ERROR_HAS(Engine(r, 1), "feature bank has a label outside its classes");
  r.tensors["bank.labels"].data = {1.f, 0.f};
  Engine e(r, 1);
  EXPECT_EQ(e.bank_labels(), (std::vector<int32_t>{1, 0}));
}

TEST(FuzzRegressions, TinyBundlesAreNotReadPastTheirEnd) {
  for (size_t n = 8; n <= 10; ++n) {
    // A heap copy of exactly n bytes, so ASan sees a read past the end.
    std::unique_ptr<uint8_t[]> b(new uint8_t[n]);
    std::memset(b.get(), 0, n);
    b[0] = 2;  // header length 2
    if (n > 8) b[8] = '{';
    if (n > 9) b[9] = '}';
    const std::string m = test::error_of([&] { read_bundle(b.get(), n); });
    if (n < 10) EXPECT_NE(m.find("not a model bundle"), std::string::npos) << m;
  }
}
