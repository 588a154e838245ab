// The int8 backbone (BackboneOptions::int8, or a bundle marked by `petal quantize`): close to the
// golden fp32 features on real photos, the same ImageNet top-1, any batch size in any order (the
// XNNPACK version used overran its quantisation parameters when the batch grew), and the marker
// tensor turns it on for engines built from bundles.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "engine.h"
#include "error.h"
#include "test_support.h"

using namespace petal;

namespace {

constexpr size_t kPer = 224 * 224 * 3, kDim = 2048;

class Int8 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (test::exists(test::backbone_path())) bundle_ = new Bundle(load_bundle_file(test::backbone_path()));
  }
  static void TearDownTestSuite() {
    delete bundle_;
    bundle_ = nullptr;
  }
  void SetUp() override {
    PETAL_REQUIRE_FILE(test::backbone_path());
    PETAL_REQUIRE_FILE(test::data_dir() + "/golden/inputs_224.f32");
    inputs_ = test::read_f32(test::data_dir() + "/golden/inputs_224.f32");
    ref_ = test::read_f32(test::data_dir() + "/golden/features.f32");
    ASSERT_EQ(inputs_.size(), 10 * kPer);
  }
  static Bundle* bundle_;
  std::vector<float> inputs_, ref_;
};
Bundle* Int8::bundle_ = nullptr;

using test::cosine;

TEST_F(Int8, CloseToGoldenFeaturesForAnyBatchInAnyOrder) {
  const Graph g = Graph::from_json(bundle_->meta("graph"));
  for (size_t threads : {1, 2}) {
    BackboneOptions o;
    o.int8 = true;
    Backbone net(g, *bundle_, threads, o);
    std::vector<float> f(10 * kDim);
    // 1 -> 2 -> 10 -> 3: growing batches crashed before the runtime was re-created.
    for (size_t batch : {1, 2, 10, 3}) {
      std::fill(f.begin(), f.end(), NAN);
      net.run(inputs_.data(), batch, f.data());
      for (size_t i = 0; i < batch; ++i) {
        const double c = cosine(f.data() + i * kDim, ref_.data() + i * kDim, kDim);
        EXPECT_GT(c, 0.995) << "threads " << threads << " batch " << batch << " image " << i;
      }
    }
  }
}

TEST_F(Int8, MarkerTensorTurnsItOnAndKeepsImageNetTop1) {
  Bundle marked = *bundle_;
  mark_int8(marked);
  Engine fp32(*bundle_, 1), int8(marked, 1);
  std::vector<float> l32, l8;
  auto f32 = fp32.features_of_inputs(inputs_.data(), 10, &l32);
  auto f8 = int8.features_of_inputs(inputs_.data(), 10, &l8);
  double max_diff = 0;
  for (size_t i = 0; i < f32.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(f32[i] - f8[i])));
  EXPECT_GT(max_diff, 1e-3) << "the marked bundle still ran in fp32";
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(fp32.imagenet_top(l32.data() + i * 1000, 1)[0].index, int8.imagenet_top(l8.data() + i * 1000, 1)[0].index)
        << "image " << i;
    EXPECT_GT(cosine(f8.data() + i * kDim, f32.data() + i * kDim, kDim), 0.995) << "image " << i;
  }
}

// Static int8 (QS8): ranges calibrated on five real photos, checked on the five others.
TEST_F(Int8, StaticInt8CalibratedOnPhotosStaysCloseOnOtherPhotos) {
  const Graph g = Graph::from_json(bundle_->meta("graph"));
  Bundle calibrated = *bundle_;
  calibrate_int8(calibrated, g, inputs_.data(), 5, 2);
  ASSERT_TRUE(calibrated.has(kInt8Marker));
  const Tensor& r = calibrated.get(kInt8RangesTensor, {g.ops.size() + 1, 2});
  // row 0: the caffe-preprocessed input (0-255 minus the ImageNet means)
  EXPECT_LT(r.data[0], -90.f);
  EXPECT_GT(r.data[1], 120.f);
  for (size_t i = 0; i < g.ops.size(); ++i)
    if (g.ops[i].relu) EXPECT_GE(r.data[(i + 1) * 2], 0.f) << g.ops[i].name << " ends in a ReLU";

  Engine fp32(*bundle_, 1), int8(calibrated, 2);
  std::vector<float> l32, l8;
  const float* held_out = inputs_.data() + 5 * kPer;
  auto f32 = fp32.features_of_inputs(held_out, 5, &l32);
  auto f8 = int8.features_of_inputs(held_out, 5, &l8);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_GT(cosine(f8.data() + i * kDim, f32.data() + i * kDim, kDim), 0.99) << "image " << i;
    EXPECT_EQ(fp32.imagenet_top(l32.data() + i * 1000, 1)[0].index, int8.imagenet_top(l8.data() + i * 1000, 1)[0].index)
        << "image " << i;
  }
  // it is the static kind (no per-image quantisation left) and differs from the dynamic one
  BackboneOptions dynamic;
  dynamic.int8 = dynamic.int8_dynamic = true;
  Backbone qs8(g, calibrated, 1), qd8(g, calibrated, 1, dynamic);
  EXPECT_TRUE(qs8.static_int8());
  EXPECT_FALSE(qd8.static_int8());
  std::vector<float> a(kDim), b(kDim);
  qs8.run(held_out, 1, a.data());
  qd8.run(held_out, 1, b.data());
  EXPECT_NE(a, b);
}

TEST_F(Int8, CalibrationNeedsPhotos) {
  Bundle b = *bundle_;
  EXPECT_THROW(calibrate_int8(b, Graph::from_json(b.meta("graph")), nullptr, 0), Error);
}

}  // namespace
