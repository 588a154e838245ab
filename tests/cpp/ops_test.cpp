// Every operator path of the backbone (wasm/backbone.*) on small random graphs, against a plain
// reference written here, in the manner of ncnn's per-layer tests: direct convolution, max pooling,
// add, ReLU, global average pooling and dense, in double precision, straight from the graph's
// definition (unfused, no Winograd, no int8). No model file and no data: each graph and its
// weights are made by the test, and the whole suite runs in about a second.
//
// Tolerances. Next to each reference value the reference carries a model of how far a correct
// engine may be from it: the variance of its deviation, propagated op by op from each rounding
// (ReLU, max pooling and saturation cannot widen a deviation; a convolution sums its inputs'
// variances weighted by the squared weights). An element fails beyond kSigmas standard deviations,
// and a whole output fails when its deviations' RMS exceeds the model's by kRmsSlack.
//  - fp32: a dot product's roundings add up to about u·Σ|w·x| (u = 2^-24; partial sums of terms of
//    random signs); a sum of m terms of one sign (the average pool) √m times that. kFp32Slack
//    covers Winograd F(2x2, 3x3), whose transforms add a few roundings of their own. This model
//    overestimates: fp32 outputs come out within 0.05 of its RMS.
//  - int8, both modes: the weights are symmetric per output channel (w ≈ s·q, |q| ≤ 127); their
//    rounding is a known error, Σ(ŵ − w)·x, computed from the rounding the engine does.
//  - QD8 (dynamic): each convolution's input is quantised per image to 256 steps over its range
//    (and 0): a deviation uniform within half a step, of variance step²/12.
//  - QS8 (static): every value has the quantisation of the range calibration recorded for it
//    (calibrate_int8 on the test's images, as `petal quantize --calibrate` on photos): each
//    requantisation adds step²/12, values outside the range saturate (the reference saturates too),
//    and the int32 bias is rounded to steps of input step × weight scale.
//  - the average pool of int8 values: the deviations of its inputs taken as fully correlated (one
//    weight's rounding moves every pixel alike).
// The tolerances come out at 1e-5..5e-5 of the values (RMS) in fp32 and 3..8 % for int8 feature
// maps (up to 20 % for static int8's pooled features); a wrong padding or a skipped residual moves
// outputs by tens of per cent and fails (both were tried once; a wrong stride or weight layout was
// not tried, and should move them at least as much). Each check
// also fails when its tolerance grows past kCapFp32 / kCapInt8 of the values.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backbone.h"
#include "bundle.h"
#include "graph.h"
#include "head.h"
#include "test_support.h"

using namespace petal;

namespace {

constexpr double kU = 1.0 / 16777216.0;  // fp32 unit roundoff, 2^-24
constexpr double kFp32Slack = 4;         // Winograd's transforms, and roundings outside the dot products
constexpr double kSigmas = 6;            // tolerance, in standard deviations of the modelled deviation
constexpr double kRmsSlack = 1.25;       // deviations' RMS over the model's (1 when it is exact)
constexpr double kCapFp32 = 1e-3, kCapInt8 = 0.3;  // largest tolerance, RMS, of the values' RMS

// ---- Small graphs with random weights ----

// A graph under construction, with its weights: ops appended one by one, each reading values by
// name; shapes are tracked so that weights get the right size.
struct Net {
  Graph graph;
  Bundle bundle;
  Rng rng;
  struct Shape {
    int h, w, c;
  };
  std::map<std::string, Shape> shapes;

  Net(int h, int w, uint64_t seed) : rng(seed) {
    graph.input_h = h;
    graph.input_w = w;
    shapes["input"] = {h, w, 3};
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * rng.uniform(); }
  void random(const std::string& name, std::vector<size_t> shape, float scale) {
    Tensor t;
    t.shape = std::move(shape);
    t.data.resize(t.numel());
    for (float& v : t.data) v = uniform(-scale, scale);
    bundle.tensors[name] = std::move(t);
  }
  const Shape& shape(const std::string& v) const { return shapes.at(v); }

  // An operation with a k x k window; `pad` is top, right, bottom, left.
  static Op windowed(Op::Kind kind, const std::string& name, const std::string& in, int k, int stride, std::array<int, 4> pad,
                     bool same) {
    Op op;
    op.kind = kind;
    op.name = name;
    op.inputs = {in};
    op.kh = op.kw = k;
    op.sh = op.sw = stride;
    op.pad = pad;
    op.same = same;
    return op;
  }
  // A convolution; `pad` is top, right, bottom, left.
  std::string conv(const std::string& name, const std::string& in, int cout, int k, int stride, std::array<int, 4> pad,
                   bool relu, bool same = false) {
    Op op = windowed(Op::Conv, name, in, k, stride, pad, same);
    op.relu = relu;
    op.cin = shape(in).c;
    op.cout = cout;
    // weights about 1/sqrt(fan-in), so that values stay about 1 deep into a graph
    random(name + ".weight", {size_t(cout), size_t(k), size_t(k), size_t(op.cin)}, 1.7f / std::sqrt(float(k * k * op.cin)));
    random(name + ".bias", {size_t(cout)}, 0.2f);
    shapes[name] = {int(op.out_h(shape(in).h)), int(op.out_w(shape(in).w)), cout};
    graph.ops.push_back(op);
    return name;
  }
  std::string max_pool(const std::string& name, const std::string& in, int k, int stride, std::array<int, 4> pad,
                       bool same = false) {
    Op op = windowed(Op::MaxPool, name, in, k, stride, pad, same);
    shapes[name] = {int(op.out_h(shape(in).h)), int(op.out_w(shape(in).w)), shape(in).c};
    graph.ops.push_back(op);
    return name;
  }
  std::string add(const std::string& name, const std::string& a, const std::string& b, bool relu) {
    Op op;
    op.kind = Op::Add;
    op.name = name;
    op.inputs = {a, b};
    op.relu = relu;
    shapes[name] = shape(a);
    graph.ops.push_back(op);
    return name;
  }
  // The global average pool giving the features (its input is the feature map), and a classifier
  // of `logits` outputs when not 0.
  void finish(const std::string& in, int logits = 0) {
    Op gap;
    gap.kind = Op::GlobalAvgPool;
    gap.name = "features";
    gap.inputs = {in};
    graph.ops.push_back(gap);
    graph.features = "features";
    graph.feature_dim = shape(in).c;
    if (logits) {
      Op fc;
      fc.kind = Op::Dense;
      fc.name = "logits";
      fc.inputs = {"features"};
      fc.cin = shape(in).c;
      fc.cout = logits;
      random("logits.weight", {size_t(logits), size_t(fc.cin)}, 1.f / std::sqrt(float(fc.cin)));
      random("logits.bias", {size_t(logits)}, 0.1f);
      graph.ops.push_back(fc);
      graph.logits = "logits";
      graph.num_logits = logits;
    }
    graph.validate();
  }
};

// `batch` random images of the graph's input size, values in [-1, 1].
std::vector<float> random_input(const Graph& g, size_t batch, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> x(batch * g.input_h * g.input_w * 3);
  for (float& v : x) v = rng.uniform() * 2 - 1;
  return x;
}

// ---- The reference ----

// A value of the reference: NHWC, each element with the bound on a correct engine's distance.
struct Value {
  int n = 0, h = 0, w = 0, c = 0;
  std::vector<double> v, var;  // the value, and the variance of a correct engine's deviation from it
  double step = 0;  // QS8: its quantisation's step
  Value() = default;
  Value(int n_, int h_, int w_, int c_) : n(n_), h(h_), w(w_), c(c_), v(size_t(n_) * h_ * w_ * c_), var(v.size()) {}
  size_t at(int b, int y, int x, int ch) const { return ((size_t(b) * h + y) * w + x) * c + ch; }
};

enum class Mode { Fp32, Qd8, Qs8 };

// The padding an op applies (top, right, bottom, left): its own, or TensorFlow's 'same'.
std::array<int, 4> padding_of(const Op& op, int in_h, int in_w) {
  if (!op.same) return op.pad;
  const int oh = int(op.out_h(in_h)), ow = int(op.out_w(in_w));
  const int th = std::max(0, (oh - 1) * op.sh + op.kh - in_h), tw = std::max(0, (ow - 1) * op.sw + op.kw - in_w);
  return {th / 2, tw - tw / 2, th - th / 2, tw / 2};
}

// The engine's int8 weights (symmetric per output channel), dequantised.
std::vector<double> int8_weights(const Tensor& t, size_t cout) {
  const size_t per = t.numel() / cout;
  std::vector<double> q(t.numel());
  for (size_t o = 0; o < cout; ++o) {
    float m = 0;
    for (size_t i = 0; i < per; ++i) m = std::max(m, std::fabs(t.data[o * per + i]));
    const float s = m > 0 ? m / 127.f : 1.f;
    for (size_t i = 0; i < per; ++i)
      q[o * per + i] = double(s) * std::lrint(std::min(127.f, std::max(-127.f, t.data[o * per + i] / s)));
  }
  return q;
}

class Reference {
 public:
  Reference(const Graph& g, const Bundle& b, Mode mode, bool int8_first_conv = false)
      : g_(g), b_(b), mode_(mode), int8_first_conv_(int8_first_conv) {
    if (mode == Mode::Qs8) ranges_ = b.get(kInt8RangesTensor, {g.ops.size() + 1, 2}).data;
  }

  // Every value of the graph for `batch` images.
  std::map<std::string, Value> run(const float* input, int batch) {
    std::map<std::string, Value> vals;
    Value in(batch, g_.input_h, g_.input_w, 3);
    for (size_t i = 0; i < in.v.size(); ++i) in.v[i] = input[i];
    if (mode_ == Mode::Qs8) requantise(in, 0);  // the input, quantised for the first convolution
    vals["input"] = in;
    for (size_t i = 0; i < g_.ops.size(); ++i) {
      const Op& op = g_.ops[i];
      const Value& x = vals.at(op.inputs[0]);
      Value y;
      switch (op.kind) {
        case Op::Conv: y = conv(op, x); break;
        case Op::MaxPool: y = max_pool(op, x); break;
        case Op::Add: y = add(x, vals.at(op.inputs[1])); break;
        case Op::GlobalAvgPool: y = mean(x); break;
        case Op::Dense: y = dense(op, x); break;
      }
      if (op.relu)
        for (double& v : y.v) v = std::max(0.0, v);
      // QS8: the convolutions' and adds' outputs take their calibrated quantisation (max pooling
      // keeps its input's)
      if (mode_ == Mode::Qs8 && (op.kind == Op::Conv || op.kind == Op::Add)) requantise(y, i + 1);
      vals[op.name] = std::move(y);
    }
    return vals;
  }

 private:
  // The rounding of an fp32 sum of terms whose magnitudes add up to `abs_sum`.
  static double fp32_var(double abs_sum) {
    const double sd = kFp32Slack * kU * abs_sum;
    return sd * sd;
  }

  Quant quant(size_t row) const { return quant_of_range(ranges_[row * 2], ranges_[row * 2 + 1]); }

  // QS8: rounding to the row's steps (uniform within half a step), saturating at its range.
  void requantise(Value& x, size_t row) const {
    const Quant q = quant(row);
    x.step = q.scale;
    const double lo = double(q.scale) * (-128 - q.zero_point), hi = double(q.scale) * (127 - q.zero_point);
    for (size_t i = 0; i < x.v.size(); ++i) {
      x.v[i] = std::min(hi, std::max(lo, x.v[i]));
      x.var[i] += double(q.scale) * q.scale / 12;
    }
  }

  Value conv(const Op& op, const Value& x) {
    const int oh = int(op.out_h(x.h)), ow = int(op.out_w(x.w));
    const std::array<int, 4> pad = padding_of(op, x.h, x.w);
    const Tensor& wt = b_.get(op.name + ".weight", {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)});
    const Tensor& bias = b_.get(op.name + ".bias", {size_t(op.cout)});
    const bool int8 = mode_ == Mode::Qs8 || (mode_ == Mode::Qd8 && (op.cin > 4 || int8_first_conv_));
    const std::vector<double> wq = int8 ? int8_weights(wt, size_t(op.cout)) : std::vector<double>(wt.data.begin(), wt.data.end());
    // the input as the convolution reads it: QD8 quantises it per image, to 256 steps over its range
    std::vector<double> in_var = x.var;
    if (mode_ == Mode::Qd8 && int8) {
      const size_t per = size_t(x.h) * x.w * x.c;
      for (int b = 0; b < x.n; ++b) {
        double lo = 0, hi = 0;
        for (size_t i = b * per; i < (b + 1) * per; ++i) lo = std::min(lo, x.v[i]), hi = std::max(hi, x.v[i]);
        const double step = (hi - lo) / 255;
        for (size_t i = b * per; i < (b + 1) * per; ++i) in_var[i] += step * step / 12;
      }
    }
    // QS8: the bias in int32 steps of input step × weight scale
    std::vector<double> bias_var(size_t(op.cout), 0.0);
    if (mode_ == Mode::Qs8) {
      const size_t per = size_t(op.kh) * op.kw * op.cin;
      for (size_t o = 0; o < size_t(op.cout); ++o) {
        float m = 0;
        for (size_t i = 0; i < per; ++i) m = std::max(m, std::fabs(wt.data[o * per + i]));
        const double step = x.step * (m > 0 ? m / 127.0 : 1.0);
        bias_var[o] = step * step / 12;
      }
    }
    Value y(x.n, oh, ow, op.cout);
    for (int b = 0; b < x.n; ++b)
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
          for (int o = 0; o < op.cout; ++o) {
            double sum = bias.data[size_t(o)], abs_sum = std::fabs(sum), var = bias_var[size_t(o)], wq_err = 0;
            for (int ky = 0; ky < op.kh; ++ky) {
              const int iy = oy * op.sh - pad[0] + ky;
              if (iy < 0 || iy >= x.h) continue;
              for (int kx = 0; kx < op.kw; ++kx) {
                const int ix = ox * op.sw - pad[3] + kx;
                if (ix < 0 || ix >= x.w) continue;
                const size_t wi = ((size_t(o) * op.kh + ky) * op.kw + kx) * op.cin, xi = x.at(b, iy, ix, 0);
                for (int c = 0; c < op.cin; ++c) {
                  const double w = wt.data[wi + c], v = x.v[xi + c];
                  sum += w * v;
                  abs_sum += std::fabs(w * v);
                  var += wq[wi + c] * wq[wi + c] * in_var[xi + c];
                  wq_err += (wq[wi + c] - w) * v;
                }
              }
            }
            const size_t yi = y.at(b, oy, ox, o);
            y.v[yi] = sum;
            y.var[yi] = var + wq_err * wq_err + fp32_var(abs_sum);
          }
    return y;
  }

  // Padding is ignored (XNNPACK pads max pooling with -inf; the importer folds only zero padding of
  // values that cannot be negative into it).
  Value max_pool(const Op& op, const Value& x) {
    const int oh = int(op.out_h(x.h)), ow = int(op.out_w(x.w));
    const std::array<int, 4> pad = padding_of(op, x.h, x.w);
    Value y(x.n, oh, ow, x.c);
    y.step = x.step;  // QS8: its input's quantisation
    for (int b = 0; b < x.n; ++b)
      for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox)
          for (int c = 0; c < x.c; ++c) {
            double m = -INFINITY, e = 0;
            for (int ky = 0; ky < op.kh; ++ky)
              for (int kx = 0; kx < op.kw; ++kx) {
                const int iy = oy * op.sh - pad[0] + ky, ix = ox * op.sw - pad[3] + kx;
                if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
                m = std::max(m, x.v[x.at(b, iy, ix, c)]);
                e = std::max(e, x.var[x.at(b, iy, ix, c)]);
              }
            y.v[y.at(b, oy, ox, c)] = m;
            y.var[y.at(b, oy, ox, c)] = e;
          }
    return y;
  }

  Value add(const Value& a, const Value& b) {
    Value y = a;
    for (size_t i = 0; i < y.v.size(); ++i) {
      y.v[i] = a.v[i] + b.v[i];
      y.var[i] = a.var[i] + b.var[i] + fp32_var(std::fabs(a.v[i]) + std::fabs(b.v[i]));
    }
    return y;
  }

  Value mean(const Value& x) {
    Value y(x.n, 1, 1, x.c);
    const double m = double(x.h) * x.w;
    for (int b = 0; b < x.n; ++b)
      for (int c = 0; c < x.c; ++c) {
        double s = 0, a = 0, e = 0;
        for (int yy = 0; yy < x.h; ++yy)
          for (int xx = 0; xx < x.w; ++xx) {
            s += x.v[x.at(b, yy, xx, c)];
            a += std::fabs(x.v[x.at(b, yy, xx, c)]);
            e += std::sqrt(x.var[x.at(b, yy, xx, c)]);
          }
        y.v[y.at(b, 0, 0, c)] = s / m;
        // the deviations fully correlated (an int8 weight's rounding moves every pixel alike); a sum
        // of same-sign terms rounds √m times worse than a dot product's of random signs
        y.var[y.at(b, 0, 0, c)] = (e / m) * (e / m) + fp32_var(std::sqrt(m) * a / m);
      }
    return y;
  }

  Value dense(const Op& op, const Value& x) {
    const Tensor& w = b_.get(op.name + ".weight", {size_t(op.cout), size_t(op.cin)});
    const Tensor& bias = b_.get(op.name + ".bias", {size_t(op.cout)});
    Value y(x.n, 1, 1, op.cout);
    for (int b = 0; b < x.n; ++b)
      for (int o = 0; o < op.cout; ++o) {
        double s = bias.data[size_t(o)], a = std::fabs(s), e = 0;
        for (int c = 0; c < op.cin; ++c) {
          const double wv = w.data[size_t(o) * op.cin + c], v = x.v[x.at(b, 0, 0, c)];
          s += wv * v;
          a += std::fabs(wv * v);
          e += wv * wv * x.var[x.at(b, 0, 0, c)];
        }
        y.v[y.at(b, 0, 0, o)] = s;
        y.var[y.at(b, 0, 0, o)] = e + fp32_var(a);
      }
    return y;
  }

  const Graph& g_;
  const Bundle& b_;
  const Mode mode_;
  const bool int8_first_conv_;
  std::vector<float> ranges_;
};

// ---- Running the engine and comparing ----

struct Config {
  size_t threads = 1;
  size_t batch = 2;
  Mode mode = Mode::Fp32;
  bool fuse_residual = true;
  bool int8_first_conv = false;
  bool profile = false;
};

std::string describe(const Config& c) {
  const char* m = c.mode == Mode::Fp32 ? "fp32" : c.mode == Mode::Qd8 ? "int8 dynamic (QD8)" : "int8 static (QS8)";
  return std::string(m) + ", " + std::to_string(c.threads) + " thread(s), batch " + std::to_string(c.batch) +
         (c.fuse_residual ? "" : ", unfused");
}

struct Outcome {
  std::vector<float> map, features, logits;
  std::vector<OpTime> ops;  // with Config::profile
};

// The engine's outputs for `input`. QS8 calibrates on the same images first, as `petal quantize
// --calibrate` does on photos.
Outcome run_engine(const Net& net, Bundle& bundle, const std::vector<float>& input, const Config& c) {
  const size_t image = size_t(net.graph.input_h) * net.graph.input_w * net.graph.input_c;
  if (input.size() != c.batch * image)
    throw std::invalid_argument("run_engine: the input holds " + std::to_string(input.size() / image) +
                                " image(s) but the config asks for batch " + std::to_string(c.batch));
  BackboneOptions o;
  o.fuse_residual = c.fuse_residual;
  o.profile = c.profile;
  o.int8_first_conv = c.int8_first_conv;
  if (c.mode == Mode::Qd8) o.int8 = o.int8_dynamic = true;
  if (c.mode == Mode::Qs8) calibrate_int8(bundle, net.graph, input.data(), c.batch, c.threads);
  Backbone bb(net.graph, bundle, c.threads, o);
  EXPECT_EQ(bb.static_int8(), c.mode == Mode::Qs8);
  Outcome r;
  r.map.resize(c.batch * bb.feature_map_size());
  r.features.resize(c.batch * size_t(net.graph.feature_dim));
  r.logits.resize(c.batch * size_t(net.graph.num_logits));
  bb.run(input.data(), c.batch, r.features.data(), r.logits.empty() ? nullptr : r.logits.data(), r.map.data());
  if (c.profile) r.ops = bb.profile();
  return r;
}

// How the engine's output fits the reference: the largest deviation in standard deviations, the
// deviations' RMS over the modelled one, and the tolerance's RMS beside the values' RMS.
struct Fit {
  double worst_sd = 0, rms_ratio = 0, tolerance_rel = 0;
};

Fit compare(const float* got, const Value& ref, const std::string& what) {
  Fit f;
  double dd = 0, var = 0, vv = 0;
  size_t reported = 0;
  for (size_t i = 0; i < ref.v.size(); ++i) {
    const double d = std::fabs(double(got[i]) - ref.v[i]), sd = std::sqrt(ref.var[i]);
    f.worst_sd = std::max(f.worst_sd, d / sd);
    dd += d * d;
    var += ref.var[i];
    vv += ref.v[i] * ref.v[i];
    if (!(d <= kSigmas * sd) && reported++ < 5) {
      const size_t ch = i % size_t(ref.c), px = i / size_t(ref.c);
      ADD_FAILURE() << what << ": element " << i << " (image " << px / (size_t(ref.h) * ref.w) << ", row "
                    << px / ref.w % ref.h << ", column " << px % ref.w << ", channel " << ch << ") is " << got[i]
                    << ", the reference " << ref.v[i] << " ± " << kSigmas * sd << " (" << d / sd << " sd)";
    }
  }
  f.rms_ratio = std::sqrt(dd / var);
  f.tolerance_rel = kSigmas * std::sqrt(var / vv);
  return f;
}

// The engine against the reference on `net` for each configuration: the feature map (every
// element of the last op before the pooling), the features and the logits. Each element within
// kSigmas standard deviations, the deviations' RMS within the modelled one, and the tolerance
// under `cap` of the values (RMS), so that a loose model cannot pass a wrong engine.
void check(const Net& net, const std::vector<Config>& configs, double cap_fp32 = kCapFp32, double cap_int8 = kCapInt8) {
  const std::string map_name = net.graph.ops[net.graph.ops.size() - (net.graph.logits.empty() ? 1 : 2)].inputs[0];
  for (const Config& c : configs) {
    const std::string what = describe(c);
    Bundle bundle = net.bundle;
    const std::vector<float> input = random_input(net.graph, c.batch, 1234 + c.batch);
    const Outcome got = run_engine(net, bundle, input, c);
    const auto vals = Reference(net.graph, bundle, c.mode, c.int8_first_conv).run(input.data(), int(c.batch));
    const double cap = c.mode == Mode::Fp32 ? cap_fp32 : cap_int8;
    for (auto [name, data] : {std::make_pair(map_name, &got.map), std::make_pair(net.graph.features, &got.features),
                              std::make_pair(net.graph.logits, &got.logits)}) {
      if (name.empty()) continue;
      const Value& ref = vals.at(name);
      ASSERT_EQ(data->size(), ref.v.size()) << what << ", " << name;
      const Fit f = compare(data->data(), ref, what + ", " + name);
      EXPECT_LE(f.rms_ratio, kRmsSlack) << what << ", " << name << ": deviations larger than modelled";
      EXPECT_LT(f.tolerance_rel, cap) << what << ", " << name << ": the tolerance is too loose to mean anything";
      if (std::getenv("PETAL_VERBOSE"))
        std::printf("  %-42s %-9s worst %5.2f sd, RMS deviation %.3f of the model's, tolerance %.1e of the values\n",
                    what.c_str(), name.c_str(), f.worst_sd, f.rms_ratio, f.tolerance_rel);
    }
  }
}

std::vector<Config> all_modes(size_t batch = 2) {
  std::vector<Config> v;
  for (Mode m : {Mode::Fp32, Mode::Qd8, Mode::Qs8})
    for (size_t threads : {1, 3}) {
      Config c;
      c.mode = m;
      c.threads = threads;
      c.batch = batch;
      v.push_back(c);
    }
  return v;
}

size_t operators_named(const std::vector<OpTime>& ops, const char* part) {
  size_t n = 0;
  for (auto& op : ops) n += op.name.find(part) != std::string::npos;
  return n;
}

}  // namespace

// 1x1, 3x3 and 7x7 convolutions, stride 1 and 2, with no, symmetric, lopsided and 'same' padding,
// on an odd-sized input (a stride-2 window then leaves pixels out at the right and the bottom).
TEST(Ops, ConvolutionsOfEveryKernelStrideAndPadding) {
  const std::vector<std::array<int, 4>> pads = {{0, 0, 0, 0}, {1, 1, 1, 1}, {0, 2, 1, 0}, {3, 1, 2, 3}};
  for (int k : {1, 3, 7})
    for (int stride : {1, 2})
      for (size_t p = 0; p <= pads.size(); ++p) {
        const bool same = p == pads.size();
        SCOPED_TRACE(std::to_string(k) + "x" + std::to_string(k) + " stride " + std::to_string(stride) +
                     (same ? " 'same'" : " pad " + std::to_string(pads[p][0]) + "," + std::to_string(pads[p][1]) + "," +
                                             std::to_string(pads[p][2]) + "," + std::to_string(pads[p][3])));
        Net net(35, 33, 100 + k * 10 + stride);
        // a 3-channel stem (fp32 in QD8, as ResNet-50's), then the convolution under test on 8 channels
        const std::string stem = net.conv("stem", "input", 8, 3, 1, {1, 1, 1, 1}, true);
        net.finish(net.conv("conv", stem, 12, k, stride, same ? std::array<int, 4>{0, 0, 0, 0} : pads[p], false, same));
        check(net, {all_modes()[0], all_modes()[2], all_modes()[4]});
      }
}

// The stem convolution on the 3-channel input itself: fp32 in QD8 unless int8_first_conv.
TEST(Ops, StemConvolutionOnTheImage) {
  Net net(45, 38, 7);
  net.finish(net.conv("stem", "input", 24, 7, 2, {3, 3, 3, 3}, true), 5);
  std::vector<Config> configs = all_modes();
  Config first = configs[2];
  first.int8_first_conv = true;
  configs.push_back(first);
  check(net, configs);
}

// Max pooling 3x3 stride 2 (ResNet-50's, padded by 1) and 2x2 stride 2 'same', on odd sizes.
TEST(Ops, MaxPooling) {
  for (bool same : {false, true}) {
    SCOPED_TRACE(same ? "2x2 'same'" : "3x3 padded");
    Net net(37, 41, 11);
    const std::string stem = net.conv("stem", "input", 16, 3, 1, {1, 1, 1, 1}, true);
    const std::string pool =
        same ? net.max_pool("pool", stem, 2, 2, {0, 0, 0, 0}, true) : net.max_pool("pool", stem, 3, 2, {1, 1, 1, 1});
    net.finish(net.conv("after", pool, 16, 1, 1, {0, 0, 0, 0}, false));
    check(net, all_modes());
  }
}

// A bottleneck block as ResNet-50's: 1x1 down, 3x3, 1x1 up, a strided 1x1 shortcut, add and ReLU;
// then an identity block whose add reads the first block's output. With the residual fusion on
// (both adds are done inside the convolutions before them: no elementwise operators are left) and
// off, against the unfused reference.
TEST(Ops, ResidualBlocksFusedAndUnfused) {
  Net net(39, 39, 21);
  const std::string stem = net.conv("stem", "input", 16, 3, 1, {1, 1, 1, 1}, true);
  const std::string a = net.conv("a", stem, 8, 1, 1, {0, 0, 0, 0}, true);
  const std::string b = net.conv("b", a, 8, 3, 2, {1, 1, 1, 1}, true);
  const std::string c = net.conv("c", b, 24, 1, 1, {0, 0, 0, 0}, false);
  const std::string s = net.conv("short", stem, 24, 1, 2, {0, 0, 0, 0}, false);
  const std::string add1 = net.add("add1", c, s, true);
  const std::string d = net.conv("d", add1, 8, 1, 1, {0, 0, 0, 0}, true);
  const std::string e = net.conv("e", d, 24, 3, 1, {1, 1, 1, 1}, false);
  net.finish(net.add("add2", add1, e, true), 4);  // the residual first this time
  std::vector<Config> configs;
  for (Config c : all_modes())
    for (bool fuse : {true, false}) {
      c.fuse_residual = fuse;
      configs.push_back(c);
    }
  check(net, configs);
  for (bool fuse : {true, false}) {
    Config c;
    c.fuse_residual = fuse;
    c.profile = true;
    Bundle bundle = net.bundle;
    const Outcome o = run_engine(net, bundle, random_input(net.graph, c.batch, 5), c);
    EXPECT_EQ(operators_named(o.ops, "Elementwise") == 0, fuse) << "fuse_residual " << fuse;
  }
}

// Winograd F(2x2, 3x3) (tools/setup/xnnpack-winograd.patch: fp32 3x3 stride-1 convolutions padded
// by 1, 32 to 256 channels in and out, at most 256 x 256) on the odd map sizes of the 180² recipe
// (45x45, 23x23) and of ResNet-50's last stage (7x7), against the direct reference: the operator
// must be the Winograd one in fp32 (and not for 31 channels, nor stride 2), and the results within
// the fp32 bound.
TEST(Ops, WinogradAtOddSizesMatchesDirectConvolution) {
  struct Case {
    int input, stride;  // a 1x1 convolution of this stride takes the input to the size under test
    int cin, cout;
    bool winograd;
  } cases[] = {
      {45, 1, 32, 48, true},    // 45x45
      {45, 2, 64, 32, true},    // 23x23
      {49, 7, 256, 256, true},  // 7x7, the largest Winograd one
      {45, 2, 31, 32, false},   // too few input channels: direct
  };
  for (const Case& k : cases) {
    Net net(k.input, k.input, 31 + k.cin);
    const std::string in = net.conv("to_size", "input", k.cin, 1, k.stride, {0, 0, 0, 0}, true);
    const int size = net.shape(in).h;
    SCOPED_TRACE(std::to_string(size) + "x" + std::to_string(size) + ", " + std::to_string(k.cin) + " -> " + std::to_string(k.cout));
    net.finish(net.conv("wino", in, k.cout, 3, 1, {1, 1, 1, 1}, true));
    std::vector<Config> configs;
    for (size_t threads : {1, 3}) {
      Config c;
      c.threads = threads;
      c.profile = true;
      configs.push_back(c);
    }
    check(net, configs);
    Bundle bundle = net.bundle;
    Config c;
    c.profile = true;
    c.batch = 1;
    const Outcome o = run_engine(net, bundle, random_input(net.graph, c.batch, 3), c);
    EXPECT_EQ(operators_named(o.ops, "Winograd"), k.winograd ? 1u : 0u);
  }
}

// A Winograd-shaped convolution (3x3 stride 1, 32 channels, no ReLU) whose output only a residual
// add reads. Unfused it runs as Winograd and matches.
Net winograd_then_add() {
  Net net(45, 45, 77);
  const std::string in = net.conv("to_size", "input", 32, 1, 2, {0, 0, 0, 0}, true);
  const std::string c = net.conv("wino", in, 32, 3, 1, {1, 1, 1, 1}, false);
  net.finish(net.add("add", c, in, true));
  return net;
}

TEST(Ops, ResidualAddAfterAWinogradConvolutionUnfused) {
  Config c;
  c.fuse_residual = false;
  check(winograd_then_add(), {c});
}

// With the fusion on, XNNPACK's rewrite (xnnpack-residual-add.patch) declines a convolution that
// runs as Winograd, which has no residual epilogue: the convolution stays Winograd, the add runs on
// its own, and the result matches. (When the fusion was planned in Petal it fused this add and
// xnn_setup_runtime failed.)
TEST(Ops, ResidualAddAfterAWinogradConvolutionIsNotFused) {
  Config c;
  check(winograd_then_add(), {c});
  c.profile = true;
  c.batch = 1;
  const Net net = winograd_then_add();
  Bundle bundle = net.bundle;
  const Outcome o = run_engine(net, bundle, random_input(net.graph, c.batch, 3), c);
  EXPECT_EQ(operators_named(o.ops, "Winograd"), 1u);
  EXPECT_EQ(operators_named(o.ops, "Binary Elementwise"), 1u);  // the add (its ReLU is a unary one)
}
