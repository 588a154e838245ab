#include "backbone.h"

#include <xnnpack.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
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

int out_size(int in, int k, int s, int pad_a, int pad_b, bool same) {
  if (same) return (in + s - 1) / s;
  return (in + pad_a + pad_b - k) / s + 1;
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
  std::vector<std::vector<int8_t>> qweights;  // int8 weights (options.int8), alive with the runtime
  std::vector<std::vector<float>> qscales;    // weight scales, and QS8 bias scales
  std::vector<std::vector<int32_t>> qbiases;  // QS8 int32 biases
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
#ifdef __EMSCRIPTEN_PTHREADS__
  impl_->pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
#elif defined(__EMSCRIPTEN__)
  impl_->pool = nullptr;  // single-thread build
#else
  impl_->pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
#endif
  xnn_subgraph_t sg = nullptr;
  check(xnn_create_subgraph(kFirstRecordedId + (options_.record_ranges ? uint32_t(graph.ops.size()) : 0), 0, &sg),
        "create a subgraph");
  std::unique_ptr<xnn_subgraph, decltype(&xnn_delete_subgraph)> sg_guard(sg, xnn_delete_subgraph);

  struct Shape { int h, w, c; };
  // A value of the subgraph: its id, shape and, when int8 (QS8), its quantisation.
  struct Val {
    uint32_t id;
    Shape shape;
    bool q = false;
    Quant quant;
    int row = 0;  // its row in the calibrated ranges
  };
  std::map<std::string, Val> vals;
  auto define = [&](const std::vector<size_t>& dims, const float* data, uint32_t ext, uint32_t flags) {
    uint32_t id = 0;
    check(xnn_define_tensor_value(sg, xnn_datatype_fp32, dims.size(), dims.data(), data, ext, flags, &id), "define a tensor");
    return id;
  };
  auto define_q = [&](const std::vector<size_t>& dims, const Quant& qp) {
    uint32_t id = 0;
    check(xnn_define_quantized_tensor_value(sg, xnn_datatype_qint8, qp.zero_point, qp.scale, dims.size(), dims.data(),
                                            nullptr, XNN_INVALID_VALUE_ID, 0, &id),
          "define an int8 tensor");
    return id;
  };
  // XNNPACK packs static weights into its own buffers when the runtime is created and does not
  // read them afterwards, so they are defined straight from the bundle (no copy: 100 MB less at
  // the peak for ResNet-50). The int8 backbone keeps its subgraph to re-create the runtime
  // later, so it keeps copies.
  auto static_tensor = [&](const std::string& name, const std::vector<size_t>& shape) {
    const Tensor& t = bundle.get(name, shape);
    const float* data = t.data.data();
    if (options_.int8) {
      weights_.push_back(t.data);
      data = weights_.back().data();
    }
    return define(shape, data, XNN_INVALID_VALUE_ID, 0);
  };
  weights_.reserve(graph.ops.size() * 2);
  impl_->qweights.reserve(graph.ops.size());
  impl_->qscales.reserve(graph.ops.size() * 2);
  impl_->qbiases.reserve(graph.ops.size());
  // int8: symmetric per-output-channel weights, w ~= scale[o] * q, q in [-127, 127].
  auto int8_filter = [&](const std::string& name, const std::vector<size_t>& shape) {
    const Tensor& t = bundle.get(name, shape);
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
    impl_->qweights.push_back(std::move(q));
    impl_->qscales.push_back(std::move(scale));
    uint32_t id = 0;
    check(xnn_define_channelwise_quantized_tensor_value(sg, xnn_datatype_qcint8, impl_->qscales.back().data(), shape.size(), 0,
                                                         shape.data(), impl_->qweights.back().data(), XNN_INVALID_VALUE_ID, 0,
                                                         &id),
          "define int8 weights " + name);
    return std::make_pair(id, &impl_->qscales.back());
  };
  // QS8: the bias as int32 in units of input scale x weight scale (per output channel).
  auto int32_bias = [&](const std::string& name, size_t cout, float input_scale, const std::vector<float>& wscale) {
    const Tensor& t = bundle.get(name, {cout});
    std::vector<float> scale(cout);
    std::vector<int32_t> q(cout);
    for (size_t o = 0; o < cout; ++o) {
      scale[o] = input_scale * wscale[o];
      q[o] = int32_t(std::lrint(std::max(-2e9, std::min(2e9, double(t.data[o]) / scale[o]))));
    }
    impl_->qscales.push_back(std::move(scale));
    impl_->qbiases.push_back(std::move(q));
    const size_t dims[1] = {cout};
    uint32_t id = 0;
    check(xnn_define_channelwise_quantized_tensor_value(sg, xnn_datatype_qcint32, impl_->qscales.back().data(), 1, 0, dims,
                                                         impl_->qbiases.back().data(), XNN_INVALID_VALUE_ID, 0, &id),
          "define int32 bias " + name);
    return id;
  };
  // QD8: a value quantised per image for int8 convolutions (one conversion shared by its consumers).
  std::map<uint32_t, uint32_t> quantised;
  auto quantise_dynamic = [&](uint32_t fp32_id, const Shape& sh) {
    auto it = quantised.find(fp32_id);
    if (it != quantised.end()) return it->second;
    const size_t dims[4] = {1, size_t(sh.h), size_t(sh.w), size_t(sh.c)};
    uint32_t id = 0;
    check(xnn_define_dynamically_quantized_tensor_value(sg, xnn_datatype_qdint8, 4, 3, dims, XNN_INVALID_VALUE_ID, 0, &id),
          "define a quantised activation");
    check(xnn_define_unary(sg, xnn_unary_convert, nullptr, fp32_id, id, 0), "define a quantisation");
    quantised[fp32_id] = id;
    return id;
  };
  // QS8 (static int8): each op's output quantised with the calibrated range of the bundle's
  // kInt8RangesTensor; fp32 only at the input, the pooled features and the classifier.
  std::vector<float> ranges;
  if (options_.int8 && !options_.int8_dynamic && bundle.has(kInt8RangesTensor)) ranges = bundle.get(kInt8RangesTensor, {graph.ops.size() + 1, 2}).data;
  static_int8_ = !ranges.empty();
  auto range_quant = [&](size_t row) { return quant_of_range(ranges[row * 2], ranges[row * 2 + 1]); };
  // Conversions between fp32 and int8 values, each made once: an int8 op reads int8 inputs, an
  // fp32 op fp32 ones (a value's range row says how to quantise it).
  std::map<uint32_t, uint32_t> converted;
  auto to_fp32 = [&](const Val& v, uint32_t ext, uint32_t flags) {
    if (!v.q) return v.id;
    if (ext == XNN_INVALID_VALUE_ID && converted.count(v.id)) return converted[v.id];
    std::vector<size_t> dims{1, size_t(v.shape.h), size_t(v.shape.w), size_t(v.shape.c)};
    const uint32_t out = define(dims, nullptr, ext, flags);
    check(xnn_define_unary(sg, xnn_unary_convert, nullptr, v.id, out, 0), "define a conversion to fp32");
    if (ext == XNN_INVALID_VALUE_ID) converted[v.id] = out;
    return out;
  };
  auto to_int8 = [&](const Val& v) {
    if (v.q) return v;
    Val q{0, v.shape, true, range_quant(v.row), v.row};
    if (converted.count(v.id)) {
      q.id = converted[v.id];
      return q;
    }
    q.id = define_q({1, size_t(v.shape.h), size_t(v.shape.w), size_t(v.shape.c)}, q.quant);
    check(xnn_define_unary(sg, xnn_unary_convert, nullptr, v.id, q.id, 0), "define a quantisation");
    converted[v.id] = q.id;
    return q;
  };
  const Shape in_shape{graph.input_h, graph.input_w, graph.input_c};
  const std::vector<size_t> in_dims{1, size_t(in_shape.h), size_t(in_shape.w), size_t(in_shape.c)};
  vals["input"] = Val{define(in_dims, nullptr, kInputId, XNN_VALUE_FLAG_EXTERNAL_INPUT), in_shape, false, Quant{}, 0};
  const float inf = INFINITY;
  recorded_.clear();
  // Residual adds fused into the convolution before them: for a convolution whose output (shape
  // `os`) is used only by an Add whose other input is already defined and of that shape, the Add's
  // index and that other input, the residual; the Add is then skipped.
  std::map<std::string, std::vector<size_t>> users;
  for (size_t i = 0; i < graph.ops.size(); ++i)
    for (auto& name : graph.ops[i].inputs) users[name].push_back(i);
  std::vector<bool> fused_away(graph.ops.size(), false);
  struct Fusion {
    size_t add;
    const Val* residual;
  };
  // The last feature map (the global average pool's input) is an output too, for heatmaps
  // (wasm/heatmap.h): written where run() is told, at no extra pass. Not while recording ranges,
  // whose outputs are every op's.
  std::string map_name;
  if (options_.feature_map && !options_.record_ranges)
    for (const Op& op : graph.ops)
      if (op.kind == Op::GlobalAvgPool && op.name == graph.features) map_name = op.inputs.at(0);
  auto conv_out_shape = [&](const Op& op, const Shape& is) {
    return Shape{out_size(is.h, op.kh, op.sh, op.pad[0], op.pad[2], op.same),
                 out_size(is.w, op.kw, op.sw, op.pad[3], op.pad[1], op.same), op.kind == Op::Conv ? op.cout : is.c};
  };
  auto fusable_add = [&](size_t conv, const Shape& os) -> std::optional<Fusion> {
    const Op& op = graph.ops[conv];
    if (!options_.fuse_residual || options_.record_ranges || static_int8_ || op.relu) return std::nullopt;
    if (op.name == graph.features || op.name == graph.logits) return std::nullopt;
    const auto& u = users[op.name];
    if (u.size() != 1 || graph.ops[u[0]].kind != Op::Add) return std::nullopt;
    const Op& add = graph.ops[u[0]];
    if (add.name == graph.features || add.name == graph.logits || add.inputs.size() != 2) return std::nullopt;
    const std::string& other = add.inputs[0] == op.name ? add.inputs[1] : add.inputs[0];
    if (other == op.name || !vals.count(other)) return std::nullopt;
    const Val& r = vals.at(other);
    if (r.shape.h != os.h || r.shape.w != os.w || r.shape.c != os.c) return std::nullopt;
    return Fusion{u[0], &r};
  };
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    if (fused_away[i]) continue;
    const Op& op = graph.ops[i];
    const Val in0 = vals.at(op.inputs.at(0));
    const Shape is = in0.shape;
    const float lo = op.relu ? 0.f : -inf;
    const bool is_features = op.name == graph.features, is_logits = op.name == graph.logits;
    // a convolution whose fused add makes the feature map writes the map itself
    const std::optional<Fusion> fusion = op.kind == Op::Conv ? fusable_add(i, conv_out_shape(op, in0.shape)) : std::nullopt;
    const bool is_map = !map_name.empty() && (op.name == map_name || (fusion && graph.ops[fusion->add].name == map_name));
    uint32_t ext = is_features ? kFeaturesId : is_logits ? kLogitsId : is_map ? kMapId : XNN_INVALID_VALUE_ID;
    uint32_t vflags = ext == XNN_INVALID_VALUE_ID ? 0 : XNN_VALUE_FLAG_EXTERNAL_OUTPUT;
    const bool recordable = op.kind == Op::Conv || op.kind == Op::MaxPool || op.kind == Op::Add;
    if (options_.record_ranges && recordable && ext == XNN_INVALID_VALUE_ID) {
      ext = kFirstRecordedId + uint32_t(recorded_.size());
      vflags = XNN_VALUE_FLAG_EXTERNAL_OUTPUT;
    }
    // int8 ops write int8 values; one that is also an output gets a conversion to fp32 after it.
    const bool q_out = static_int8_ && recordable;
    const Val in = q_out ? to_int8(in0) : Val{to_fp32(in0, XNN_INVALID_VALUE_ID, 0), is, false, Quant{}, in0.row};
    const int row = int(i + 1);
    auto output = [&](const Shape& os, const Quant& qp) {
      std::vector<size_t> dims{1, size_t(os.h), size_t(os.w), size_t(os.c)};
      if (ext >= kFirstRecordedId) recorded_.push_back({i, size_t(os.h) * os.w * os.c});
      return q_out ? define_q(dims, qp) : define(dims, nullptr, ext, vflags);
    };
    Val out_val;
    switch (op.kind) {
      case Op::Conv:
      case Op::MaxPool: {
        const Shape os = conv_out_shape(op, is);
        if (os.h <= 0 || os.w <= 0) throw Error("the model's input is too small for layer '" + op.name + "'");
        const uint32_t flags = op.same ? XNN_FLAG_TENSORFLOW_SAME_PADDING : 0;
        if (op.kind == Op::Conv) {
          if (op.cin != is.c) throw Error("layer '" + op.name + "' does not fit its input");
          const std::vector<size_t> wshape{size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)};
          const Quant qp = q_out ? range_quant(size_t(row)) : Quant{};
          const uint32_t out = output(os, qp);
          uint32_t w, b, x;
          if (q_out) {
            auto [wid, wscale] = int8_filter(op.name + ".weight", wshape);
            w = wid;
            b = int32_bias(op.name + ".bias", size_t(op.cout), in.quant.scale, *wscale);
            x = in.id;
          } else {
            const bool dyn = options_.int8 && (op.cin > 4 || options_.int8_first_conv);
            w = dyn ? int8_filter(op.name + ".weight", wshape).first : static_tensor(op.name + ".weight", wshape);
            b = static_tensor(op.name + ".bias", {size_t(op.cout)});
            x = dyn ? quantise_dynamic(in.id, is) : in.id;
          }
          // with the add fused, the convolution's clamp is the add's ReLU, applied after the add
          const float conv_lo = fusion ? (graph.ops[fusion->add].relu ? 0.f : -inf) : lo;
          const uint32_t residual_id = fusion ? to_fp32(*fusion->residual, XNN_INVALID_VALUE_ID, 0) : XNN_INVALID_VALUE_ID;
          check(xnn_define_convolution_2d(sg, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1,
                                          1, op.cin, op.cout, conv_lo, inf, x, w, b, out, flags),
                "define convolution " + op.name);
          out_val = Val{out, os, q_out, qp, row};
          if (fusion) {
            const Op& add = graph.ops[fusion->add];
            check(xnn_petal_convolution_add_residual(sg, residual_id), "fuse " + add.name + " into " + op.name);
            fused_away[fusion->add] = true;
            vals[add.name] = Val{out, os, false, Quant{}, int(fusion->add + 1)};
          }
        } else {
          // int8 max pooling keeps its input's quantisation
          const uint32_t out = output(os, in.quant);
          check(xnn_define_max_pooling_2d(sg, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1,
                                          lo, inf, in.id, out, flags),
                "define max pooling " + op.name);
          out_val = Val{out, os, q_out, in.quant, in.row};
        }
        break;
      }
      case Op::Add: {
        const Val in1 = vals.at(op.inputs.at(1));
        const uint32_t b_id = q_out ? to_int8(in1).id : to_fp32(in1, XNN_INVALID_VALUE_ID, 0);
        const Quant qp = q_out ? range_quant(size_t(row)) : Quant{};
        const uint32_t out = output(is, qp);
        // int8: a ReLU is the saturation at the output's zero point (its range starts at 0).
        xnn_binary_params p{lo, inf};
        check(xnn_define_binary(sg, xnn_binary_add, q_out || !op.relu ? nullptr : &p, in.id, b_id, out, 0),
              "define add " + op.name);
        out_val = Val{out, is, q_out, qp, row};
        break;
      }
      case Op::GlobalAvgPool: {
        const uint32_t out = define({1, size_t(is.c)}, nullptr, ext, vflags);
        const size_t axes[2] = {1, 2};
        check(xnn_define_static_reduce(sg, xnn_reduce_mean, 2, axes, in.id, out, 0), "define global average pooling");
        out_val = Val{out, Shape{1, 1, is.c}, false, Quant{}, row};
        break;
      }
      case Op::Dense: {
        if (op.cin != is.c) throw Error("layer '" + op.name + "' does not fit its input");
        const uint32_t out = define({1, size_t(op.cout)}, nullptr, ext, vflags);
        const uint32_t w = static_tensor(op.name + ".weight", {size_t(op.cout), size_t(op.cin)});
        const uint32_t b = static_tensor(op.name + ".bias", {size_t(op.cout)});
        check(xnn_define_fully_connected(sg, lo, inf, in.id, w, b, out, 0), "define dense " + op.name);
        out_val = Val{out, Shape{1, 1, op.cout}, false, Quant{}, row};
        break;
      }
    }
    if (out_val.q && ext != XNN_INVALID_VALUE_ID) to_fp32(out_val, ext, vflags);  // an int8 output the caller reads
    if (is_map) map_shape_ = MapShape{out_val.shape.h, out_val.shape.w, out_val.shape.c};
    vals[op.name] = out_val;
  }
  if (!vals.count(graph.features)) throw Error("the model's graph has no features output");
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
