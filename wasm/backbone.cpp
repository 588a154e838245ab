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
constexpr uint32_t kInputId = 0, kFeaturesId = 1, kLogitsId = 2;

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
  std::vector<std::vector<float>> qscales;
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
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
#ifdef __EMSCRIPTEN_PTHREADS__
  impl_->pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
#elif defined(__EMSCRIPTEN__)
  impl_->pool = nullptr;  // single-thread build
#else
  impl_->pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
#endif
  xnn_subgraph_t sg = nullptr;
  check(xnn_create_subgraph(3, 0, &sg), "create a subgraph");
  std::unique_ptr<xnn_subgraph, decltype(&xnn_delete_subgraph)> sg_guard(sg, xnn_delete_subgraph);

  struct Shape { int h, w, c; };
  std::map<std::string, std::pair<uint32_t, Shape>> vals;
  auto define = [&](const std::vector<size_t>& dims, const float* data, uint32_t ext, uint32_t flags) {
    uint32_t id = 0;
    check(xnn_define_tensor_value(sg, xnn_datatype_fp32, dims.size(), dims.data(), data, ext, flags, &id), "define a tensor");
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
  impl_->qscales.reserve(graph.ops.size());
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
    return id;
  };
  // A value quantised per image for int8 convolutions (one conversion shared by its consumers).
  std::map<uint32_t, uint32_t> quantised;
  auto quantise = [&](uint32_t fp32_id, const Shape& sh) {
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
  const Shape in_shape{graph.input_h, graph.input_w, graph.input_c};
  vals["input"] = {define({1, size_t(in_shape.h), size_t(in_shape.w), size_t(in_shape.c)}, nullptr, kInputId,
                          XNN_VALUE_FLAG_EXTERNAL_INPUT),
                   in_shape};
  const float inf = INFINITY;
  for (const Op& op : graph.ops) {
    auto in = vals.at(op.inputs.at(0));
    const Shape is = in.second;
    const float lo = op.relu ? 0.f : -inf;
    const bool is_features = op.name == graph.features, is_logits = op.name == graph.logits;
    const uint32_t ext = is_features ? kFeaturesId : is_logits ? kLogitsId : XNN_INVALID_VALUE_ID;
    const uint32_t vflags = ext == XNN_INVALID_VALUE_ID ? 0 : XNN_VALUE_FLAG_EXTERNAL_OUTPUT;
    switch (op.kind) {
      case Op::Conv:
      case Op::MaxPool: {
        Shape os{out_size(is.h, op.kh, op.sh, op.pad[0], op.pad[2], op.same),
                 out_size(is.w, op.kw, op.sw, op.pad[3], op.pad[1], op.same), op.kind == Op::Conv ? op.cout : is.c};
        if (os.h <= 0 || os.w <= 0) throw Error("the model's input is too small for layer '" + op.name + "'");
        const uint32_t out = define({1, size_t(os.h), size_t(os.w), size_t(os.c)}, nullptr, ext, vflags);
        const uint32_t flags = op.same ? XNN_FLAG_TENSORFLOW_SAME_PADDING : 0;
        if (op.kind == Op::Conv) {
          if (op.cin != is.c) throw Error("layer '" + op.name + "' does not fit its input");
          const std::vector<size_t> wshape{size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)};
          const bool q = options_.int8 && (op.cin > 4 || options_.int8_first_conv);
          const uint32_t w = q ? int8_filter(op.name + ".weight", wshape) : static_tensor(op.name + ".weight", wshape);
          const uint32_t b = static_tensor(op.name + ".bias", {size_t(op.cout)});
          const uint32_t x = q ? quantise(in.first, is) : in.first;
          check(xnn_define_convolution_2d(sg, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1,
                                          1, op.cin, op.cout, lo, inf, x, w, b, out, flags),
                "define convolution " + op.name);
        } else {
          check(xnn_define_max_pooling_2d(sg, op.pad[0], op.pad[1], op.pad[2], op.pad[3], op.kh, op.kw, op.sh, op.sw, 1, 1,
                                          lo, inf, in.first, out, flags),
                "define max pooling " + op.name);
        }
        vals[op.name] = {out, os};
        break;
      }
      case Op::Add: {
        auto in2 = vals.at(op.inputs.at(1));
        const uint32_t out = define({1, size_t(is.h), size_t(is.w), size_t(is.c)}, nullptr, ext, vflags);
        xnn_binary_params p{lo, inf};
        check(xnn_define_binary(sg, xnn_binary_add, &p, in.first, in2.first, out, 0), "define add " + op.name);
        vals[op.name] = {out, is};
        break;
      }
      case Op::GlobalAvgPool: {
        const uint32_t out = define({1, size_t(is.c)}, nullptr, ext, vflags);
        const size_t axes[2] = {1, 2};
        check(xnn_define_static_reduce(sg, xnn_reduce_mean, 2, axes, in.first, out, 0), "define global average pooling");
        vals[op.name] = {out, Shape{1, 1, is.c}};
        break;
      }
      case Op::Dense: {
        if (op.cin != is.c) throw Error("layer '" + op.name + "' does not fit its input");
        const uint32_t out = define({1, size_t(op.cout)}, nullptr, ext, vflags);
        const uint32_t w = static_tensor(op.name + ".weight", {size_t(op.cout), size_t(op.cin)});
        const uint32_t b = static_tensor(op.name + ".bias", {size_t(op.cout)});
        check(xnn_define_fully_connected(sg, lo, inf, in.first, w, b, out, 0), "define dense " + op.name);
        vals[op.name] = {out, Shape{1, 1, op.cout}};
        break;
      }
    }
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

void Backbone::run(const float* input, size_t batch, float* features, float* logits) {
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
  check(xnn_setup_runtime_v2(impl_->runtime, ext.size(), ext.data()), "set up the runtime");
  check(xnn_invoke_runtime(impl_->runtime), "run the network");
}

}  // namespace petal
