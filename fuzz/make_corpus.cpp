// Builds the fuzz seed corpora from real inputs:
//   image/    flower photos (small originals), and each of a few photos shrunk and saved as
//             JPEG (colour, grey), PNG (RGB, RGBA, grey), BMP and GIF, plus JPEGs carrying EXIF
//             orientations 1–8 in both byte orders
//   bundle/   Petal bundles: a head with class names and a feature bank (F32, F16), a backbone
//             graph imported from a small Keras model, a head-only bundle
//   tfjs/     model.json + NUL + shard bytes: the first ResNet-50 layers with their real weights
//             (conv1, bn_conv1, pooling) under a small classifier, a small residual model with
//             every layer kind the importer folds, and the real ResNet-50 model.json without shards
//   keras_h5/ Keras-layout HDF5 files holding ResNet-50's first layers with real weights
// Usage: make_corpus OUT_DIR FLOWER_PHOTOS_DIR TFJS_RESNET50_DIR
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "head.h"
#include "image.h"
#include "image_writers.h"
#include "keras_h5_writer.h"
#include "keras_import.h"

namespace fs = std::filesystem;
using namespace petal;
using nlohmann::json;
using Bytes = std::vector<uint8_t>;

static int written = 0;
static void put(const fs::path& dir, const std::string& name, const Bytes& b) {
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  ++written;
}

static Bytes gray_jpeg(const Image& img) {
  std::vector<uint8_t> g(size_t(img.width) * img.height);
  for (size_t i = 0; i < g.size(); ++i) g[i] = uint8_t((img.rgb[3 * i] * 3 + img.rgb[3 * i + 1] * 6 + img.rgb[3 * i + 2]) / 10);
  Bytes out;
  stbi_write_jpg_to_func(imgtest::detail::append, &out, img.width, img.height, 1, g.data(), 80);
  return out;
}
static Bytes rgba_png(const Image& img) {
  std::vector<uint8_t> p(size_t(img.width) * img.height * 4);
  for (size_t i = 0; i < size_t(img.width) * img.height; ++i) {
    std::memcpy(&p[4 * i], &img.rgb[3 * i], 3);
    p[4 * i + 3] = uint8_t(i * 7);
  }
  Bytes out;
  stbi_write_png_to_func(imgtest::detail::append, &out, img.width, img.height, 4, p.data(), img.width * 4);
  return out;
}
static Bytes gray_png(const Image& img) {
  std::vector<uint8_t> g(size_t(img.width) * img.height);
  for (size_t i = 0; i < g.size(); ++i) g[i] = img.rgb[3 * i + 1];
  Bytes out;
  stbi_write_png_to_func(imgtest::detail::append, &out, img.width, img.height, 1, g.data(), img.width);
  return out;
}

static void images(const fs::path& out, const fs::path& photos) {
  std::vector<fs::path> files;
  for (auto& cls : fs::directory_iterator(photos))
    if (cls.is_directory())
      for (auto& f : fs::directory_iterator(cls.path())) files.push_back(f.path());
  std::sort(files.begin(), files.end());
  // Small originals (they keep their own encoders' quirks: JFIF, EXIF, comments).
  int originals = 0;
  for (auto& f : files) {
    if (fs::file_size(f) > 16000 || originals >= 12) continue;
    put(out, "photo_" + f.stem().string() + ".jpg", h5test::slurp(f.string()));
    ++originals;
  }
  // A few photos, one per class, shrunk and re-encoded in every format.
  std::string last_class;
  int made = 0;
  for (auto& f : files) {
    const std::string cls = f.parent_path().filename().string();
    if (cls == last_class) continue;
    last_class = cls;
    const Bytes src = h5test::slurp(f.string());
    const Image full = decode_image(src.data(), src.size());
    const Image img = resize_image(full, 40 + 8 * made, 30 + 4 * made);
    const std::string base = cls + "_" + std::to_string(img.width) + "x" + std::to_string(img.height);
    put(out, base + ".jpg", imgtest::encode_jpeg(img, 75));
    put(out, base + "_grey.jpg", gray_jpeg(img));
    put(out, base + ".png", imgtest::encode_png(img));
    put(out, base + "_rgba.png", rgba_png(img));
    put(out, base + "_grey.png", gray_png(img));
    put(out, base + ".bmp", imgtest::encode_bmp(img));
    put(out, base + ".gif", imgtest::encode_gif(img));
    if (made == 0) {
      const Bytes j = imgtest::encode_jpeg(img, 75);
      for (int o = 1; o <= 8; ++o)
        for (bool be : {false, true})
          put(out, base + "_exif" + std::to_string(o) + (be ? "MM" : "II") + ".jpg",
              imgtest::insert_segment(j, imgtest::exif_segment(o, be)));
    }
    ++made;
  }
}

// A Keras layer (model.json layout).
static json layer(const std::string& name, const std::string& cls, json cfg, const std::vector<std::string>& in) {
  cfg["name"] = name;
  json nodes = json::array();
  if (!in.empty()) {
    json node = json::array();
    for (auto& i : in) node.push_back({i, 0, 0, json::object()});
    nodes.push_back(node);
  }
  return {{"name", name}, {"class_name", cls}, {"config", cfg}, {"inbound_nodes", nodes}};
}

struct Weights {
  json manifest = json::array();
  Bytes data;
  void add(const std::string& name, const std::vector<size_t>& shape, const float* v) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    manifest.push_back({{"name", name}, {"shape", shape}, {"dtype", "float32"}});
    const uint8_t* p = reinterpret_cast<const uint8_t*>(v);
    data.insert(data.end(), p, p + n * 4);
  }
};

static Bytes tfjs_input(const json& layers, const Weights& w) {
  json mj = {{"format", "layers-model"},
             {"modelTopology",
              {{"keras_version", "2.2.4-tf"},
               {"backend", "tensorflow"},
               {"model_config",
                {{"class_name", "Model"},
                 {"config", {{"name", "model"}, {"layers", layers}, {"input_layers", json::array()}, {"output_layers", json::array()}}}}}}},
             {"weightsManifest", {{{"paths", {"group1-shard1of1.bin"}}, {"weights", w.manifest}}}}};
  const std::string text = mj.dump();
  Bytes r(text.begin(), text.end());
  r.push_back(0);
  r.insert(r.end(), w.data.begin(), w.data.end());
  return r;
}

// The first layers of ResNet-50 (input_1 .. max_pooling2d, real weights), then a global average
// pool and a 5-way classifier cut from the real fc1000.
static Bytes resnet_prefix(const h5test::TfjsModel& m) {
  json layers = json::array();
  Weights w;
  for (auto& l : m.layers) {
    layers.push_back(l);
    for (auto& p : h5test::keras_params(l["class_name"])) {
      const std::string key = l["name"].get<std::string>() + "/" + p;
      const Tensor& t = m.weights.at(key);
      w.add(key, t.shape, t.data.data());
    }
    if (l["name"] == "max_pooling2d") break;
  }
  layers.push_back(layer("avg_pool", "GlobalAveragePooling2D", {{"data_format", "channels_last"}}, {"max_pooling2d"}));
  layers.push_back(layer("fc5", "Dense", {{"units", 5}, {"activation", "softmax"}, {"use_bias", true}}, {"avg_pool"}));
  const Tensor& fc = m.weights.at("fc1000/kernel");
  std::vector<float> k(64 * 5), b(5, 0.1f);
  for (int i = 0; i < 64; ++i)
    for (int o = 0; o < 5; ++o) k[size_t(i) * 5 + o] = fc.data[size_t(i) * 1000 + size_t(o)];
  w.add("fc5/kernel", {64, 5}, k.data());
  w.add("fc5/bias", {5}, b.data());
  return tfjs_input(layers, w);
}

// A small residual model with every layer kind the importer handles.
static Bytes mini_resnet() {
  Rng rng(42);
  Weights w;
  json L = json::array();
  auto conv = [&](const std::string& name, const std::string& in, int cin, int cout, int k, int s, const char* pad,
                  const char* act = "linear") {
    L.push_back(layer(name, "Conv2D",
                      {{"filters", cout}, {"kernel_size", {k, k}}, {"strides", {s, s}}, {"padding", pad},
                       {"data_format", "channels_last"}, {"dilation_rate", {1, 1}}, {"activation", act}, {"use_bias", true}},
                      {in}));
    std::vector<float> kv(static_cast<size_t>(k * k * cin * cout)), bv(static_cast<size_t>(cout));
    for (float& v : kv) v = rng.uniform() - 0.5f;
    for (float& v : bv) v = rng.uniform() * 0.1f;
    w.add(name + "/kernel", {size_t(k), size_t(k), size_t(cin), size_t(cout)}, kv.data());
    w.add(name + "/bias", {size_t(cout)}, bv.data());
  };
  auto bn = [&](const std::string& name, const std::string& in, int c) {
    L.push_back(layer(name, "BatchNormalization", {{"axis", {3}}, {"epsilon", 0.001}, {"center", true}, {"scale", true}}, {in}));
    const size_t n = static_cast<size_t>(c);
    std::vector<float> g(n), b(n), mu(n), var(n);
    for (int i = 0; i < c; ++i) {
      g[size_t(i)] = 0.5f + rng.uniform();
      b[size_t(i)] = rng.uniform() - 0.5f;
      mu[size_t(i)] = rng.uniform() - 0.5f;
      var[size_t(i)] = 0.1f + rng.uniform();
    }
    w.add(name + "/gamma", {size_t(c)}, g.data());
    w.add(name + "/beta", {size_t(c)}, b.data());
    w.add(name + "/moving_mean", {size_t(c)}, mu.data());
    w.add(name + "/moving_variance", {size_t(c)}, var.data());
  };
  L.push_back(layer("input", "InputLayer", {{"batch_input_shape", {nullptr, 32, 32, 3}}, {"dtype", "float32"}}, {}));
  conv("stem", "input", 3, 8, 3, 1, "same");
  bn("stem_bn", "stem", 8);
  L.push_back(layer("stem_relu", "ReLU", json::object(), {"stem_bn"}));
  L.push_back(layer("pool_pad", "ZeroPadding2D", {{"padding", {{1, 1}, {1, 1}}}}, {"stem_relu"}));
  L.push_back(layer("pool", "MaxPooling2D", {{"pool_size", {3, 3}}, {"strides", {2, 2}}, {"padding", "valid"}}, {"pool_pad"}));
  conv("a", "pool", 8, 8, 1, 1, "valid");
  bn("a_bn", "a", 8);
  L.push_back(layer("a_relu", "Activation", {{"activation", "relu"}}, {"a_bn"}));
  L.push_back(layer("b_pad", "ZeroPadding2D", {{"padding", 1}}, {"a_relu"}));
  conv("b", "b_pad", 8, 16, 3, 2, "valid", "relu");
  conv("short", "pool", 8, 16, 1, 2, "valid");
  bn("short_bn", "short", 16);
  L.push_back(layer("add", "Add", json::object(), {"b", "short_bn"}));
  L.push_back(layer("add_relu", "Activation", {{"activation", "relu"}}, {"add"}));
  L.push_back(layer("drop", "Dropout", {{"rate", 0.2}}, {"add_relu"}));
  L.push_back(layer("gap", "GlobalAveragePooling2D", json::object(), {"drop"}));
  L.push_back(layer("fc", "Dense", {{"units", 3}, {"use_bias", true}}, {"gap"}));
  std::vector<float> k(16 * 3), b(3);
  for (float& v : k) v = rng.uniform() - 0.5f;
  for (float& v : b) v = rng.uniform();
  w.add("fc/kernel", {16, 3}, k.data());
  w.add("fc/bias", {3}, b.data());
  return tfjs_input(L, w);
}

static void bundles(const fs::path& out, const Bytes& mini_tfjs) {
  // The small residual model as a backbone bundle, with a head, classes and a bank.
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(mini_tfjs.data(), 0, mini_tfjs.size()));
  const std::string mj(reinterpret_cast<const char*>(mini_tfjs.data()), size_t(nul - mini_tfjs.data()));
  const Bytes shard(nul + 1, mini_tfjs.data() + mini_tfjs.size());
  ImportedBackbone m = import_tfjs(mj, [&](const std::string&) { return shard; });
  Bundle b = make_backbone_bundle(m, {"tench", "goldfish", "shark"});
  Head h(m.graph.feature_dim, 8, 3, 7);
  h.save(b);
  b.metadata["class_names"] = json({"daisy", "roses", "tulips"}).dump();
  b.metadata["head_shape"] = std::to_string(m.graph.feature_dim) + "x8x3";
  Tensor f, l;
  f.shape = {4, size_t(m.graph.feature_dim)};
  Rng rng(3);
  for (size_t i = 0; i < f.numel(); ++i) f.data.push_back(rng.uniform());
  f.stored = DType::F16;
  l.shape = {4};
  l.data = {0, 1, 2, 1};
  l.stored = DType::I32;
  b.tensors["bank.features"] = f;
  b.tensors["bank.labels"] = l;
  put(out, "mini_full_f32.safetensors", write_bundle(b, DType::F32));
  put(out, "mini_full_f16.safetensors", write_bundle(b, DType::F16));
  // Head-only bundle (what `petal export --head-only` and the page's importHead use).
  Bundle head;
  head.metadata = {{"format", "petal-bundle"}, {"format_version", "1"}, {"backbone", "external"},
                   {"class_names", json({"a", "b", "c", "d"}).dump()}, {"head_shape", "16x8x4"}};
  Head(16, 8, 4, 1).save(head);
  put(out, "head_only.safetensors", write_bundle(head, DType::F16));
  // A bare safetensors file (not a Petal bundle).
  Bundle bare;
  Tensor t;
  t.shape = {2, 2};
  t.data = {1, 2, 3, 4};
  bare.tensors["x"] = t;
  put(out, "bare.safetensors", write_bundle(bare));
}

static void keras_h5(const fs::path& out, const h5test::TfjsModel& m) {
  auto first = [&](const std::string& last, bool keras1) {
    std::vector<h5test::H5Layer> r;
    for (auto& l : h5test::keras_layers(m, false, keras1)) {
      r.push_back(l);
      if (l.name == last) break;
    }
    return r;
  };
  fs::create_directories(out);
  h5test::write_keras_h5((out / "resnet_first_layers.h5").string(), first("res2a_branch2a", false));
  h5test::H5Options opt;
  opt.under_model_weights = true;
  h5test::write_keras_h5((out / "resnet_first_layers_keras1_model_weights.h5").string(), first("bn_conv1", true), opt);
  written += 2;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s OUT_DIR FLOWER_PHOTOS_DIR TFJS_RESNET50_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  try {
    images(out / "image", argv[2]);
    const h5test::TfjsModel m = h5test::load_tfjs(argv[3]);
    const Bytes mini = mini_resnet();
    put(out / "tfjs", "mini_resnet.bin", mini);
    put(out / "tfjs", "resnet50_prefix.bin", resnet_prefix(m));
    put(out / "tfjs", "resnet50_model_json_only.bin", h5test::slurp(std::string(argv[3]) + "/model.json"));
    bundles(out / "bundle", mini);
    keras_h5(out / "keras_h5", m);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "make_corpus: %d seed files in %s\n", written, out.c_str());
  return 0;
}
