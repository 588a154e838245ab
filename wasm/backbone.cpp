#include "backbone.h"

#include <xnnpack.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "error.h"

namespace petal {

namespace {
constexpr uint32_t kInputId = 0, kFeaturesId = 1, kLogitsId = 2, kMapId = 3, kFirstRecordedId = 4;

void check(xnn_status s, const std::string& what) {
  if (s == xnn_status_out_of_memory) throw Error(std::string(kOutOfMemoryMessage) + " (XNNPACK could not " + what + ")");
  if (s != xnn_status_success) throw Error("XNNPACK failed to " + what + " (status " + std::to_string(int(s)) + ")");
}

void init_xnnpack() {
  static std::once_flag once;
  static xnn_status status;
  std::call_once(once, [] { status = xnn_initialize(nullptr); });
  if (status == xnn_status_unsupported_hardware)
    throw Error("this processor lacks the instructions XNNPACK needs (SSE2 natively, SIMD128 in WebAssembly)");
  check(status, "initialise");
}

struct Shape {
  int h, w, c;
};

// The output shape of a convolution or max pooling (not checked: the builder refuses h, w <= 0).
Shape window_out_shape(const Op& op, const Shape& is) {
  return Shape{int(op.out_h(is.h)), int(op.out_w(is.w)), op.kind == Op::Conv ? op.cout : is.c};
}

// The ops whose output static int8 quantises (and calibration records).
bool quantisable(const Op& op) { return op.kind == Op::Conv || op.kind == Op::MaxPool || op.kind == Op::Add; }

// --- The subgraph builder. ---
// How the convolutions compute (BackboneOptions::int8 and record_ranges):
//  - Fp32: every value fp32, weights read straight from the bundle.
//  - Qd8 (int8 dynamic): int8 weights, each convolution's input quantised per image; fp32 between.
//  - Qs8 (int8 static): convolutions, max pooling and adds read and write int8 with the bundle's
//    calibrated ranges; fp32 at the input, the pooled features and the classifier.
//  - Record (calibration): fp32, every quantisable op's output an external output to measure.
enum class Mode { Fp32, Qd8, Qs8, Record };

// Tensor data XNNPACK reads while the runtime lives (the int8 backbone re-creates it).
struct QuantStore {
  std::vector<std::vector<int8_t>> weights;  // int8 weights
  std::vector<std::vector<float>> scales;    // weight scales, and QS8 bias scales
  std::vector<std::vector<int32_t>> biases;  // QS8 int32 biases
};

// A value of the subgraph: its id, shape and, when int8 (QS8), its quantisation.
struct Val {
  uint32_t id;
  Shape shape;
  bool q = false;
  Quant quant;
  int row = 0;  // its row in the calibrated ranges
};

// Where an op's output goes: an external output (features, logits, feature map, a recorded
// range), or nowhere outside the subgraph.
struct Outlet {
  uint32_t ext = XNN_INVALID_VALUE_ID;
  uint32_t flags = 0;
  bool is_map = false;
  bool recorded = false;
};

struct ConvOperands {
  uint32_t x, w, b;
};

class SubgraphBuilder {
 public:
  struct RecordedOp {
    size_t op, numel;
  };
  struct Result {
    Backbone::MapShape map;
    std::vector<RecordedOp> recorded;  // Record: the op outputs kFirstRecordedId + k
  };
  SubgraphBuilder(xnn_subgraph_t sg, const Graph& graph, const Bundle& bundle, const BackboneOptions& options, Mode mode,
                  std::vector<float> ranges, std::vector<std::vector<float>>& float_copies, QuantStore& store);
  Result build();

 private:
  uint32_t define(const std::vector<size_t>& dims, const float* data, uint32_t ext, uint32_t flags);
  uint32_t define_q(const std::vector<size_t>& dims, const Quant& qp);
  uint32_t output(size_t i, const Shape& os, const Outlet& o, const Quant* qp);
  Outlet outlet(size_t i);
  // weights
  uint32_t static_tensor(const std::string& name, const std::vector<size_t>& shape);
  std::pair<uint32_t, const std::vector<float>*> int8_filter(const std::string& name, const std::vector<size_t>& shape);
  uint32_t int32_bias(const std::string& name, size_t cout, float input_scale, const std::vector<float>& wscale);
  // conversions between fp32 and int8 values
  uint32_t quantise_dynamic(uint32_t fp32_id, const Shape& sh);
  uint32_t to_fp32(const Val& v, uint32_t ext, uint32_t flags);
  Val to_int8(const Val& v);
  Quant range_quant(size_t row) const { return quant_of_range(ranges_[row * 2], ranges_[row * 2 + 1]); }
  // a convolution's input, weights and bias, by mode
  ConvOperands conv_operands_fp32(const Op& op, const Val& in);
  ConvOperands conv_operands_qd8(const Op& op, const Val& in);
  ConvOperands conv_operands_qs8(const Op& op, const Val& in);
  // the ops
  Val define_op(size_t i, const Val& in0, const Outlet& o);
  Val conv(size_t i, const Val& in, const Outlet& o);
  Val max_pool(size_t i, const Val& in, const Outlet& o);
  Val add(size_t i, const Val& in, const Outlet& o);
  Val global_avg_pool(size_t i, const Val& in, const Outlet& o);
  Val dense(size_t i, const Val& in, const Outlet& o);

  xnn_subgraph_t sg_;
  const Graph& graph_;
  const Bundle& bundle_;
  const BackboneOptions& options_;
  const Mode mode_;
  const std::vector<float> ranges_;  // Qs8: kInt8RangesTensor
  std::vector<std::vector<float>>& float_copies_;
  QuantStore& store_;
  std::map<std::string, Val> vals_;
  std::map<uint32_t, uint32_t> quantised_;  // Qd8: fp32 value -> its per-image quantisation
  std::map<uint32_t, uint32_t> converted_;  // Qs8: value -> its conversion to the other type
  std::string map_name_;                    // the feature map's value, when it is an output
  uint32_t conv_flags_ = 0;                 // our XNNPACK patches' switches (options.winograd, loop_order, fuse_residual)
  Result result_;
};

SubgraphBuilder::SubgraphBuilder(xnn_subgraph_t sg, const Graph& graph, const Bundle& bundle, const BackboneOptions& options,
                                 Mode mode, std::vector<float> ranges, std::vector<std::vector<float>>& float_copies,
                                 QuantStore& store)
    : sg_(sg), graph_(graph), bundle_(bundle), options_(options), mode_(mode), ranges_(std::move(ranges)),
      float_copies_(float_copies), store_(store) {
  if (!options.winograd) conv_flags_ |= XNN_FLAG_PETAL_NO_WINOGRAD;
  if (!options.fuse_residual) conv_flags_ |= XNN_FLAG_PETAL_NO_RESIDUAL_FUSION;
  if (options.loop_order == BackboneOptions::LoopOrder::Xnnpack) conv_flags_ |= XNN_FLAG_PETAL_XNNPACK_LOOP_ORDER;
  if (options.loop_order == BackboneOptions::LoopOrder::WeightsOuter) conv_flags_ |= XNN_FLAG_PETAL_WEIGHTS_OUTER_ALWAYS;
  float_copies_.reserve(graph.ops.size() * 2);
  store_.weights.reserve(graph.ops.size());
  store_.scales.reserve(graph.ops.size() * 2);
  store_.biases.reserve(graph.ops.size());
  // The last feature map (the global average pool's input) is an output too, for heatmaps
  // (wasm/heatmap.h): written where run() is told, at no extra pass. Not while recording ranges,
  // whose outputs are every op's.
  if (options.feature_map && mode != Mode::Record)
    for (const Op& op : graph.ops)
      if (op.kind == Op::GlobalAvgPool && op.name == graph.features) map_name_ = op.inputs.at(0);
}

uint32_t SubgraphBuilder::define(const std::vector<size_t>& dims, const float* data, uint32_t ext, uint32_t flags) {
  uint32_t id = 0;
  check(xnn_define_tensor_value(sg_, xnn_datatype_fp32, dims.size(), dims.data(), data, ext, flags, &id), "define a tensor");
  return id;
}

uint32_t SubgraphBuilder::define_q(const std::vector<size_t>& dims, const Quant& qp) {
  uint32_t id = 0;
  check(xnn_define_quantized_tensor_value(sg_, xnn_datatype_qint8, qp.zero_point, qp.scale, dims.size(), dims.data(), nullptr,
                                          XNN_INVALID_VALUE_ID, 0, &id),
        "define an int8 tensor");
  return id;
}

// An op's output value: int8 with `qp` when given, else fp32 (an external output when `o` says).
uint32_t SubgraphBuilder::output(size_t i, const Shape& os, const Outlet& o, const Quant* qp) {
  std::vector<size_t> dims{1, size_t(os.h), size_t(os.w), size_t(os.c)};
  if (o.recorded) result_.recorded.push_back({i, size_t(os.h) * os.w * os.c});
  return qp ? define_q(dims, *qp) : define(dims, nullptr, o.ext, o.flags);
}

Outlet SubgraphBuilder::outlet(size_t i) {
  const Op& op = graph_.ops[i];
  Outlet o;
  o.is_map = !map_name_.empty() && op.name == map_name_;
  o.ext = op.name == graph_.features ? kFeaturesId : op.name == graph_.logits ? kLogitsId : o.is_map ? kMapId : XNN_INVALID_VALUE_ID;
  if (mode_ == Mode::Record && quantisable(op) && o.ext == XNN_INVALID_VALUE_ID) {
    o.ext = kFirstRecordedId + uint32_t(result_.recorded.size());
    o.recorded = true;
  }
  o.flags = o.ext == XNN_INVALID_VALUE_ID ? 0 : XNN_VALUE_FLAG_EXTERNAL_OUTPUT;
  return o;
}

SubgraphBuilder::Result SubgraphBuilder::build() {
  const Shape in_shape{graph_.input_h, graph_.input_w, graph_.input_c};
  const std::vector<size_t> in_dims{1, size_t(in_shape.h), size_t(in_shape.w), size_t(in_shape.c)};
  vals_["input"] = Val{define(in_dims, nullptr, kInputId, XNN_VALUE_FLAG_EXTERNAL_INPUT), in_shape, false, Quant{}, 0};
  for (size_t i = 0; i < graph_.ops.size(); ++i) {
    const Op& op = graph_.ops[i];
    const Val in0 = vals_.at(op.inputs.at(0));
    const Outlet o = outlet(i);
    const Val out = define_op(i, in0, o);
    if (out.q && o.ext != XNN_INVALID_VALUE_ID) to_fp32(out, o.ext, o.flags);  // an int8 output the caller reads
    if (o.is_map) result_.map = Backbone::MapShape{out.shape.h, out.shape.w, out.shape.c};
    vals_[op.name] = out;
  }
  if (!vals_.count(graph_.features)) throw Error("the model's graph has no features output");
  return result_;
}

// XNNPACK packs static weights into its own buffers when the runtime is created and does not
// read them afterwards, so they are defined straight from the bundle (no copy: 100 MB less at
// the peak for ResNet-50). The int8 backbone keeps its subgraph to re-create the runtime
// later, so it keeps copies.
uint32_t SubgraphBuilder::static_tensor(const std::string& name, const std::vector<size_t>& shape) {
  const Tensor& t = bundle_.get(name, shape);
  const float* data = t.data.data();
  if (mode_ == Mode::Qd8 || mode_ == Mode::Qs8) {
    float_copies_.push_back(t.data);
    data = float_copies_.back().data();
  }
  return define(shape, data, XNN_INVALID_VALUE_ID, 0);
}

// int8: symmetric per-output-channel weights, w ~= scale[o] * q, q in [-127, 127].
std::pair<uint32_t, const std::vector<float>*> SubgraphBuilder::int8_filter(const std::string& name,
                                                                            const std::vector<size_t>& shape) {
  const Tensor& t = bundle_.get(name, shape);
  const size_t cout = shape[0], per = t.numel() / cout;
  std::vector<int8_t> q(t.numel());
  std::vector<float> scale(cout);
  for (size_t o = 0; o < cout; ++o) {
    float m = 0;
    for (size_t i = 0; i < per; ++i) m = std::max(m, std::fabs(t.data[o * per + i]));
    scale[o] = m > 0 ? m / 127.f : 1.f;
    for (size_t i = 0; i < per; ++i)
      q[o * per + i] = int8_t(std::lrint(std::min(127.f, std::max(-127.f, t.data[o * per + i] / scale[o]))));
  }
  store_.weights.push_back(std::move(q));
  store_.scales.push_back(std::move(scale));
  uint32_t id = 0;
  check(xnn_define_channelwise_quantized_tensor_value(sg_, xnn_datatype_qcint8, store_.scales.back().data(), shape.size(), 0,
                                                       shape.data(), store_.weights.back().data(), XNN_INVALID_VALUE_ID, 0, &id),
        "define int8 weights " + name);
  return std::make_pair(id, &store_.scales.back());
}

// QS8: the bias as int32 in units of input scale x weight scale (per output channel).
uint32_t SubgraphBuilder::int32_bias(const std::string& name, size_t cout, float input_scale, const std::vector<float>& wscale) {
  const Tensor& t = bundle_.get(name, {cout});
  std::vector<float> scale(cout);
  std::vector<int32_t> q(cout);
  for (size_t o = 0; o < cout; ++o) {
    scale[o] = input_scale * wscale[o];
    q[o] = int32_t(std::lrint(std::max(-2e9, std::min(2e9, double(t.data[o]) / scale[o]))));
  }
  store_.scales.push_back(std::move(scale));
  store_.biases.push_back(std::move(q));
  const size_t dims[1] = {cout};
  uint32_t id = 0;
  check(xnn_define_channelwise_quantized_tensor_value(sg_, xnn_datatype_qcint32, store_.scales.back().data(), 1, 0, dims,
                                                       store_.biases.back().data(), XNN_INVALID_VALUE_ID, 0, &id),
        "define int32 bias " + name);
  return id;
}

// Qd8: a value quantised per image for int8 convolutions (one conversion shared by its consumers).
uint32_t SubgraphBuilder::quantise_dynamic(uint32_t fp32_id, const Shape& sh) {
  auto it = quantised_.find(fp32_id);
  if (it != quantised_.end()) return it->second;
  const size_t dims[4] = {1, size_t(sh.h), size_t(sh.w), size_t(sh.c)};
  uint32_t id = 0;
  check(xnn_define_dynamically_quantized_tensor_value(sg_, xnn_datatype_qdint8, 4, 3, dims, XNN_INVALID_VALUE_ID, 0, &id),
        "define a quantised activation");
  check(xnn_define_unary(sg_, xnn_unary_convert, nullptr, fp32_id, id, 0), "define a quantisation");
  quantised_[fp32_id] = id;
  return id;
}

// Qs8: conversions between fp32 and int8 values, each made once: an int8 op reads int8 inputs, an
// fp32 op fp32 ones (a value's range row says how to quantise it). In the other modes no value is
// int8 and to_fp32 is the value itself.
uint32_t SubgraphBuilder::to_fp32(const Val& v, uint32_t ext, uint32_t flags) {
  if (!v.q) return v.id;
  if (ext == XNN_INVALID_VALUE_ID && converted_.count(v.id)) return converted_[v.id];
  std::vector<size_t> dims{1, size_t(v.shape.h), size_t(v.shape.w), size_t(v.shape.c)};
  const uint32_t out = define(dims, nullptr, ext, flags);
  check(xnn_define_unary(sg_, xnn_unary_convert, nullptr, v.id, out, 0), "define a conversion to fp32");
  if (ext == XNN_INVALID_VALUE_ID) converted_[v.id] = out;
  return out;
}

Val SubgraphBuilder::to_int8(const Val& v) {
  if (v.q) return v;
  Val q{0, v.shape, true, range_quant(v.row), v.row};
  if (converted_.count(v.id)) {
    q.id = converted_[v.id];
    return q;
  }
  q.id = define_q({1, size_t(v.shape.h), size_t(v.shape.w), size_t(v.shape.c)}, q.quant);
  check(xnn_define_unary(sg_, xnn_unary_convert, nullptr, v.id, q.id, 0), "define a quantisation");
  converted_[v.id] = q.id;
  return q;
}

ConvOperands SubgraphBuilder::conv_operands_fp32(const Op& op, const Val& in) {
  const uint32_t w = static_tensor(op.name + ".weight", {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)});
  return ConvOperands{in.id, w, static_tensor(op.name + ".bias", {size_t(op.cout)})};
}

// The stem convolution (3 input channels) stays fp32 unless options.int8_first_conv.
ConvOperands SubgraphBuilder::conv_operands_qd8(const Op& op, const Val& in) {
  if (!(op.cin > 4 || options_.int8_first_conv)) return conv_operands_fp32(op, in);
  const uint32_t w = int8_filter(op.name + ".weight", {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)}).first;
  const uint32_t b = static_tensor(op.name + ".bias", {size_t(op.cout)});
  return ConvOperands{quantise_dynamic(in.id, in.shape), w, b};
}

ConvOperands SubgraphBuilder::conv_operands_qs8(const Op& op, const Val& in) {
  auto [w, wscale] = int8_filter(op.name + ".weight", {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)});
  return ConvOperands{in.id, w, int32_bias(op.name + ".bias", size_t(op.cout), in.quant.scale, *wscale)};
}

// One op of the graph. Qs8's quantisable ops read int8 (their input converted when it is not);
// every other op reads fp32.
Val SubgraphBuilder::define_op(size_t i, const Val& in0, const Outlet& o) {
  const Op& op = graph_.ops[i];
  const bool q = mode_ == Mode::Qs8 && quantisable(op);
  const Val in = q ? to_int8(in0) : Val{to_fp32(in0, XNN_INVALID_VALUE_ID, 0), in0.shape, false, Quant{}, in0.row};
  switch (op.kind) {
    case Op::Conv: return conv(i, in, o);
    case Op::MaxPool: return max_pool(i, in, o);
    case Op::Add: return add(i, in, o);
    case Op::GlobalAvgPool: return global_avg_pool(i, in, o);
    case Op::Dense: return dense(i, in, o);
  }
  throw Error("layer '" + op.name + "' is of an unknown kind");
}

Val SubgraphBuilder::conv(size_t i, const Val& in, const Outlet& o) {
  const Op& op = graph_.ops[i];
  const Shape os = window_out_shape(op, in.shape);
  if (os.h <= 0 || os.w <= 0) throw Error("the model's input is too small for layer '" + op.name + "'");
  if (op.cin != in.shape.c) throw Error("layer '" + op.name + "' does not fit its input");
  const Quant qp = in.q ? range_quant(i + 1) : Quant{};
  const uint32_t out = output(i, os, o, in.q ? &qp : nullptr);
  const ConvOperands x = in.q ? conv_operands_qs8(op, in) : mode_ == Mode::Qd8 ? conv_operands_qd8(op, in) : conv_operands_fp32(op, in);
  const float inf = INFINITY;
  check(xnn_define_convolution_2d(sg_, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1, 1, op.cin,
                                  op.cout, op.relu ? 0.f : -inf, inf, x.x, x.w, x.b, out,
                                  (op.same ? XNN_FLAG_TENSORFLOW_SAME_PADDING : 0) | conv_flags_),
        "define convolution " + op.name);
  return Val{out, os, in.q, qp, int(i + 1)};
}

// Int8 max pooling keeps its input's quantisation (and range row).
Val SubgraphBuilder::max_pool(size_t i, const Val& in, const Outlet& o) {
  const Op& op = graph_.ops[i];
  const Shape os = window_out_shape(op, in.shape);
  if (os.h <= 0 || os.w <= 0) throw Error("the model's input is too small for layer '" + op.name + "'");
  const uint32_t out = output(i, os, o, in.q ? &in.quant : nullptr);
  check(xnn_define_max_pooling_2d(sg_, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1,
                                  op.relu ? 0.f : -INFINITY, INFINITY, in.id, out, op.same ? XNN_FLAG_TENSORFLOW_SAME_PADDING : 0),
        "define max pooling " + op.name);
  return Val{out, os, in.q, in.quant, in.row};
}

Val SubgraphBuilder::add(size_t i, const Val& in, const Outlet& o) {
  const Op& op = graph_.ops[i];
  const Val in1 = vals_.at(op.inputs.at(1));
  const uint32_t b_id = in.q ? to_int8(in1).id : to_fp32(in1, XNN_INVALID_VALUE_ID, 0);
  const Quant qp = in.q ? range_quant(i + 1) : Quant{};
  const uint32_t out = output(i, in.shape, o, in.q ? &qp : nullptr);
  // int8: a ReLU is the saturation at the output's zero point (its range starts at 0).
  xnn_binary_params p{0.f, INFINITY};
  check(xnn_define_binary(sg_, xnn_binary_add, in.q || !op.relu ? nullptr : &p, in.id, b_id, out, 0), "define add " + op.name);
  return Val{out, in.shape, in.q, qp, int(i + 1)};
}

Val SubgraphBuilder::global_avg_pool(size_t i, const Val& in, const Outlet& o) {
  const uint32_t out = define({1, size_t(in.shape.c)}, nullptr, o.ext, o.flags);
  const size_t axes[2] = {1, 2};
  check(xnn_define_static_reduce(sg_, xnn_reduce_mean, 2, axes, in.id, out, 0), "define global average pooling");
  return Val{out, Shape{1, 1, in.shape.c}, false, Quant{}, int(i + 1)};
}

Val SubgraphBuilder::dense(size_t i, const Val& in, const Outlet& o) {
  const Op& op = graph_.ops[i];
  if (op.cin != in.shape.c) throw Error("layer '" + op.name + "' does not fit its input");
  const uint32_t out = define({1, size_t(op.cout)}, nullptr, o.ext, o.flags);
  const uint32_t w = static_tensor(op.name + ".weight", {size_t(op.cout), size_t(op.cin)});
  const uint32_t b = static_tensor(op.name + ".bias", {size_t(op.cout)});
  check(xnn_define_fully_connected(sg_, op.relu ? 0.f : -INFINITY, INFINITY, in.id, w, b, out, 0), "define dense " + op.name);
  return Val{out, Shape{1, 1, op.cout}, false, Quant{}, int(i + 1)};
}

pthreadpool_t create_pool(size_t threads) {
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  return nullptr;  // single-thread build
#else
  return threads > 1 ? pthreadpool_create(threads) : nullptr;
#endif
}

}  // namespace

struct Backbone::Impl {
  pthreadpool_t pool = nullptr;
  xnn_runtime_t runtime = nullptr;
  xnn_weights_cache_t cache = nullptr;
  // int8 only: the subgraph, kept to re-create the runtime when the batch grows (XNNPACK
  // 2024-11 sizes the per-image quantisation parameters at the first reshape and overruns
  // them when a later reshape asks for a larger batch), and the largest batch so far.
  xnn_subgraph_t subgraph = nullptr;
  uint32_t runtime_flags = 0;
  size_t capacity = 0;
  QuantStore quant;  // int8 weights, scales and biases (options.int8), alive with the runtime
  ~Impl() {
    if (runtime) xnn_delete_runtime(runtime);
    if (subgraph) xnn_delete_subgraph(subgraph);
    if (cache) xnn_delete_weights_cache(cache);
    if (pool) pthreadpool_destroy(pool);
  }
};

Backbone::Backbone(const Graph& graph, const Bundle& bundle, size_t threads)
    : Backbone(graph, bundle, threads, BackboneOptions{}) {}

Backbone::Backbone(const Graph& graph, const Bundle& bundle, size_t threads, const BackboneOptions& options)
    : graph_(graph), options_(options), impl_(new Impl) {
  init_xnnpack();
  if (bundle.has(kInt8Marker)) options_.int8 = true;
  if (options_.record_ranges) options_.int8 = false;  // calibration measures the fp32 network
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  impl_->pool = create_pool(threads);
  // Static int8 when the bundle holds calibrated ranges (unless dynamic is asked for).
  std::vector<float> ranges;
  if (options_.int8 && !options_.int8_dynamic && bundle.has(kInt8RangesTensor))
    ranges = bundle.get(kInt8RangesTensor, {graph.ops.size() + 1, 2}).data;
  static_int8_ = !ranges.empty();
  const Mode mode = options_.record_ranges ? Mode::Record : static_int8_ ? Mode::Qs8 : options_.int8 ? Mode::Qd8 : Mode::Fp32;
  xnn_subgraph_t sg = nullptr;
  check(xnn_create_subgraph(kFirstRecordedId + (options_.record_ranges ? uint32_t(graph.ops.size()) : 0), 0, &sg),
        "create a subgraph");
  std::unique_ptr<xnn_subgraph, decltype(&xnn_delete_subgraph)> sg_guard(sg, xnn_delete_subgraph);
  const SubgraphBuilder::Result built =
      SubgraphBuilder(sg, graph, bundle, options_, mode, std::move(ranges), weights_, impl_->quant).build();
  map_shape_ = built.map;
  recorded_.clear();
  for (auto& r : built.recorded) recorded_.push_back({r.op, r.numel});
  uint32_t rflags = 0;
  if (options_.profile) rflags |= XNN_FLAG_BASIC_PROFILING;
  if (options_.transient_indirection) rflags |= XNN_FLAG_TRANSIENT_INDIRECTION_BUFFER;
  if (options_.weights_cache) check(xnn_create_weights_cache(&impl_->cache), "create a weights cache");
  check(xnn_create_runtime_v3(sg, impl_->cache, impl_->pool, rflags, &impl_->runtime), "create the runtime");
  if (impl_->cache)
    check(xnn_finalize_weights_cache(impl_->cache, options_.int8 ? xnn_weights_cache_finalization_kind_soft
                                                                  : xnn_weights_cache_finalization_kind_hard),
          "finalise the weights cache");
  if (options_.int8) {
    impl_->subgraph = sg_guard.release();
    impl_->runtime_flags = rflags;
  }
}

Backbone::~Backbone() = default;

Quant quant_of_range(float lo, float hi) {
  lo = std::min(lo, 0.f);
  hi = std::max(hi, 0.f);
  if (!(hi - lo > 1e-12f)) return Quant{1e-6f, -128};
  Quant q;
  q.scale = (hi - lo) / 255.f;
  q.zero_point = int32_t(std::lrint(-128.0 - double(lo) / q.scale));
  q.zero_point = std::max(-128, std::min(127, q.zero_point));
  return q;
}

std::vector<float> Backbone::ranges() const {
  if (!options_.record_ranges) throw Error("the backbone was built without recording ranges");
  std::vector<float> r = ranges_;
  for (float& v : r) v /= float(std::max<size_t>(1, recorded_images_));
  return r;
}

void calibrate_int8(Bundle& b, const Graph& graph, const float* inputs, size_t n, size_t threads) {
  if (n == 0) throw Error("int8 calibration needs at least one photo");
  BackboneOptions o;
  o.record_ranges = true;  // fp32 whatever int8 tensors `b` holds
  Backbone net(graph, b, threads, o);
  const size_t per = size_t(graph.input_h) * graph.input_w * graph.input_c;
  std::vector<float> features(8 * size_t(graph.feature_dim));
  for (size_t i = 0; i < n; i += 8) {
    const size_t m = std::min<size_t>(8, n - i);
    net.run(inputs + i * per, m, features.data());
  }
  Tensor t;
  t.shape = {graph.ops.size() + 1, 2};
  t.data = net.ranges();
  b.tensors[kInt8RangesTensor] = std::move(t);
  mark_int8(b);
}

void mark_int8(Bundle& b) {
  Tensor t;
  t.shape = {1};
  t.data = {1.f};
  b.tensors[kInt8Marker] = std::move(t);
}

pthreadpool_t Backbone::pool() const { return impl_->pool; }

size_t Backbone::threads() const { return impl_->pool ? pthreadpool_get_threads_count(impl_->pool) : 1; }

std::vector<OpTime> Backbone::profile() const {
  if (!options_.profile) throw Error("the backbone was built without profiling");
  size_t n = 0, size = 0;
  check(xnn_get_runtime_profiling_info(impl_->runtime, xnn_profile_info_num_operators, sizeof(n), &n, &size),
        "read the number of operators");
  std::vector<char> names;
  std::vector<uint64_t> us(n);
  xnn_status s = xnn_get_runtime_profiling_info(impl_->runtime, xnn_profile_info_operator_name, 0, nullptr, &size);
  if (s != xnn_status_success && s != xnn_status_out_of_memory) check(s, "read the operator names");
  names.resize(size);
  check(xnn_get_runtime_profiling_info(impl_->runtime, xnn_profile_info_operator_name, names.size(), names.data(), &size),
        "read the operator names");
  check(xnn_get_runtime_profiling_info(impl_->runtime, xnn_profile_info_operator_timing, us.size() * sizeof(uint64_t),
                                       us.data(), &size),
        "read the operator times");
  std::vector<OpTime> out(n);
  size_t pos = 0;
  for (size_t i = 0; i < n && pos < names.size(); ++i) {
    out[i].name = std::string(names.data() + pos);
    pos += out[i].name.size() + 1;
    out[i].ms = double(us[i]) / 1000.0;
  }
  return out;
}

void Backbone::reshape(size_t batch) {
  if (batch == batch_) return;
  if (impl_->subgraph && impl_->capacity && batch > impl_->capacity) {
    xnn_delete_runtime(impl_->runtime);
    impl_->runtime = nullptr;
    check(xnn_create_runtime_v3(impl_->subgraph, impl_->cache, impl_->pool, impl_->runtime_flags, &impl_->runtime),
          "re-create the runtime");
  }
  impl_->capacity = std::max(impl_->capacity, batch);
  const size_t dims[4] = {batch, size_t(graph_.input_h), size_t(graph_.input_w), size_t(graph_.input_c)};
  check(xnn_reshape_external_value(impl_->runtime, kInputId, 4, dims), "reshape the input");
  check(xnn_reshape_runtime(impl_->runtime), "reshape the runtime");
  batch_ = batch;
}

void Backbone::run(const float* input, size_t batch, float* features, float* logits, float* feature_map) {
  if (batch == 0) return;
  reshape(batch);
  // XNNPACK may read up to XNN_EXTRA_BYTES past the end of an input: copy into padded storage.
  const size_t n = batch * graph_.input_h * graph_.input_w * graph_.input_c;
  input_pad_.resize(n + XNN_EXTRA_BYTES / sizeof(float));
  std::memcpy(input_pad_.data(), input, n * sizeof(float));
  std::vector<xnn_external_value> ext{{kInputId, input_pad_.data()}, {kFeaturesId, features}};
  if (!graph_.logits.empty()) {
    if (!logits) {
      logits_scratch_.resize(batch * graph_.num_logits);
      logits = logits_scratch_.data();
    }
    ext.push_back({kLogitsId, logits});
  }
  if (map_shape_.c > 0) {
    if (!feature_map) {
      map_scratch_.resize(batch * feature_map_size() + XNN_EXTRA_BYTES / sizeof(float));
      feature_map = map_scratch_.data();
    }
    ext.push_back({kMapId, feature_map});
  } else if (feature_map) {
    throw Error("this backbone was built without its feature map output (recording ranges, or feature_map off)");
  }
  if (options_.record_ranges) {
    buffers_.resize(recorded_.size());
    for (size_t i = 0; i < recorded_.size(); ++i) {
      buffers_[i].resize(batch * recorded_[i].numel + XNN_EXTRA_BYTES / sizeof(float));
      ext.push_back({kFirstRecordedId + uint32_t(i), buffers_[i].data()});
    }
  }
  check(xnn_setup_runtime_v2(impl_->runtime, ext.size(), ext.data()), "set up the runtime");
  check(xnn_invoke_runtime(impl_->runtime), "run the network");
  if (options_.record_ranges) {
    // The mean over images of each image's min and max: the extremes of a few photos would
    // stretch the 256 steps (measured on flower photos: features 7.8 % from fp32 with the
    // extremes, 6.6 % with the means).
    if (ranges_.empty()) ranges_.assign((graph_.ops.size() + 1) * 2, 0.f);
    auto widen = [&](size_t row, const float* v, size_t per) {
      for (size_t b = 0; b < batch; ++b) {
        const auto [mn, mx] = std::minmax_element(v + b * per, v + (b + 1) * per);
        ranges_[row * 2] += *mn;
        ranges_[row * 2 + 1] += *mx;
      }
    };
    widen(0, input, n / batch);
    for (size_t i = 0; i < recorded_.size(); ++i) widen(recorded_[i].op + 1, buffers_[i].data(), recorded_[i].numel);
    recorded_images_ += batch;
  }
}

}  // namespace petal
