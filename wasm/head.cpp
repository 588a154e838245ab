#include "head.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "error.h"
#include "petal_limits.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__wasm_simd128__)
#include <wasm_simd128.h>
#endif

namespace petal {

namespace {

constexpr size_t kSlack = 32;  // trailing zeros XNNPACK may read past a weight matrix

void glorot(std::vector<float>& w, int fan_in, int fan_out, Rng& rng) {
  const float limit = std::sqrt(6.0f / float(fan_in + fan_out));
  for (size_t i = 0; i + kSlack < w.size(); ++i) w[i] = (rng.uniform() * 2.f - 1.f) * limit;
}

struct AdamSlot {
  std::vector<float> m, v;
  void init(size_t n) { m.assign(n, 0.f); v.assign(n, 0.f); }
};

struct AdamCtx {
  float* w;
  const float* g;
  float *m, *v;
  float lr_t, b1, b2, eps, decay;
};

// Four lanes at a time where the target has 128-bit SIMD (SSE2 natively, SIMD128 in wasm). The
// same operations in the same order as the scalar loop, so results are bit-identical either way.
//
// Moments below kTiny are set to 0. A feature that is 0 for every photo in a batch has gradient 0,
// and its first moment decays by 0.9 a step until it is a subnormal float after ~700 steps; x86
// handles subnormals in microcode, which made epochs 5-10 twice as slow as epochs 1-4.
constexpr float kTiny = 1e-30f;
void adam_range(void* p, size_t b, size_t e) {
  auto* c = static_cast<AdamCtx*>(p);
  size_t i = b;
#if defined(__SSE2__)
  const __m128 b1 = _mm_set1_ps(c->b1), b1c = _mm_set1_ps(1.f - c->b1), b2 = _mm_set1_ps(c->b2),
               b2c = _mm_set1_ps(1.f - c->b2), lr = _mm_set1_ps(c->lr_t), eps = _mm_set1_ps(c->eps),
               decay = _mm_set1_ps(c->decay), tiny = _mm_set1_ps(kTiny), sign = _mm_set1_ps(-0.f);
  for (; i + 4 <= e; i += 4) {
    const __m128 g = _mm_loadu_ps(c->g + i), w = _mm_loadu_ps(c->w + i);
    __m128 m = _mm_add_ps(_mm_mul_ps(b1, _mm_loadu_ps(c->m + i)), _mm_mul_ps(b1c, g));
    __m128 v = _mm_add_ps(_mm_mul_ps(b2, _mm_loadu_ps(c->v + i)), _mm_mul_ps(_mm_mul_ps(b2c, g), g));
    m = _mm_and_ps(m, _mm_cmpge_ps(_mm_andnot_ps(sign, m), tiny));
    v = _mm_and_ps(v, _mm_cmpge_ps(v, tiny));
    _mm_storeu_ps(c->m + i, m);
    _mm_storeu_ps(c->v + i, v);
    const __m128 step = _mm_add_ps(_mm_div_ps(_mm_mul_ps(lr, m), _mm_add_ps(_mm_sqrt_ps(v), eps)), _mm_mul_ps(decay, w));
    _mm_storeu_ps(c->w + i, _mm_sub_ps(w, step));
  }
#elif defined(__wasm_simd128__)
  const v128_t b1 = wasm_f32x4_splat(c->b1), b1c = wasm_f32x4_splat(1.f - c->b1), b2 = wasm_f32x4_splat(c->b2),
               b2c = wasm_f32x4_splat(1.f - c->b2), lr = wasm_f32x4_splat(c->lr_t), eps = wasm_f32x4_splat(c->eps),
               decay = wasm_f32x4_splat(c->decay), tiny = wasm_f32x4_splat(kTiny);
  for (; i + 4 <= e; i += 4) {
    const v128_t g = wasm_v128_load(c->g + i), w = wasm_v128_load(c->w + i);
    v128_t m = wasm_f32x4_add(wasm_f32x4_mul(b1, wasm_v128_load(c->m + i)), wasm_f32x4_mul(b1c, g));
    v128_t v = wasm_f32x4_add(wasm_f32x4_mul(b2, wasm_v128_load(c->v + i)), wasm_f32x4_mul(wasm_f32x4_mul(b2c, g), g));
    m = wasm_v128_and(m, wasm_f32x4_ge(wasm_f32x4_abs(m), tiny));
    v = wasm_v128_and(v, wasm_f32x4_ge(v, tiny));
    wasm_v128_store(c->m + i, m);
    wasm_v128_store(c->v + i, v);
    const v128_t step = wasm_f32x4_add(wasm_f32x4_div(wasm_f32x4_mul(lr, m), wasm_f32x4_add(wasm_f32x4_sqrt(v), eps)),
                                       wasm_f32x4_mul(decay, w));
    wasm_v128_store(c->w + i, wasm_f32x4_sub(w, step));
  }
#endif
  for (; i < e; ++i) {
    const float g = c->g[i];
    float m = c->b1 * c->m[i] + (1.f - c->b1) * g;
    float v = c->b2 * c->v[i] + (1.f - c->b2) * g * g;
    if (!(std::fabs(m) >= kTiny)) m = 0.f;
    if (!(v >= kTiny)) v = 0.f;
    c->m[i] = m;
    c->v[i] = v;
    c->w[i] -= c->lr_t * m / (std::sqrt(v) + c->eps) + c->decay * c->w[i];
  }
}

}  // namespace

void softmax_rows(float* x, size_t n, size_t c) {
  for (size_t r = 0; r < n; ++r) {
    float* row = x + r * c;
    const float mx = *std::max_element(row, row + c);
    float sum = 0;
    for (size_t j = 0; j < c; ++j) sum += row[j] = std::exp(row[j] - mx);
    for (size_t j = 0; j < c; ++j) row[j] /= sum;
  }
}

Head::Head(int in, int hidden, int classes, uint64_t seed) : in_(in), hidden_(hidden), classes_(classes) {
  if (classes < 2) throw Error("a classifier needs at least 2 classes (got " + std::to_string(classes) + ")");
  if (size_t(classes) > limits::kMaxClasses)
    throw Error("too many classes (" + std::to_string(classes) + "); the limit is " + std::to_string(limits::kMaxClasses));
  Rng rng(seed);
  w1_.assign(size_t(hidden) * in + kSlack, 0.f);
  w2_.assign(size_t(classes) * hidden + kSlack, 0.f);
  glorot(w1_, in, hidden, rng);
  glorot(w2_, hidden, classes, rng);
  b1_.assign(hidden, 0.f);
  b2_.assign(classes, 0.f);
}

void Head::forward(const float* x, size_t n, float* h, float* logits, pthreadpool_t pool) const {
  matmul(x, w1_.data(), h, n, in_, hidden_, true, pool);
  for (size_t r = 0; r < n; ++r)
    for (int j = 0; j < hidden_; ++j) h[r * hidden_ + j] = std::max(0.f, h[r * hidden_ + j] + b1_[j]);
  matmul(h, w2_.data(), logits, n, hidden_, classes_, true, pool);
  for (size_t r = 0; r < n; ++r)
    for (int j = 0; j < classes_; ++j) logits[r * classes_ + j] = scale_ * (logits[r * classes_ + j] + b2_[j]);
  if (units_ == 0) return;
  const size_t D = size_t(in_), U = size_t(units_), C = size_t(classes_);
  std::vector<float> xn(D), u(U);
  for (size_t r = 0; r < n; ++r) {
    residual_input(x + r * D, 1, D, center_.data(), xn.data());
    for (size_t k = 0; k < U; ++k) {
      float s = rb_[k];
      for (size_t j = 0; j < D; ++j) s += rw_[k * D + j] * xn[j];
      u[k] = s;
    }
    for (size_t c = 0; c < C; ++c)
      for (size_t k = 0; k < U; ++k) logits[r * C + c] += rout_[c * U + k] * u[k];
  }
}

std::vector<float> Head::input_gradient(const float* x, int cls) const {
  if (cls < 0 || cls >= classes_) throw Error("no class " + std::to_string(cls) + " in this head");
  const size_t D = size_t(in_), H = size_t(hidden_);
  // score = scale·(w2[cls]·relu(w1·x + b1) + b2[cls]) + Σ_k out[cls,k]·(rw[k]·x̂ + rb[k]), x̂ = (x − c)/|x − c|
  std::vector<float> g(D, 0.f);
  for (size_t j = 0; j < H; ++j) {
    double pre = b1_[j];
    const float* w = w1_.data() + j * D;
    for (size_t i = 0; i < D; ++i) pre += double(w[i]) * x[i];
    if (pre <= 0) continue;
    const float a = scale_ * w2_[size_t(cls) * H + j];
    for (size_t i = 0; i < D; ++i) g[i] += a * w[i];
  }
  if (units_ == 0) return g;
  // through the unit-length input: d x̂/d x = (I − x̂ x̂ᵀ)/|x − c|
  std::vector<float> a(D, 0.f);
  for (size_t k = 0; k < size_t(units_); ++k) {
    const float o = rout_[size_t(cls) * units_ + k];
    for (size_t i = 0; i < D; ++i) a[i] += o * rw_[k * D + i];
  }
  double len = 0, dot = 0;
  std::vector<float> xn(D);
  for (size_t i = 0; i < D; ++i) {
    xn[i] = x[i] - center_[i];
    len += double(xn[i]) * xn[i];
  }
  if (len <= 0) return g;
  len = std::sqrt(len);
  for (size_t i = 0; i < D; ++i) {
    xn[i] = float(xn[i] / len);
    dot += double(xn[i]) * a[i];
  }
  for (size_t i = 0; i < D; ++i) g[i] += float((a[i] - xn[i] * dot) / len);
  return g;
}

std::vector<float> Head::predict(const float* x, size_t n, pthreadpool_t pool) const {
  auto p = logits(x, n, pool);
  softmax_rows(p.data(), n, size_t(classes_));
  return p;
}

std::vector<float> Head::logits(const float* x, size_t n, pthreadpool_t pool) const {
  if (classes_ == 0) throw Error("no classifier head is loaded");
  std::vector<float> out;
  const size_t chunk = 256;
  PaddedBuffer xin, h, z;
  for (size_t b = 0; b < n; b += chunk) {
    const size_t m = std::min(chunk, n - b);
    xin.resize(m * in_);
    std::memcpy(xin.data(), x + b * in_, m * in_ * sizeof(float));
    h.resize(m * hidden_);
    z.resize(m * classes_);
    forward(xin.data(), m, h.data(), z.data(), pool);
    out.insert(out.end(), z.data(), z.data() + m * classes_);
  }
  return out;
}

Evaluation Head::evaluate(const FeatureSet& d, pthreadpool_t pool) const {
  Evaluation e;
  e.confusion.assign(classes_, std::vector<int>(classes_, 0));
  if (d.n == 0) return e;
  auto p = predict(d.features, d.n, pool);
  size_t correct = 0;
  for (size_t i = 0; i < d.n; ++i) {
    const float* row = &p[i * classes_];
    const int pred = int(std::max_element(row, row + classes_) - row), y = d.labels[i];
    correct += pred == y;
    e.loss -= std::log(std::max(row[y], 1e-12f));
    e.confusion[y][pred]++;
  }
  e.loss /= double(d.n);
  e.accuracy = double(correct) / double(d.n);
  return e;
}

namespace {

// One run of Head::train: the optimiser's state, the batch buffers and the running numbers. The
// weights are the head's own (trained in place).
class Trainer {
 public:
  struct Weights {
    std::vector<float>&w1, &b1, &w2, &b2;
  };
  Trainer(const Head& head, Weights w, const FeatureSet& tr, const TrainOptions& opt, pthreadpool_t pool);
  std::vector<EpochStats> run(const FeatureSet* val, const std::function<bool(const EpochStats&)>& on_epoch,
                              const std::function<void(size_t, size_t)>& on_batch);

 private:
  float gather(size_t start, size_t m);
  void forward(size_t m);
  void loss_gradient(size_t start, size_t m, float lam);
  void backward(size_t m);
  void adam_step();
  void accumulate_average();
  void finish();

  const Head& head_;
  Weights w_;
  const FeatureSet& tr_;
  const TrainOptions& opt_;
  pthreadpool_t pool_;
  const size_t B, H, C, D;
  AdamSlot a_w1, a_b1, a_w2, a_b2;
  std::vector<float> g_w1, g_b1, g_w2, g_b2;
  PaddedBuffer x, h, hT, logits, dlog, dlogT, dh, dhT;
  std::vector<float> mask;
  std::vector<float> first_row;  // mixup: the batch's first example, before blending
  std::vector<size_t> order;
  Rng rng;
  size_t step = 0, total_steps;
  double loss_sum = 0;
  size_t correct = 0;
  double best_val = -1;
  std::vector<float> best_w1, best_b1, best_w2, best_b2;
  std::vector<float> avg_w1, avg_b1, avg_w2, avg_b2;  // sums for weight averaging
  int averaged = 0;
};

Trainer::Trainer(const Head& head, Weights w, const FeatureSet& tr, const TrainOptions& opt, pthreadpool_t pool)
    : head_(head), w_(w), tr_(tr), opt_(opt), pool_(pool), B(size_t(opt.batch_size)), H(size_t(head.hidden())),
      C(size_t(head.classes())), D(size_t(head.in())), g_w1(H * D), g_b1(H), g_w2(C * H), g_b2(C), mask(B * H, 1.f),
      first_row(opt.mixup > 0 ? D : 0), order(tr.n), rng(opt.seed) {
  a_w1.init(H * D); a_b1.init(H); a_w2.init(C * H); a_b2.init(C);
  x.resize(B * D); h.resize(B * H); hT.resize(H * B); logits.resize(B * C); dlog.resize(B * C); dlogT.resize(C * B);
  dh.resize(B * H); dhT.resize(H * B);
  std::iota(order.begin(), order.end(), 0);
  total_steps = (tr.n + B - 1) / B * size_t(opt.epochs);
}

std::vector<EpochStats> Trainer::run(const FeatureSet* val, const std::function<bool(const EpochStats&)>& on_epoch,
                                     const std::function<void(size_t, size_t)>& on_batch) {
  std::vector<EpochStats> history;
  for (int epoch = 1; epoch <= opt_.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = tr_.n - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    loss_sum = 0;
    correct = 0;
    for (size_t start = 0; start < tr_.n; start += B) {
      const size_t m = std::min(B, tr_.n - start);
      const float lam = gather(start, m);
      forward(m);
      loss_gradient(start, m, lam);
      backward(m);
      adam_step();
      if (on_batch) on_batch(step, total_steps);
    }
    if (opt_.average_last > 0 && epoch > opt_.epochs - opt_.average_last) accumulate_average();
    EpochStats s;
    s.epoch = epoch;
    s.loss = loss_sum / double(tr_.n);
    s.accuracy = double(correct) / double(tr_.n);
    if (val && val->n) {
      Evaluation e = head_.evaluate(*val, pool_);
      s.has_val = true;
      s.val_loss = e.loss;
      s.val_accuracy = e.accuracy;
      if (opt_.keep_best && e.accuracy > best_val) {
        best_val = e.accuracy;
        best_w1 = w_.w1; best_b1 = w_.b1; best_w2 = w_.w2; best_b2 = w_.b2;
      }
    }
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back(s);
    if (on_epoch && !on_epoch(s)) break;
  }
  finish();
  return history;
}

// The batch's rows into x; with mixup, example r blended with r + 1 (the last with the first).
// Returns the blend's weight λ (1: none).
float Trainer::gather(size_t start, size_t m) {
  for (size_t r = 0; r < m; ++r) std::memcpy(x.data() + r * D, tr_.features + order[start + r] * D, D * sizeof(float));
  float lam = 1.f;
  if (opt_.mixup > 0 && m > 1) {
    lam = 1.f - 0.5f * opt_.mixup * rng.uniform();
    std::memcpy(first_row.data(), x.data(), D * sizeof(float));
    for (size_t r = 0; r < m; ++r) {
      const float* other = r + 1 < m ? x.data() + (r + 1) * D : first_row.data();
      float* row = x.data() + r * D;
      for (size_t k = 0; k < D; ++k) row[k] = lam * row[k] + (1.f - lam) * other[k];
    }
  }
  return lam;
}

// hᵀ = W1·xᵀ rather than h = x·W1ᵀ: XNNPACK packs the right-hand matrix on every call, and packing
// x (m×2048) instead of W1 (512×2048) made training ~30 % faster. Then dropout, logits, softmax.
void Trainer::forward(size_t m) {
  matmul(w_.w1.data(), x.data(), hT.data(), H, D, m, true, pool_);
  const float keep = 1.f - opt_.dropout;
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < H; ++j) {
      float& v = h.data()[r * H + j];
      v = std::max(0.f, hT.data()[j * m + r] + w_.b1[j]);
      if (opt_.dropout > 0) {
        mask[r * H + j] = rng.uniform() < keep ? 1.f / keep : 0.f;
        v *= mask[r * H + j];
      }
    }
  matmul(h.data(), w_.w2.data(), logits.data(), m, H, C, true, pool_);
  for (size_t r = 0; r < m; ++r) {
    float* row = logits.data() + r * C;
    for (size_t j = 0; j < C; ++j) row[j] += w_.b2[j];
  }
  softmax_rows(logits.data(), m, C);
}

// The loss (smoothed, mixed targets) and d(loss)/d(logits) = (p - target) / m.
void Trainer::loss_gradient(size_t start, size_t m, float lam) {
  const float smooth = opt_.label_smoothing;
  for (size_t r = 0; r < m; ++r) {
    const float* p = logits.data() + r * C;
    const int y = tr_.labels[order[start + r]], y_mix = tr_.labels[order[start + (r + 1 < m ? r + 1 : 0)]];
    const size_t pred = size_t(std::max_element(p, p + C) - p);
    correct += pred == size_t(y);
    for (size_t j = 0; j < C; ++j) {
      const float t = lam * (j == size_t(y) ? 1.f - smooth : 0.f) + (1.f - lam) * (j == size_t(y_mix) ? 1.f - smooth : 0.f) +
                      smooth / float(C);
      if (t > 0) loss_sum -= t * std::log(std::max(p[j], 1e-12f));
      dlog.data()[r * C + j] = (p[j] - t) / float(m);
    }
  }
}

// dW2 = dlogᵀ·h, db2 = Σ dlog, dh = dlog·W2, relu/dropout mask, dW1 = dhᵀ·x
void Trainer::backward(size_t m) {
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < C; ++j) dlogT.data()[j * m + r] = dlog.data()[r * C + j];
  matmul(dlogT.data(), h.data(), g_w2.data(), C, m, H, false, pool_);
  std::fill(g_b2.begin(), g_b2.end(), 0.f);
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < C; ++j) g_b2[j] += dlog.data()[r * C + j];
  matmul(dlog.data(), w_.w2.data(), dh.data(), m, C, H, false, pool_);
  std::fill(g_b1.begin(), g_b1.end(), 0.f);
  for (size_t r = 0; r < m; ++r)
    for (size_t j = 0; j < H; ++j) {
      float g = h.data()[r * H + j] > 0 ? dh.data()[r * H + j] : 0.f;
      if (opt_.dropout > 0) g *= mask[r * H + j];
      dhT.data()[j * m + r] = g;
      g_b1[j] += g;
    }
  matmul(dhT.data(), x.data(), g_w1.data(), H, m, D, false, pool_);
}

// Adam with Keras' bias correction folded into the step size
void Trainer::adam_step() {
  ++step;
  const double t = double(step);
  const double lr = opt_.cosine_decay ? opt_.learning_rate * 0.5 * (1.0 + std::cos(3.14159265358979323846 * double(step - 1) / double(total_steps)))
                                      : double(opt_.learning_rate);
  const float lr_t = float(lr * std::sqrt(1.0 - std::pow(opt_.beta2, t)) / (1.0 - std::pow(opt_.beta1, t)));
  const float decay = float(lr * opt_.weight_decay);
  auto update = [&](std::vector<float>& w, const std::vector<float>& g, AdamSlot& s, float lr_t, float decay) {
    AdamCtx c{w.data(), g.data(), s.m.data(), s.v.data(), lr_t, opt_.beta1, opt_.beta2, opt_.epsilon, decay};
    parallel_for(pool_, g.size(), adam_range, &c);
  };
  update(w_.w1, g_w1, a_w1, lr_t, decay);
  update(w_.b1, g_b1, a_b1, lr_t, 0.f);
  update(w_.w2, g_w2, a_w2, lr_t, decay);
  update(w_.b2, g_b2, a_b2, lr_t, 0.f);
}

void Trainer::accumulate_average() {
  auto add = [](std::vector<float>& sum, const std::vector<float>& w) {
    if (sum.empty()) sum.assign(w.size(), 0.f);
    for (size_t i = 0; i < w.size(); ++i) sum[i] += w[i];
  };
  add(avg_w1, w_.w1); add(avg_b1, w_.b1); add(avg_w2, w_.w2); add(avg_b2, w_.b2);
  ++averaged;
}

// The best epoch's weights, or the mean of the last epochs' (an early stop by on_epoch averages
// what it reached).
void Trainer::finish() {
  if (opt_.keep_best && !best_w1.empty()) {
    w_.w1 = best_w1; w_.b1 = best_b1; w_.w2 = best_w2; w_.b2 = best_b2;
  }
  if (averaged > 0) {
    auto mean = [&](std::vector<float>& w, const std::vector<float>& sum) {
      for (size_t i = 0; i < w.size(); ++i) w[i] = sum[i] / float(averaged);
    };
    mean(w_.w1, avg_w1); mean(w_.b1, avg_b1); mean(w_.w2, avg_w2); mean(w_.b2, avg_b2);
  }
}

}  // namespace

std::vector<EpochStats> Head::train(const FeatureSet& tr, const FeatureSet* val, const TrainOptions& opt,
                                    const std::function<bool(const EpochStats&)>& on_epoch,
                                    const std::function<void(size_t, size_t)>& on_batch, pthreadpool_t pool) {
  if (tr.dim != size_t(in_)) throw Error("training features have " + std::to_string(tr.dim) + " values, the head expects " + std::to_string(in_));
  if (tr.n == 0) throw Error("no training examples");
  if (units_ > 0) throw Error("this head has taught residual units; teach it (petal teach) or train a new head");
  if (tr.n > limits::kMaxTrainExamples)
    throw Error("too many training examples (" + std::to_string(tr.n) + "); the limit is " + std::to_string(limits::kMaxTrainExamples));
  for (size_t i = 0; i < tr.n; ++i)
    if (tr.labels[i] < 0 || tr.labels[i] >= classes_) throw Error("a training label is outside 0.." + std::to_string(classes_ - 1));
  if (opt.batch_size < 1 || opt.epochs < 1) throw Error("epochs and batch size must be at least 1");
  if (opt.average_last < 0 || opt.average_last > opt.epochs)
    throw Error("weight averaging needs between 1 and " + std::to_string(opt.epochs) + " epochs (got " + std::to_string(opt.average_last) + ")");
  if (opt.average_last > 0 && opt.keep_best) throw Error("keep the best epoch or average the last epochs, not both");
  if (!(opt.mixup >= 0.f && opt.mixup <= 1.f)) throw Error("mixup must be between 0 and 1 (got " + std::to_string(opt.mixup) + ")");
  return Trainer(*this, {w1_, b1_, w2_, b2_}, tr, opt, pool).run(val, on_epoch, on_batch);
}

void Head::add_class(const float* weights, float bias) {
  if (size_t(classes_) + 1 > limits::kMaxClasses)
    throw Error("too many classes (" + std::to_string(classes_ + 1) + "); the limit is " + std::to_string(limits::kMaxClasses));
  w2_.resize(size_t(classes_) * hidden_);  // drop the slack, append the row, restore the slack
  w2_.insert(w2_.end(), weights, weights + hidden_);
  w2_.resize(w2_.size() + kSlack, 0.f);
  b2_.push_back(bias);
  rout_.resize(rout_.size() + size_t(units_), 0.f);  // the new class takes nothing from existing units
  ++classes_;
}

Head Head::without_units_of(const std::vector<bool>& classes) const {
  Head h = *this;
  const size_t U = size_t(units_), C = size_t(classes_), D = size_t(in_);
  std::vector<size_t> keep;
  for (size_t u = 0; u < U; ++u) {
    bool feeds = false;
    for (size_t c = 0; c < C && c < classes.size(); ++c) feeds |= classes[c] && rout_[c * U + u] != 0.f;
    if (!feeds) keep.push_back(u);
  }
  const size_t K = keep.size();
  h.rw_.clear();
  h.rb_.clear();
  h.rout_.assign(C * K, 0.f);
  for (size_t k = 0; k < K; ++k) {
    h.rw_.insert(h.rw_.end(), rw_.begin() + keep[k] * D, rw_.begin() + (keep[k] + 1) * D);
    h.rb_.push_back(rb_[keep[k]]);
    for (size_t c = 0; c < C; ++c) h.rout_[c * K + k] = rout_[c * U + keep[k]];
  }
  h.units_ = int(K);
  return h;
}

void Head::residual_input(const float* x, size_t n, size_t dim, const float* center, float* out) {
  for (size_t r = 0; r < n; ++r) {
    double len = 0;
    for (size_t j = 0; j < dim; ++j) {
      const float v = x[r * dim + j] - center[j];
      out[r * dim + j] = v;
      len += double(v) * v;
    }
    const float inv = len > 0 ? float(1.0 / std::sqrt(len)) : 0.f;
    for (size_t j = 0; j < dim; ++j) out[r * dim + j] *= inv;
  }
}

void Head::add_residual_units(size_t n, const float* weights, const float* biases, const float* out, const std::vector<float>& center) {
  if (units_ == 0) {
    if (center.size() != size_t(in_)) throw Error("residual units need a center of " + std::to_string(in_) + " values");
    center_ = center;
  }
  const size_t U = size_t(units_), C = size_t(classes_);
  rw_.insert(rw_.end(), weights, weights + n * size_t(in_));
  rb_.insert(rb_.end(), biases, biases + n);
  std::vector<float> ro(C * (U + n));
  for (size_t c = 0; c < C; ++c) {
    for (size_t u = 0; u < U; ++u) ro[c * (U + n) + u] = rout_[c * U + u];
    for (size_t u = 0; u < n; ++u) ro[c * (U + n) + U + u] = out[c * n + u];
  }
  rout_ = std::move(ro);
  units_ += int(n);
}

void Head::save(Bundle& b) const {
  auto put = [&](const std::string& name, std::vector<size_t> shape, const std::vector<float>& d) {
    Tensor t;
    t.shape = std::move(shape);
    t.data.assign(d.begin(), d.begin() + t.numel());
    b.tensors[name] = std::move(t);
  };
  put("head.dense1.weight", {size_t(hidden_), size_t(in_)}, w1_);
  put("head.dense1.bias", {size_t(hidden_)}, b1_);
  put("head.dense2.weight", {size_t(classes_), size_t(hidden_)}, w2_);
  put("head.dense2.bias", {size_t(classes_)}, b2_);
  if (units_ == 0) return;
  put("head.residual.weight", {size_t(units_), size_t(in_)}, rw_);
  put("head.residual.bias", {size_t(units_)}, rb_);
  put("head.residual.out", {size_t(classes_), size_t(units_)}, rout_);
  put("head.residual.center", {size_t(in_)}, center_);
  put("head.residual.base_scale", {1}, {scale_});
}

Head Head::load(const Bundle& b) {
  if (!b.has("head.dense1.weight"))
    throw Error("the model bundle has no classifier head; train one (petal train) or use a full model bundle");
  const Tensor& w1 = b.get("head.dense1.weight");
  const Tensor& w2 = b.get("head.dense2.weight");
  if (w1.shape.size() != 2 || w2.shape.size() != 2 || w2.shape[1] != w1.shape[0])
    throw Error("the model bundle's head tensors have inconsistent shapes");
  Head h;
  h.hidden_ = int(w1.shape[0]);
  h.in_ = int(w1.shape[1]);
  h.classes_ = int(w2.shape[0]);
  if (h.classes_ < 2 || size_t(h.classes_) > limits::kMaxClasses) throw Error("the model bundle's head has an invalid class count");
  h.w1_ = w1.data;
  h.w1_.resize(w1.data.size() + kSlack, 0.f);
  h.b1_ = b.get("head.dense1.bias", {size_t(h.hidden_)}).data;
  h.w2_ = w2.data;
  h.w2_.resize(w2.data.size() + kSlack, 0.f);
  h.b2_ = b.get("head.dense2.bias", {size_t(h.classes_)}).data;
  if (b.has("head.residual.weight")) {
    const Tensor& rw = b.get("head.residual.weight");
    if (rw.shape.size() != 2 || rw.shape[1] != size_t(h.in_) || rw.shape[0] == 0 || rw.shape[0] > limits::kMaxClasses * 64)
      throw Error("the model bundle's residual units have an invalid shape");
    const size_t U = rw.shape[0];
    h.units_ = int(U);
    h.rw_ = rw.data;
    h.rb_ = b.get("head.residual.bias", {U}).data;
    h.rout_ = b.get("head.residual.out", {size_t(h.classes_), U}).data;
    h.center_ = b.get("head.residual.center", {size_t(h.in_)}).data;
    h.scale_ = b.get("head.residual.base_scale", {1}).data[0];
    if (!(h.scale_ > 0.f && h.scale_ <= 1.f)) throw Error("the model bundle's residual base_scale must be in (0, 1]");
  }
  return h;
}

}  // namespace petal
