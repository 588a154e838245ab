// The trainable head: gradients match finite differences, training is deterministic for a seed,
// and it learns a real separation.
#include <gtest/gtest.h>

#include <cmath>

#include "error.h"
#include "head.h"

using namespace petal;

namespace {
// Two Gaussian blobs per class in `dim` dimensions.
void make_blobs(int classes, int per_class, int dim, uint64_t seed, std::vector<float>& x, std::vector<int32_t>& y) {
  Rng rng(seed);
  std::vector<float> centers(size_t(classes) * dim);
  for (float& c : centers) c = rng.uniform() * 4.f - 2.f;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      for (int d = 0; d < dim; ++d) x.push_back(centers[size_t(c) * dim + d] + (rng.uniform() - 0.5f));
      y.push_back(c);
    }
}
}  // namespace

TEST(Head, TrainingIsDeterministicAndLearns) {
  std::vector<float> x;
  std::vector<int32_t> y;
  make_blobs(4, 40, 64, 7, x, y);
  FeatureSet data{x.data(), y.data(), y.size(), 64};
  TrainOptions opt;
  opt.epochs = 8;
  Head a(64, 32, 4, 1), b(64, 32, 4, 1);
  auto ha = a.train(data, &data, opt);
  auto hb = b.train(data, &data, opt);
  ASSERT_EQ(ha.size(), 8u);
  for (size_t i = 0; i < ha.size(); ++i) EXPECT_EQ(ha[i].loss, hb[i].loss);
  EXPECT_LT(ha.back().loss, ha.front().loss);
  EXPECT_GE(ha.back().val_accuracy, 0.95);
  auto pa = a.predict(x.data(), 3), pb = b.predict(x.data(), 3);
  EXPECT_EQ(pa, pb);
  for (int r = 0; r < 3; ++r) {
    float s = 0;
    for (int c = 0; c < 4; ++c) s += pa[r * 4 + c];
    EXPECT_NEAR(s, 1.f, 1e-5);
  }
}

// Mixup blends each batch with itself shifted by one: still deterministic, still learns, and
// the training loss is that of the blended (softer) targets, higher than without it.
TEST(Head, MixupIsDeterministicLearnsAndIsInEffect) {
  std::vector<float> x;
  std::vector<int32_t> y;
  make_blobs(4, 40, 64, 7, x, y);
  FeatureSet data{x.data(), y.data(), y.size(), 64};
  TrainOptions plain, mixed;
  plain.epochs = mixed.epochs = 8;
  mixed.mixup = 0.6f;
  Head a(64, 32, 4, 1), b(64, 32, 4, 1), c(64, 32, 4, 1);
  auto ha = a.train(data, &data, mixed);
  auto hb = b.train(data, &data, mixed);
  auto hc = c.train(data, &data, plain);
  for (size_t i = 0; i < ha.size(); ++i) EXPECT_EQ(ha[i].loss, hb[i].loss);
  EXPECT_GE(ha.back().val_accuracy, 0.95);
  EXPECT_GT(ha.back().loss, hc.back().loss + 0.01) << "mixup made no difference to the training loss";
  for (float bad : {-0.1f, 1.5f, NAN}) {
    TrainOptions o;
    o.mixup = bad;
    Head h(64, 32, 4, 1);
    EXPECT_THROW(h.train(data, nullptr, o), Error) << bad;
  }
}

TEST(Head, GradientMatchesFiniteDifferences) {
  // One SGD-like step of Adam moves each weight by ≈ lr·sign(g) on step 1; check the loss
  // decreases as predicted by the analytic gradient direction for a tiny problem.
  std::vector<float> x;
  std::vector<int32_t> y;
  make_blobs(3, 4, 8, 3, x, y);
  FeatureSet data{x.data(), y.data(), y.size(), 8};
  Head h(8, 6, 3, 5);
  const double before = h.evaluate(data).loss;
  TrainOptions opt;
  opt.epochs = 1;
  opt.batch_size = int(y.size());  // one full-batch step
  opt.learning_rate = 1e-3f;
  Head stepped = h;
  stepped.train(data, nullptr, opt);
  const double after = stepped.evaluate(data).loss;
  EXPECT_LT(after, before);
  // first Adam step moves every parameter by lr·g/(|g|+eps') ≈ ±lr: loss change ≈ -lr·Σ|g|
  // Estimate Σ|g| by finite differences through the bundle round trip.
  Bundle b;
  h.save(b);
  double sum_abs_g = 0;
  const float eps = 1e-3f;
  for (const char* name : {"head.dense1.weight", "head.dense1.bias", "head.dense2.weight", "head.dense2.bias"}) {
    for (size_t i = 0; i < b.tensors[name].data.size(); ++i) {
      Bundle p = b, m = b;
      p.tensors[name].data[i] += eps;
      m.tensors[name].data[i] -= eps;
      const double g = (Head::load(p).evaluate(data).loss - Head::load(m).evaluate(data).loss) / (2 * eps);
      sum_abs_g += std::abs(g);
    }
  }
  const double predicted = -1e-3 * sum_abs_g;
  EXPECT_NEAR(after - before, predicted, 0.25 * std::abs(predicted));
}

TEST(Head, SaveLoadRoundTripAndBadInput) {
  Head h(16, 8, 3, 9);
  Bundle b;
  h.save(b);
  Head r = Head::load(b);
  std::vector<float> x(16, 0.5f);
  EXPECT_EQ(h.predict(x.data(), 1), r.predict(x.data(), 1));
  EXPECT_THROW(Head(16, 8, 1, 0), Error);
  Bundle empty;
  EXPECT_THROW(Head::load(empty), Error);
  std::vector<float> f(16 * 2);
  std::vector<int32_t> y = {0, 5};
  FeatureSet bad{f.data(), y.data(), 2, 16};
  EXPECT_THROW(h.train(bad, nullptr, TrainOptions{}), Error);
}
