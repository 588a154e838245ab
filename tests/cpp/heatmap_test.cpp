// Where the model looks (wasm/heatmap.h): the head's input gradient against finite differences,
// the feature map adding nothing to plain classification, and, on real photos pasted onto a grey
// canvas, the heatmap's peak falling on the photo.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "engine.h"
#include "error.h"
#include "heatmap.h"
#include "image.h"
#include "test_support.h"

using namespace petal;
namespace fs = std::filesystem;

namespace {

Head small_head_with_units() {
  Head h(16, 12, 3, 5);
  Rng r(9);
  std::vector<float> w(2 * 16), b(2), out(3 * 2), center(16);
  for (auto& v : w) v = r.uniform() - 0.5f;
  for (auto& v : b) v = r.uniform() - 0.5f;
  for (auto& v : out) v = 2 * r.uniform() - 1;
  for (auto& v : center) v = 0.2f * r.uniform();
  h.add_residual_units(2, w.data(), b.data(), out.data(), center);
  h.set_base_scale(0.7f);
  return h;
}

std::unique_ptr<Engine> flowers_engine() {
  Bundle backbone = load_bundle_file(test::backbone_path());
  backbone.metadata["input_size"] = "288x288";  // the flowers head's input size
  auto e = std::make_unique<Engine>(std::move(backbone), 2);
  e->import_head(load_bundle_file(test::source_dir() + "/model/flowers-head.safetensors"));
  return e;
}

}  // namespace

TEST(Heatmap, HeadGradientMatchesFiniteDifferences) {
  const Head h = small_head_with_units();
  Rng r(3);
  std::vector<float> x(16);
  for (auto& v : x) v = r.uniform();  // positive, like pooled ReLU features
  for (int cls = 0; cls < 3; ++cls) {
    const auto g = h.input_gradient(x.data(), cls);
    for (size_t i = 0; i < x.size(); ++i) {
      const float eps = 1e-3f;
      auto xp = x, xm = x;
      xp[i] += eps;
      xm[i] -= eps;
      const double d = (double(h.logits(xp.data(), 1)[size_t(cls)]) - h.logits(xm.data(), 1)[size_t(cls)]) / (2 * eps);
      EXPECT_NEAR(g[i], d, 2e-3) << "class " << cls << " feature " << i;
    }
  }
  EXPECT_THROW(h.input_gradient(x.data(), 3), Error);
}

TEST(Heatmap, ExplainingAPhotoGivesTheSameFeaturesAndClassesAsClassifyingIt) {
  PETAL_REQUIRE_FILE(test::backbone_path());
  auto e = flowers_engine();
  const auto bytes = test::read_bytes(test::data_dir() + "/flower_photos/sunflowers/" +
                                      fs::path(*fs::directory_iterator(test::data_dir() + "/flower_photos/sunflowers")).filename().string());
  ASSERT_FALSE(bytes.empty());
  const auto plain = e->features_of_bytes(bytes.data(), bytes.size());
  const Explained x = e->explain_bytes(bytes.data(), bytes.size(), 3);
  ASSERT_EQ(plain.size(), x.features.size());
  EXPECT_EQ(0, std::memcmp(plain.data(), x.features.data(), plain.size() * sizeof(float))) << "the map output changed the features";
  const auto top = e->classify_features(plain.data(), 3);
  ASSERT_EQ(x.top.size(), 3u);
  EXPECT_EQ(x.top[0].label, top[0].label);
  EXPECT_EQ(x.heatmap.cls, top[0].index);
  EXPECT_EQ(x.heatmap.height, 9);  // ResNet-50 at 288²: a 9 × 9 grid
  EXPECT_EQ(x.heatmap.width, 9);
  EXPECT_FLOAT_EQ(*std::max_element(x.heatmap.values.begin(), x.heatmap.values.end()), 1.f);
  EXPECT_THROW(e->explain_bytes(bytes.data(), bytes.size(), 3, 7), Error);
}

// A real photo at 45 % of the side, at a seeded random place on a plain grey 400 × 400 canvas:
// the heatmap of the class the model sees should peak on the photo, not on the grey.
TEST(Heatmap, PeakFallsOnAPhotoPastedOntoGrey) {
  PETAL_REQUIRE_FILE(test::backbone_path());
  auto e = flowers_engine();
  const int side = 400, inner = 180;
  Rng r(2026);
  int inside = 0, total = 0;
  for (const char* cls : {"daisy", "dandelion", "roses", "sunflowers", "tulips"}) {
    std::vector<std::string> files;
    for (auto& f : fs::directory_iterator(test::data_dir() + "/flower_photos/" + cls)) files.push_back(f.path().string());
    std::sort(files.begin(), files.end());
    ASSERT_GE(files.size(), 4u) << cls;
    for (size_t i = 0; i < 4; ++i) {
      const auto bytes = test::read_bytes(files[i * 37 % files.size()]);
      const Image photo = resize_image(decode_image(bytes.data(), bytes.size()), inner, inner);
      Image canvas;
      canvas.width = canvas.height = side;
      canvas.rgb.assign(size_t(side) * side * 3, 128);
      const int x0 = int(r.below(size_t(side - inner + 1))), y0 = int(r.below(size_t(side - inner + 1)));
      for (int y = 0; y < inner; ++y)
        std::copy_n(photo.rgb.begin() + size_t(y) * inner * 3, size_t(inner) * 3,
                    canvas.rgb.begin() + (size_t(y0 + y) * side + x0) * 3);
      const Heatmap m = e->explain_image(canvas, 1).heatmap;
      const float px = m.peak_x() * side, py = m.peak_y() * side;
      const bool hit = px >= x0 && px <= x0 + inner && py >= y0 && py <= y0 + inner;
      inside += hit;
      ++total;
    }
  }
  std::printf("heatmap peak on the pasted photo: %d of %d\n", inside, total);
  EXPECT_GE(inside, total * 8 / 10) << inside << " of " << total;
}
