#include "keras_import.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "error.h"

namespace petal {
using nlohmann::json;

namespace {

// An integer from the model's JSON. nlohmann converts numbers with a plain cast, which is
// undefined for floats out of range; a model file is untrusted input.
int as_int(const json& v) {
  if (!v.is_number_integer()) throw Error("the model's configuration has '" + v.dump().substr(0, 40) + "' where a whole number belongs");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT_MAX) : (v.get<int64_t>() < INT_MIN || v.get<int64_t>() > INT_MAX))
    throw Error("the model's configuration has the out-of-range number " + v.dump());
  return int(v.get<int64_t>());
}

struct Value {          // what a Keras layer's output is in our graph
  std::string name;     // our value name
  std::array<int, 4> pad{0, 0, 0, 0};  // pending zero padding (from ZeroPadding2D)
};

// nlohmann's message without its "[json.exception.type_error.302] " prefix.
std::string json_reason(const json::exception& e) {
  std::string w = e.what();
  const size_t p = w.find("] ");
  return p == std::string::npos ? w : w.substr(p + 2);
}

std::vector<std::string> inbound_names(const json& layer) {
  std::vector<std::string> r;
  const json& nodes = layer.at("inbound_nodes");
  if (nodes.empty()) return r;
  if (nodes.size() != 1) throw Error("layer '" + layer.value("name", "?") + "' is shared (called more than once): unsupported");
  for (auto& in : nodes[0]) {
    if (in.is_array()) r.push_back(in.at(0).get<std::string>());
    else if (in.is_object()) r.push_back(in.at("args").at(0).at("config").at("keras_history").at(0).get<std::string>());
  }
  return r;
}

std::array<int, 4> zero_padding(const json& cfg) {  // Keras ((top,bottom),(left,right)) or int
  const json& p = cfg.at("padding");
  std::array<int, 4> r;
  if (p.is_number()) { int v = as_int(p); r = {v, v, v, v}; }
  else if (p.at(0).is_number()) { int a = as_int(p.at(0)), b = as_int(p.at(1)); r = {a, b, a, b}; }
  else r = {as_int(p.at(0).at(0)), as_int(p.at(1).at(1)), as_int(p.at(0).at(1)), as_int(p.at(1).at(0))};
  for (int v : r)
    if (v < 0 || v > 1024) throw Error("layer '" + cfg.value("name", "?") + "' has an invalid padding");
  return r;
}

// The layer list walked once, in order: each Keras layer becomes an op of the graph, or is folded
// into one (BatchNormalization, activations, ZeroPadding2D), or is nothing (Flatten, Dropout).
class KerasImporter {
 public:
  KerasImporter(const json& layers, const WeightLookup& weights) : layers_(layers), weights_(weights) {
    for (auto& l : layers)
      for (auto& n : inbound_names(l)) consumers_[n]++;
  }
  ImportedBackbone run();

 private:
  void layer(const json& l);
  void window(const json& l, const std::string& cls, const std::string& name, const json& cfg);
  void conv_weights(Op& op, const std::string& name, const json& cfg);
  void batch_norm(const json& l, const std::string& name, const json& cfg);
  void activation(const json& l, const std::string& cls, const std::string& name, const json& cfg);
  void dense(const json& l, const std::string& name, const json& cfg);
  void check_channels();
  const Tensor& need(const std::string& key, const std::string& layer) const;
  Tensor bias(const std::string& name, const json& cfg, int cout) const;
  std::vector<Value> input_of(const json& l, size_t expect) const;
  Op& foldable_producer(const std::string& keras_in, const Value& v, const std::string& layer);
  void push(const Op& op, const std::string& name);

  const json& layers_;
  const WeightLookup& weights_;
  ImportedBackbone m_;
  Graph& g_ = m_.graph;
  std::map<std::string, Value> values_;      // keras layer name -> value
  std::map<std::string, int> consumers_;     // keras layer name -> number of consumers
  std::map<std::string, size_t> producer_;   // our value name -> op index
};

const Tensor& KerasImporter::need(const std::string& key, const std::string& layer) const {
  const Tensor* t = weights_(key);
  if (!t) throw Error("the model has no weight '" + key + "' for layer '" + layer + "'");
  return *t;
}

std::vector<Value> KerasImporter::input_of(const json& l, size_t expect) const {
  auto ins = inbound_names(l);
  if (ins.size() != expect)
    throw Error("layer '" + l.value("name", "?") + "' has " + std::to_string(ins.size()) + " inputs, expected " +
                std::to_string(expect));
  std::vector<Value> r;
  for (auto& n : ins) {
    auto it = values_.find(n);
    if (it == values_.end()) throw Error("layer '" + l.value("name", "?") + "' uses '" + n + "' before it is defined");
    r.push_back(it->second);
  }
  return r;
}

Op& KerasImporter::foldable_producer(const std::string& keras_in, const Value& v, const std::string& layer) {
  auto it = producer_.find(v.name);
  if (it == producer_.end() || consumers_[keras_in] != 1)
    throw Error("layer '" + layer + "' cannot be folded into its input: unsupported topology");
  return g_.ops[it->second];
}

// A new op of the graph, whose output is the Keras layer `name`'s.
void KerasImporter::push(const Op& op, const std::string& name) {
  producer_[op.name] = g_.ops.size();
  g_.ops.push_back(op);
  values_[name] = Value{op.name, {0, 0, 0, 0}};
}

// A Conv2D's or Dense's bias: its weight when the layer has one, else zeros.
Tensor KerasImporter::bias(const std::string& name, const json& cfg, int cout) const {
  Tensor b;
  b.shape = {size_t(cout)};
  b.data.assign(cout, 0.f);
  if (cfg.value("use_bias", true)) {
    const Tensor& kb = need(name + "/bias", name);
    if (kb.numel() != size_t(cout)) throw Error("weight '" + name + "/bias' has the wrong shape");
    b.data = kb.data;
  }
  return b;
}

ImportedBackbone KerasImporter::run() {
  for (auto& l : layers_) layer(l);
  if (g_.features.empty()) throw Error("the model has no GlobalAveragePooling2D layer: Petal needs pooled features");
  check_channels();
  g_.validate();  // what a bundle reader will check: refuse it now rather than at load time
  return std::move(m_);
}

void KerasImporter::layer(const json& l) {
  const std::string cls = l.at("class_name"), name = l.at("config").value("name", l.value("name", ""));
  const json& cfg = l.at("config");
  if (cls == "InputLayer") {
    auto shape = cfg.at("batch_input_shape");
    if (shape.size() != 4 || shape[3] != 3) throw Error("the model's input is not an RGB image (NHWC, 3 channels)");
    if (shape[1].is_number()) g_.input_h = as_int(shape[1]);
    if (shape[2].is_number()) g_.input_w = as_int(shape[2]);
    values_[name] = Value{"input", {0, 0, 0, 0}};
  } else if (cls == "ZeroPadding2D") {
    Value v = input_of(l, 1)[0];
    auto p = zero_padding(cfg);
    for (int i = 0; i < 4; ++i) v.pad[i] += p[i];
    values_[name] = v;
  } else if (cls == "Conv2D" || cls == "MaxPooling2D") {
    window(l, cls, name, cfg);
  } else if (cls == "BatchNormalization") {
    batch_norm(l, name, cfg);
  } else if (cls == "Activation" || cls == "ReLU") {
    activation(l, cls, name, cfg);
  } else if (cls == "Add") {
    auto ins = input_of(l, 2);
    for (auto& v : ins)
      if (v.pad != std::array<int, 4>{0, 0, 0, 0}) throw Error("layer '" + name + "' adds padded values: unsupported");
    Op op;
    op.kind = Op::Add;
    op.name = name;
    op.inputs = {ins[0].name, ins[1].name};
    push(op, name);
  } else if (cls == "GlobalAveragePooling2D") {
    Value in = input_of(l, 1)[0];
    Op op;
    op.kind = Op::GlobalAvgPool;
    op.name = name;
    op.inputs = {in.name};
    push(op, name);
    g_.features = name;
  } else if (cls == "Flatten" || cls == "Dropout") {
    values_[name] = input_of(l, 1)[0];
  } else if (cls == "Dense") {
    dense(l, name, cfg);
  } else {
    throw Error("layer '" + name + "' is a " + cls + ", which Petal cannot import");
  }
}

// Conv2D or MaxPooling2D: kernel, strides and padding (a pending ZeroPadding2D becomes explicit).
void KerasImporter::window(const json& l, const std::string& cls, const std::string& name, const json& cfg) {
  Value in = input_of(l, 1)[0];
  Op op;
  op.kind = cls == "Conv2D" ? Op::Conv : Op::MaxPool;
  op.name = name;
  op.inputs = {in.name};
  auto ks = cls == "Conv2D" ? cfg.at("kernel_size") : cfg.at("pool_size");
  op.kh = as_int(ks.at(0));
  op.kw = as_int(ks.at(1));
  op.sh = as_int(cfg.at("strides").at(0));
  op.sw = as_int(cfg.at("strides").at(1));
  if (op.kh < 1 || op.kw < 1 || op.sh < 1 || op.sw < 1 || op.kh > 64 || op.kw > 64 || op.sh > 64 || op.sw > 64)
    throw Error("layer '" + name + "' has an invalid kernel size or stride");
  if (cfg.value("data_format", "channels_last") != "channels_last")
    throw Error("layer '" + name + "' is channels_first: unsupported");
  if (cls == "Conv2D" && (cfg.value("dilation_rate", json::array({1, 1})) != json::array({1, 1}) || cfg.value("groups", json(1)) != json(1)))
    throw Error("layer '" + name + "' uses dilation or groups: unsupported");
  const std::string padding = cfg.at("padding");
  if (padding == "same") {
    if (in.pad != std::array<int, 4>{0, 0, 0, 0})
      throw Error("layer '" + name + "' combines ZeroPadding2D and 'same' padding: unsupported");
    op.same = !(op.kh == 1 && op.kw == 1 && op.sh == 1 && op.sw == 1);
  } else if (padding == "valid") {
    op.pad = in.pad;
  } else {
    throw Error("layer '" + name + "' has padding '" + padding + "': unsupported");
  }
  if (op.kind == Op::MaxPool && in.pad != std::array<int, 4>{0, 0, 0, 0}) {
    // Keras pads with zeros before max-pooling; XNNPACK pads with -inf. The result is the
    // same only when the input is non-negative (after ReLU), which we check.
    auto it = producer_.find(in.name);
    if (it == producer_.end() || !g_.ops[it->second].relu)
      throw Error("layer '" + name + "' max-pools zero-padded values that may be negative: unsupported");
  }
  if (op.kind == Op::Conv) conv_weights(op, name, cfg);
  else op.cin = op.cout = 0;
  push(op, name);
}

// A Conv2D's weights (Keras HWIO -> XNNPACK OHWI), bias and activation.
void KerasImporter::conv_weights(Op& op, const std::string& name, const json& cfg) {
  const Tensor& k = need(name + "/kernel", name);
  if (k.shape.size() != 4 || int(k.shape[0]) != op.kh || int(k.shape[1]) != op.kw)
    throw Error("weight '" + name + "/kernel' has the wrong shape");
  op.cin = int(k.shape[2]);
  op.cout = int(k.shape[3]);
  if (op.cout != as_int(cfg.at("filters"))) throw Error("weight '" + name + "/kernel' does not match 'filters'");
  Tensor w;
  w.shape = {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)};
  w.data.resize(w.numel());
  for (int y = 0; y < op.kh; ++y)
    for (int x = 0; x < op.kw; ++x)
      for (int i = 0; i < op.cin; ++i)
        for (int o = 0; o < op.cout; ++o)
          w.data[((size_t(o) * op.kh + y) * op.kw + x) * op.cin + i] = k.data[((size_t(y) * op.kw + x) * op.cin + i) * op.cout + o];
  Tensor b = bias(name, cfg, op.cout);
  const std::string act = cfg.value("activation", "linear");
  if (act == "relu") op.relu = true;
  else if (act != "linear") throw Error("layer '" + name + "' has activation '" + act + "': unsupported");
  m_.tensors[name + ".weight"] = std::move(w);
  m_.tensors[name + ".bias"] = std::move(b);
}

// BatchNormalization folded into the convolution before it, with the epsilon of its config.
void KerasImporter::batch_norm(const json& l, const std::string& name, const json& cfg) {
  const std::string in_name = inbound_names(l).at(0);
  Value in = input_of(l, 1)[0];
  Op& conv = foldable_producer(in_name, in, name);
  if (conv.kind != Op::Conv || conv.relu) throw Error("layer '" + name + "' does not follow a convolution: unsupported");
  auto axis = cfg.at("axis");
  int ax = as_int(axis.is_array() ? axis.at(0) : axis);
  if (ax != 3 && ax != -1) throw Error("layer '" + name + "' normalises axis " + std::to_string(ax) + ": unsupported");
  const double eps = cfg.at("epsilon");
  const size_t C = size_t(conv.cout);
  auto vec = [&](const std::string& p, float dflt) {
    const Tensor* t = weights_(name + "/" + p);
    if (!t) {
      if ((p == "gamma" && !cfg.value("scale", true)) || (p == "beta" && !cfg.value("center", true)))
        return std::vector<float>(C, dflt);
      throw Error("the model has no weight '" + name + "/" + p + "'");
    }
    if (t->numel() != C) throw Error("weight '" + name + "/" + p + "' has the wrong size");
    return t->data;
  };
  auto gamma = vec("gamma", 1.f), beta = vec("beta", 0.f), mean = vec("moving_mean", 0.f), var = vec("moving_variance", 1.f);
  Tensor& w = m_.tensors[conv.name + ".weight"];
  Tensor& b = m_.tensors[conv.name + ".bias"];
  const size_t per = w.numel() / C;
  for (size_t o = 0; o < C; ++o) {
    const double s = gamma[o] / std::sqrt(double(var[o]) + eps);
    for (size_t i = 0; i < per; ++i) w.data[o * per + i] = float(w.data[o * per + i] * s);
    b.data[o] = float((b.data[o] - mean[o]) * s + beta[o]);
  }
  values_[name] = in;
}

// A ReLU folded into the convolution or add before it; a linear activation is nothing.
void KerasImporter::activation(const json& l, const std::string& cls, const std::string& name, const json& cfg) {
  const std::string act = cls == "ReLU" ? "relu" : cfg.at("activation").get<std::string>();
  const std::string in_name = inbound_names(l).at(0);
  Value in = input_of(l, 1)[0];
  if (act == "linear") {
    values_[name] = in;
    return;
  }
  if (act != "relu") throw Error("layer '" + name + "' has activation '" + act + "': unsupported");
  if (cls == "ReLU" && (cfg.value("max_value", json()).is_number() || cfg.value("negative_slope", 0.0) != 0.0))
    throw Error("layer '" + name + "' is a clipped or leaky ReLU: unsupported");
  Op& p = foldable_producer(in_name, in, name);
  if (p.kind != Op::Conv && p.kind != Op::Add) throw Error("layer '" + name + "' follows a " + p.name + ": unsupported");
  p.relu = true;
  values_[name] = in;
}

// The ImageNet classifier: one Dense layer right after the pooling.
void KerasImporter::dense(const json& l, const std::string& name, const json& cfg) {
  Value in = input_of(l, 1)[0];
  if (in.name != g_.features || !g_.logits.empty())
    throw Error("layer '" + name + "': only one Dense layer right after global average pooling is supported");
  const Tensor& k = need(name + "/kernel", name);
  if (k.shape.size() != 2) throw Error("weight '" + name + "/kernel' has the wrong shape");
  Op op;
  op.kind = Op::Dense;
  op.name = name;
  op.inputs = {in.name};
  op.cin = int(k.shape[0]);
  op.cout = int(k.shape[1]);
  Tensor w;
  w.shape = {size_t(op.cout), size_t(op.cin)};
  w.data.resize(w.numel());
  for (int i = 0; i < op.cin; ++i)
    for (int o = 0; o < op.cout; ++o) w.data[size_t(o) * op.cin + i] = k.data[size_t(i) * op.cout + o];
  m_.tensors[name + ".weight"] = std::move(w);
  m_.tensors[name + ".bias"] = bias(name, cfg, op.cout);
  push(op, name);
  g_.logits = name;
  g_.num_logits = op.cout;
}

// Channel bookkeeping: walk once to find the feature width and check conv input channels.
void KerasImporter::check_channels() {
  std::map<std::string, int> channels{{"input", 3}};
  for (Op& op : g_.ops) {
    for (auto& in : op.inputs)
      if (!channels.count(in)) throw Error("op '" + op.name + "' reads an unknown value '" + in + "'");
    const int c = channels[op.inputs[0]];
    switch (op.kind) {
      case Op::Conv:
        if (op.cin != c) throw Error("layer '" + op.name + "' expects " + std::to_string(op.cin) + " channels, gets " + std::to_string(c));
        channels[op.name] = op.cout;
        break;
      case Op::Add:
        if (channels[op.inputs[1]] != c) throw Error("layer '" + op.name + "' adds tensors of different widths");
        channels[op.name] = c;
        break;
      case Op::Dense:
        if (op.cin != c) throw Error("layer '" + op.name + "' expects " + std::to_string(op.cin) + " features, gets " + std::to_string(c));
        channels[op.name] = op.cout;
        break;
      default:
        channels[op.name] = c;
    }
  }
  g_.feature_dim = channels[g_.features];
}

}  // namespace

static ImportedBackbone import_keras_layers_impl(const std::string& layers_text, const WeightLookup& weights) {
  json layers;
  try {
    layers = json::parse(layers_text);
  } catch (const std::exception& e) {
    throw Error(std::string("the model's layer list is not valid JSON: ") + e.what());
  }
  return KerasImporter(layers, weights).run();
}

ImportedBackbone import_keras_layers(const std::string& layers_text, const WeightLookup& weights) {
  try {
    return import_keras_layers_impl(layers_text, weights);
  } catch (const json::exception& e) {  // a key missing or of the wrong type in the layer list
    throw Error(std::string("the model's layer list is malformed (") + json_reason(e) + ")");
  }
}

static ImportedBackbone import_tfjs_impl(const std::string& model_json,
                                        const std::function<std::vector<uint8_t>(const std::string&)>& read_shard) {
  json mj;
  try {
    mj = json::parse(model_json);
  } catch (const std::exception& e) {
    throw Error(std::string("model.json is not valid JSON: ") + e.what());
  }
  if (!mj.is_object() || !mj.contains("modelTopology") || !mj.contains("weightsManifest"))
    throw Error("model.json is not a TensorFlow.js layers model (no modelTopology/weightsManifest)");
  json topo = mj["modelTopology"];
  json cfg = topo.contains("model_config") ? topo["model_config"] : topo;
  if (!cfg.is_object() || (cfg.value("class_name", "") != "Model" && cfg.value("class_name", "") != "Functional"))
    throw Error("model.json holds a " + cfg.value("class_name", std::string("?")) + ", not a Keras functional Model");
  std::map<std::string, Tensor> raw;
  for (auto& group : mj["weightsManifest"]) {
    std::vector<uint8_t> buf;
    for (auto& p : group.at("paths")) {
      auto part = read_shard(p.get<std::string>());
      buf.insert(buf.end(), part.begin(), part.end());
    }
    size_t off = 0;
    for (auto& w : group.at("weights")) {
      const std::string name = w.at("name");
      if (w.value("dtype", "float32") != "float32" || w.contains("quantization"))
        throw Error("weight '" + name + "' is not plain float32 (quantized TF.js models are unsupported)");
      Tensor t;
      size_t numel = 1;  // bounded by the shard bytes, so the product cannot overflow
      for (auto& d : w.at("shape")) {
        const int v = as_int(d);
        if (v < 0) throw Error("weight '" + name + "' has a negative dimension");
        t.shape.push_back(size_t(v));
        numel = v == 0 || numel == 0 ? 0 : numel > buf.size() / 4 / size_t(v) ? buf.size() + 1 : numel * size_t(v);
      }
      const size_t bytes = numel > buf.size() ? buf.size() + 1 : numel * 4;
      if (off + bytes > buf.size())
        throw Error("the weight shards end before weight '" + name + "'; a shard file is missing or truncated");
      t.data.resize(t.numel());
      if (bytes) std::memcpy(t.data.data(), buf.data() + off, bytes);  // a 0-element weight has no storage
      off += bytes;
      raw[name] = std::move(t);
    }
    if (off != buf.size()) throw Error("the weight shards are larger than the manifest says; they do not belong to this model.json");
  }
  auto lookup = [&](const std::string& key) -> const Tensor* {
    auto it = raw.find(key);
    return it == raw.end() ? nullptr : &it->second;
  };
  return import_keras_layers(cfg.at("config").at("layers").dump(), lookup);
}

ImportedBackbone import_tfjs(const std::string& model_json,
                             const std::function<std::vector<uint8_t>(const std::string&)>& read_shard) {
  try {
    return import_tfjs_impl(model_json, read_shard);
  } catch (const json::exception& e) {
    throw Error(std::string("model.json is malformed (") + json_reason(e) + "); it is not a TensorFlow.js layers model Petal can read");
  }
}

static std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

ImportedBackbone import_tfjs_dir(const std::string& dir) {
  auto mj = read_file(dir + "/model.json");
  return import_tfjs(std::string(mj.begin(), mj.end()), [&](const std::string& p) {
    if (p.find("..") != std::string::npos || (!p.empty() && p[0] == '/'))
      throw Error("model.json names a shard outside its folder: '" + p + "'");
    return read_file(dir + "/" + p);
  });
}

Bundle make_backbone_bundle(const ImportedBackbone& m, const std::vector<std::string>& imagenet_labels) {
  Bundle b;
  b.tensors = m.tensors;
  b.metadata["format"] = "petal-bundle";
  b.metadata["format_version"] = std::to_string(kBundleFormatVersion);
  b.metadata["architecture"] = "resnet50";
  b.metadata["input_size"] = std::to_string(m.graph.input_h) + "x" + std::to_string(m.graph.input_w);
  b.metadata["preprocessing"] = "caffe";  // RGB->BGR, minus ImageNet channel means
  b.metadata["resize"] = "triangle";      // antialiased bilinear, aspect ratio not kept
  b.metadata["graph"] = m.graph.to_json();
  if (!imagenet_labels.empty()) b.metadata["imagenet_labels"] = json(imagenet_labels).dump();
  return b;
}

}  // namespace petal
