// tools/setup/xnnpack-weights-outer.patch changes the order in which XNNPACK walks a convolution's
// output tiles when its weights outgrow the cache (output-channel blocks outside, pixel blocks
// inside). Every output element is still computed by the same microkernel over the same inputs in
// the same order, so the features must be bit for bit those of XNNPACK's own order
// (BackboneOptions::LoopOrder::Xnnpack), for fp32 and int8, batch 1 and 3 (two parallelisation paths), on one
// and two threads, and with every convolution sent through the new order (LoopOrder::WeightsOuter).
// tools/setup/xnnpack-residual-add.patch adds a residual Add and its ReLU to each block of a
// convolution's output as it is written: the same two operations on the same values, so those
// features must be bit for bit the unfused network's too.
// tools/setup/xnnpack-winograd.patch runs 3x3 convolutions as Winograd F(2x2, 3x3): other arithmetic,
// so those features are compared with XNNPACK's direct convolution (winograd off) within
// rounding instead.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "backbone.h"
#include "test_support.h"

using namespace petal;

namespace {

constexpr size_t kPer = 224 * 224 * 3, kDim = 2048;

using LoopOrder = BackboneOptions::LoopOrder;

// Features of the first `batch` golden inputs with the convolutions' loop order `order`.
std::vector<float> features(const Bundle& b, const std::vector<float>& inputs, LoopOrder order,
                            bool int8, size_t threads, size_t batch, bool fuse_residual = true,
                            bool winograd = true) {
  BackboneOptions o;
  o.int8 = int8;
  o.fuse_residual = fuse_residual;
  o.winograd = winograd;
  o.loop_order = order;
  Backbone net(Graph::from_json(b.meta("graph")), b, threads, o);
  std::vector<float> f(batch * kDim);
  net.run(inputs.data(), batch, f.data());
  return f;
}

std::string config(bool int8, size_t threads, size_t batch) {
  return std::string(int8 ? "int8" : "fp32") + ", " + std::to_string(threads) + " thread(s), batch " + std::to_string(batch);
}

void expect_identical(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << what;
}

// Operators of a profiled network (1 thread, batch 1) whose names contain `part`.
size_t operators_named(const Bundle& b, const std::vector<float>& inputs, BackboneOptions o, const char* part) {
  o.profile = true;
  Backbone net(Graph::from_json(b.meta("graph")), b, 1, o);
  std::vector<float> f(kDim);
  net.run(inputs.data(), 1, f.data());
  size_t n = 0;
  for (auto& op : net.profile()) n += op.name.find(part) != std::string::npos;
  return n;
}

class XnnpackPatches : public ::testing::Test {
 protected:
  void SetUp() override {
    PETAL_REQUIRE_FILE(test::backbone_path());
    PETAL_REQUIRE_FILE(test::data_dir() + "/golden/inputs_224.f32");
    b = std::make_unique<Bundle>(load_bundle_file(test::backbone_path()));
    inputs = test::read_f32(test::data_dir() + "/golden/inputs_224.f32");
    ASSERT_EQ(inputs.size(), 10 * kPer);
    golden = test::read_f32(test::data_dir() + "/golden/features.f32");
  }
  std::unique_ptr<Bundle> b;
  std::vector<float> inputs, golden;
};

// The loop order and the residual fusion: the same arithmetic, so the same bits.
TEST_F(XnnpackPatches, LoopOrderAndResidualFusionKeepFeaturesBitIdentical) {
  // All 16 of ResNet-50's adds are fused: no elementwise operators (adds, clamps) are left.
  for (bool fuse : {false, true}) {
    BackboneOptions o;
    o.fuse_residual = fuse;
    EXPECT_EQ(operators_named(*b, inputs, o, "Elementwise"), fuse ? 0u : 32u) << "fuse_residual " << fuse;
  }
  for (bool int8 : {false, true})
    for (size_t threads : {1, 2})
      for (size_t batch : {1, 3}) {
        const std::string what = config(int8, threads, batch);
        const auto ours = features(*b, inputs, LoopOrder::Auto, int8, threads, batch);
        expect_identical(ours, features(*b, inputs, LoopOrder::Xnnpack, int8, threads, batch), what + ", XNNPACK's loop order");
        expect_identical(ours, features(*b, inputs, LoopOrder::WeightsOuter, int8, threads, batch),
                         what + ", every convolution weights-outer");
        expect_identical(ours, features(*b, inputs, LoopOrder::Auto, int8, threads, batch, false), what + ", adds unfused");
        // and they are features, not zeros
        EXPECT_GT(test::cosine(ours.data(), golden.data(), kDim), 0.99) << what;
      }
}

TEST_F(XnnpackPatches, WinogradMatchesDirectConvolutionWithinRounding) {
  // the 3x3 convolutions of stages 2-4 (13 in ResNet-50) are Winograd ones, and only with it on
  for (bool winograd : {false, true}) {
    BackboneOptions o;
    o.winograd = winograd;
    EXPECT_EQ(operators_named(*b, inputs, o, "Winograd"), winograd ? 13u : 0u) << "winograd " << winograd;
  }
  for (size_t threads : {1, 2})
    for (size_t batch : {1, 3}) {
      const auto direct = features(*b, inputs, LoopOrder::Auto, false, threads, batch, true, false);
      const auto wino = features(*b, inputs, LoopOrder::Auto, false, threads, batch, true, true);
      const std::string what = config(false, threads, batch);
      for (size_t i = 0; i < batch; ++i) {
        float max_diff = 0, max_f = 0;
        for (size_t j = 0; j < kDim; ++j) {
          max_diff = std::max(max_diff, std::fabs(direct[i * kDim + j] - wino[i * kDim + j]));
          max_f = std::max(max_f, std::fabs(direct[i * kDim + j]));
        }
        EXPECT_LT(max_diff, 2e-5f * max_f) << what << ", image " << i << ": " << max_diff << " of " << max_f;
        EXPECT_GT(test::cosine(direct.data() + i * kDim, wino.data() + i * kDim, kDim), 0.999999) << what;
        EXPECT_GT(max_diff, 0.f) << what << ": identical, so Winograd did not run";
      }
    }
}

}  // namespace
