// The engine against the independent golden reference (../shared/data/golden) and real photos.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "engine.h"
#include "image.h"
#include "error.h"
#include "test_support.h"

using namespace petal;
namespace fs = std::filesystem;

namespace {

class Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::exists(test::backbone_path())) engine_ = new Engine(load_bundle_file(test::backbone_path()), 2);
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  void SetUp() override {
    PETAL_REQUIRE_FILE(test::backbone_path());
    PETAL_REQUIRE_FILE(test::data_dir() + "/golden/index.json");
    index_ = nlohmann::json::parse(test::read_bytes(test::data_dir() + "/golden/index.json"));
  }
  static Engine* engine_;
  nlohmann::json index_;
};
Engine* Golden::engine_ = nullptr;

using test::cosine;

}  // namespace

TEST_F(Golden, FeaturesAndLogitsFromReferenceInputs) {
  auto inputs = test::read_f32(test::data_dir() + "/golden/inputs_224.f32");
  auto ref_f = test::read_f32(test::data_dir() + "/golden/features.f32");
  auto ref_l = test::read_f32(test::data_dir() + "/golden/logits.f32");
  const size_t n = index_["images"].size();
  ASSERT_EQ(inputs.size(), n * 224 * 224 * 3);
  std::vector<float> logits;
  // batch 1 and batch n must both match
  for (size_t batch : {size_t(1), n}) {
    for (size_t start = 0; start < n; start += batch) {
      auto f = engine_->features_of_inputs(&inputs[start * 224 * 224 * 3], batch, &logits);
      for (size_t i = 0; i < batch; ++i) {
        const float* rf = &ref_f[(start + i) * 2048];
        const float* rl = &ref_l[(start + i) * 1000];
        double max_ref = 0, max_err = 0, max_lref = 0, max_lerr = 0;
        for (size_t j = 0; j < 2048; ++j) {
          max_ref = std::max(max_ref, double(std::abs(rf[j])));
          max_err = std::max(max_err, double(std::abs(f[i * 2048 + j] - rf[j])));
        }
        for (size_t j = 0; j < 1000; ++j) {
          max_lref = std::max(max_lref, double(std::abs(rl[j])));
          max_lerr = std::max(max_lerr, double(std::abs(logits[i * 1000 + j] - rl[j])));
        }
        EXPECT_LE(max_err, 1e-3 * max_ref) << "image " << start + i << " batch " << batch;
        EXPECT_LE(max_lerr, 1e-3 * max_lref) << "image " << start + i << " batch " << batch;
        auto top = engine_->imagenet_top(&logits[i * 1000], 5);
        auto ref_top = index_["images"][start + i]["imagenet_top5"];
        for (int k = 0; k < 5; ++k) EXPECT_EQ(top[k].index, ref_top[k][0].get<int>()) << "image " << start + i << " rank " << k;
      }
    }
  }
}

TEST_F(Golden, FromJpegFilesCosineAndTop1) {
  auto ref_f = test::read_f32(test::data_dir() + "/golden/features.f32");
  size_t i = 0;
  for (auto& im : index_["images"]) {
    const std::string file = test::data_dir() + "/" + im["file"].get<std::string>();
    auto bytes = test::read_bytes(file);
    ASSERT_FALSE(bytes.empty()) << file;
    std::vector<float> logits;
    auto f = engine_->features_of_bytes(bytes.data(), bytes.size(), false, &logits);
    const double cos = cosine(f.data(), &ref_f[i * 2048], 2048);
    EXPECT_GE(cos, 0.98) << file;
    if (std::getenv("PETAL_VERBOSE")) std::printf("%s cosine %.5f\n", file.c_str(), cos);
    EXPECT_EQ(engine_->imagenet_top(logits.data(), 1)[0].index, im["imagenet_top5"][0][0].get<int>()) << file;
    ++i;
  }
}

TEST_F(Golden, DaisiesAreDaisiesInImageNetTop5) {
  std::vector<std::string> files;
  for (auto& e : fs::directory_iterator(test::data_dir() + "/flower_photos/daisy"))
    if (e.path().extension() == ".jpg") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 50u);
  files.resize(50);
  int hits = 0;
  for (auto& file : files) {
    auto bytes = test::read_bytes(file);
    std::vector<float> logits;
    engine_->features_of_bytes(bytes.data(), bytes.size(), false, &logits);
    for (auto& p : engine_->imagenet_top(logits.data(), 5)) hits += p.label == "daisy";
  }
  EXPECT_GE(hits, 40) << hits << " of 50 daisies have 'daisy' in the ImageNet top-5";
}

TEST_F(Golden, BadImagesGiveOneLineErrors) {
  const std::string jpeg = test::data_dir() + "/flower_photos/daisy/100080576_f52e8ee070_n.jpg";
  auto good = test::read_bytes(jpeg);
  std::vector<uint8_t> truncated(good.begin(), good.begin() + good.size() / 2);
  const std::string text = "just some notes, not a photo\n";
  // a PNG whose header claims 30000x30000
  std::vector<uint8_t> huge = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                               0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0, 0, 0, 0, 0};
  struct Case {
    std::vector<uint8_t> bytes;
    const char* expect;
  } cases[] = {{{}, "empty"},
               {truncated, "truncated"},
               {std::vector<uint8_t>(text.begin(), text.end()), "text file"},
               {huge, "30000x30000"}};
  for (auto& c : cases) {
    try {
      engine_->features_of_bytes(c.bytes.data(), c.bytes.size());
      ADD_FAILURE() << "no error for case '" << c.expect << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

// A head trained with `petal train --image-size N` carries input_size NxN: the engine must run the
// backbone at that size (what `petal eval` measured), not at the graph's 224.
TEST_F(Golden, BundleInputSizeSetsTheBackboneSize) {
  const std::string photo = index_.at("images").at(0).at("file").get<std::string>();
  const auto bytes = test::read_bytes(test::data_dir() + "/" + photo);
  ASSERT_FALSE(bytes.empty()) << photo;
  Bundle b = load_bundle_file(test::backbone_path());
  b.metadata["input_size"] = "160x160";
  Engine at160(b, 2);
  EXPECT_EQ(at160.input_size(), 160);
  const auto got = at160.features_of_bytes(bytes.data(), bytes.size());
  const auto input = image_to_input(bytes.data(), bytes.size(), 160, 160);
  // The same photo through an explicit 160x160 graph of the same weights.
  Graph g = engine_->graph();
  g.input_h = g.input_w = 160;
  Backbone direct(g, b, 2);  // (the backbone reads no input_size: the graph says 160)
  std::vector<float> ref(size_t(g.feature_dim));
  direct.run(input.data(), 1, ref.data());
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5f) << i;
  const auto at224 = engine_->features_of_bytes(bytes.data(), bytes.size());
  EXPECT_LT(cosine(got.data(), at224.data(), got.size()), 0.9999) << "160 px features equal the 224 px ones";

  for (const char* bad : {"288", "288x", "0x0", "4096x4096", "288x288x3"}) {
    b.metadata["input_size"] = bad;
    try {
      Engine e(b, 1);
      ADD_FAILURE() << "input_size '" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("input_size"), std::string::npos) << e.what();
    }
  }
}
