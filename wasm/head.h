// The trainable classifier head on top of the frozen backbone's pooled features:
// Dense(in→hidden, ReLU) → Dense(hidden→N) → softmax. Forward, cross-entropy backward, Adam
// (Keras defaults), Glorot-uniform init; deterministic for a seed, natively and in wasm.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bundle.h"
#include "matmul.h"

namespace petal {

// Deterministic across platforms (no <random> distributions, whose output differs by library).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0,1)
  size_t below(size_t n) { return size_t(next() % n); }
};

// Examples for training/evaluation: n rows of `dim` features and a label each.
struct FeatureSet {
  const float* features = nullptr;
  const int32_t* labels = nullptr;
  size_t n = 0, dim = 0;
};

struct TrainOptions {
  int epochs = 10;
  int batch_size = 32;
  float learning_rate = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-7f;  // Keras Adam defaults
  float dropout = 0.f;        // on the hidden layer, during training only
  float weight_decay = 0.f;   // decoupled (AdamW), per step: w -= lr * wd * w
  float label_smoothing = 0.f;
  // Mixup between neighbours: each batch is blended with itself shifted by one example,
  // x = λ·x_i + (1 − λ)·x_i+1 and the targets alike, λ drawn per batch uniformly from
  // [1 − mixup/2, 1] (0: off; 1: λ down to 0.5).
  float mixup = 0.f;
  bool keep_best = false;     // restore the weights of the epoch with the best validation accuracy
  uint64_t seed = 123;
  // Learning rate: constant (Keras' default), or cosine decay from learning_rate to 0 over the run.
  bool cosine_decay = false;
  // Stochastic weight averaging: end with the mean of the weights after each of the last
  // `average_last` epochs (0: off; not with keep_best).
  int average_last = 0;
};

struct EpochStats {
  int epoch = 0;  // 1-based
  double loss = 0, accuracy = 0, val_loss = 0, val_accuracy = 0;
  bool has_val = false;
  double seconds = 0;
};

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<std::vector<int>> confusion;  // [true][predicted]
};

class Head {
 public:
  Head() = default;
  Head(int in, int hidden, int classes, uint64_t seed);  // Glorot-uniform weights, zero biases

  int in() const { return in_; }
  int hidden() const { return hidden_; }
  int classes() const { return classes_; }
  size_t param_count() const { return size_t(hidden_) * in_ + hidden_ + size_t(classes_) * hidden_ + classes_; }

  // Softmax probabilities, n × classes.
  std::vector<float> predict(const float* x, size_t n, pthreadpool_t pool = nullptr) const;
  // The scores before softmax, n × classes.
  std::vector<float> logits(const float* x, size_t n, pthreadpool_t pool = nullptr) const;
  Evaluation evaluate(const FeatureSet& data, pthreadpool_t pool = nullptr) const;
  // d(score of class `cls` before softmax)/d(features) at one feature row `x`: what a heatmap
  // (wasm/heatmap.h) weighs the feature map's channels by.
  std::vector<float> input_gradient(const float* x, int cls) const;

  // Trains in place. `on_epoch` sees each epoch's numbers and returns false to stop early;
  // `on_batch(done, total)` reports progress within the whole run.
  std::vector<EpochStats> train(const FeatureSet& train, const FeatureSet* val, const TrainOptions& opt,
                                const std::function<bool(const EpochStats&)>& on_epoch = {},
                                const std::function<void(size_t, size_t)>& on_batch = {},
                                pthreadpool_t pool = nullptr);

  // One more output class with these hidden→class weights (`hidden()` values) and bias.
  void add_class(const float* weights, float bias);
  // Residual units (what teaching adds, wasm/teach.h): linear scores of the centred, unit-length
  // features, u = W·(x − center)/|x − center| + b, added to the classes' scores through `out`
  // [classes × units], after the network's own scores are multiplied by `base_scale` (< 1 softens
  // its confidence; its ranking stays). A head without them is the plain two-layer network.
  int residual_units() const { return units_; }
  const std::vector<float>& residual_center() const { return center_; }
  float base_scale() const { return scale_; }
  void set_base_scale(float s) { scale_ = s; }
  // The head without the units that feed any class marked in `classes` (to be taught again).
  Head without_units_of(const std::vector<bool>& classes) const;
  // Append `n` units (weights n × in, biases n, out classes × n); the first units set the center.
  void add_residual_units(size_t n, const float* weights, const float* biases, const float* out, const std::vector<float>& center);
  // The residual units' input: each row centred and scaled to unit length (a zero row stays zero).
  static void residual_input(const float* x, size_t n, size_t dim, const float* center, float* out);

  // Bundle tensors: head.dense1.weight [hidden,in], head.dense1.bias, head.dense2.weight
  // [classes,hidden], head.dense2.bias; with residual units also head.residual.weight [units,in],
  // head.residual.bias [units], head.residual.out [classes,units], head.residual.center [in],
  // head.residual.base_scale [1].
  void save(Bundle& b) const;
  static Head load(const Bundle& b);  // throws petal::Error when absent or inconsistent

 private:
  void forward(const float* x, size_t n, float* hidden, float* logits, pthreadpool_t pool) const;
  int in_ = 0, hidden_ = 0, classes_ = 0;
  std::vector<float> w1_, b1_, w2_, b2_;  // w1_, w2_ carry trailing zero slack for XNNPACK
  int units_ = 0;
  float scale_ = 1.f;
  std::vector<float> center_, rw_, rb_, rout_;
};

// log-softmax cross-entropy helpers shared by training and evaluation
void softmax_rows(float* x, size_t n, size_t c);

}  // namespace petal
