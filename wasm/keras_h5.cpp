// Keras HDF5 weights reader (native only): resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5.
//
// The file holds weights only. Layout (Keras `save_weights`, or `model.save` with the weights under
// a `model_weights` group): root attribute `layer_names` (strings); one group per layer with an
// attribute `weight_names` (e.g. "conv1/kernel:0", or Keras-1 style "conv1_W:0"), and a dataset at
// `<layer>/<weight_name>` for each. Keras itself loads weights by position within a layer, so we
// take them by name when the name says which parameter it is, otherwise by position.
//
// The ResNet-50 topology is generated here as a Keras layer list in the layout of a TF.js
// model.json (keras-applications resnet50.py, as serialised by Keras 2.2.4) and handed to
// import_keras_layers() with a lookup that reads each weight from the file on demand.
#include <hdf5.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>

#include "error.h"
#include "keras_import.h"

namespace petal {
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// The topology
struct Topology {
  json layers = json::array();
  // Per layer with weights: the parameters in Keras order and their expected shapes.
  std::map<std::string, std::vector<std::pair<std::string, std::vector<size_t>>>> params;
  std::vector<std::string> weighted;  // layers with weights, in order
};

// Two Keras ResNet-50s ship weights files of the same name:
//  - K2017: keras-applications resnet50.py, weights from fchollet/deep-learning-models v0.2
//    (layers conv1, bn_conv1, res2a_branch2a, ..., fc1000; BatchNormalization epsilon 1e-3);
//    the TF.js package's model.json is this one.
//  - K2019: keras.applications.resnet (tf.keras 2.x, Keras 3), weights from
//    storage.googleapis.com/tensorflow/keras-applications/resnet/ (layers conv1_conv, conv1_bn,
//    conv2_block1_1_conv, ..., predictions; epsilon 1.001e-5; Add([shortcut, x])).
enum class Naming { K2017, K2019 };

class ResNet50Builder {
 public:
  explicit ResNet50Builder(bool include_top, Naming naming = Naming::K2017)
      : k19_(naming == Naming::K2019), eps_(k19_ ? 1.001e-5 : 0.001) {
    add("input_1", "InputLayer", {{"batch_input_shape", {nullptr, 224, 224, 3}}, {"dtype", "float32"}, {"sparse", false}}, {});
    add("conv1_pad", "ZeroPadding2D", {{"padding", {{3, 3}, {3, 3}}}, {"data_format", "channels_last"}}, {"input_1"});
    std::string x = conv(k19_ ? "conv1_conv" : "conv1", "conv1_pad", 3, 64, 7, 2, "valid");
    x = relu(bn(k19_ ? "conv1_bn" : "bn_conv1", x, 64), k19_ ? "conv1_relu" : "");
    add("pool1_pad", "ZeroPadding2D", {{"padding", {{1, 1}, {1, 1}}}, {"data_format", "channels_last"}}, {x});
    const std::string pool = k19_ ? "pool1_pool" : "max_pooling2d";
    add(pool, "MaxPooling2D",
        {{"pool_size", {3, 3}}, {"padding", "valid"}, {"strides", {2, 2}}, {"data_format", "channels_last"}}, {"pool1_pad"});
    x = pool;
    int c = 64;
    const struct { int stage, blocks, f1, f3, stride; } stages[] = {
        {2, 3, 64, 256, 1}, {3, 4, 128, 512, 2}, {4, 6, 256, 1024, 2}, {5, 3, 512, 2048, 2}};
    for (auto& s : stages)
      for (int b = 0; b < s.blocks; ++b) {
        x = k19_ ? block2019(x, s.stage, b + 1, c, s.f1, s.f3, b == 0 ? s.stride : 0)
                 : block(x, s.stage, char('a' + b), c, s.f1, s.f3, b == 0 ? s.stride : 0);
        c = s.f3;
      }
    add("avg_pool", "GlobalAveragePooling2D", {{"data_format", "channels_last"}}, {x});
    if (include_top) {
      const std::string fc = k19_ ? "predictions" : "fc1000";
      add(fc, "Dense", {{"units", 1000}, {"activation", "softmax"}, {"use_bias", true}}, {"avg_pool"});
      weights(fc, {{"kernel", {2048, 1000}}, {"bias", {1000}}});
    }
  }
  Topology take() { return std::move(t_); }

 private:
  void add(const std::string& name, const char* cls, json cfg, const std::vector<std::string>& inputs) {
    cfg["name"] = name;
    if (std::string(cls) != "InputLayer") cfg["trainable"] = true;
    cfg["dtype"] = "float32";
    json nodes = json::array();
    if (!inputs.empty()) {
      json node = json::array();
      for (auto& in : inputs) node.push_back({in, 0, 0, json::object()});
      nodes.push_back(node);
    }
    t_.layers.push_back({{"name", name}, {"class_name", cls}, {"config", cfg}, {"inbound_nodes", nodes}});
  }
  void weights(const std::string& layer, std::vector<std::pair<std::string, std::vector<size_t>>> p) {
    t_.params[layer] = std::move(p);
    t_.weighted.push_back(layer);
  }
  std::string conv(const std::string& name, const std::string& in, int cin, int filters, int k, int stride,
                   const char* padding) {
    add(name, "Conv2D",
        {{"filters", filters}, {"kernel_size", {k, k}}, {"strides", {stride, stride}}, {"padding", padding},
         {"data_format", "channels_last"}, {"dilation_rate", {1, 1}}, {"activation", "linear"}, {"use_bias", true}},
        {in});
    weights(name, {{"kernel", {size_t(k), size_t(k), size_t(cin), size_t(filters)}}, {"bias", {size_t(filters)}}});
    return name;
  }
  std::string bn(const std::string& name, const std::string& in, int c) {
    add(name, "BatchNormalization",
        {{"axis", {3}}, {"momentum", 0.99}, {"epsilon", eps_}, {"center", true}, {"scale", true}}, {in});
    const std::vector<size_t> s{size_t(c)};
    weights(name, {{"gamma", s}, {"beta", s}, {"moving_mean", s}, {"moving_variance", s}});
    return name;
  }
  std::string relu(const std::string& in, std::string name = "") {
    if (name.empty()) name = acts_ ? "activation_" + std::to_string(acts_) : "activation";
    ++acts_;
    add(name, "Activation", {{"activation", "relu"}}, {in});
    return name;
  }
  // keras-applications' conv_block (stride > 0: projection shortcut) or identity_block.
  std::string block(const std::string& in, int stage, char b, int cin, int f1, int f3, int stride) {
    const std::string base = std::to_string(stage) + b + "_branch";
    const int s = stride > 0 ? stride : 1;
    std::string x = relu(bn("bn" + base + "2a", conv("res" + base + "2a", in, cin, f1, 1, s, "valid"), f1));
    x = relu(bn("bn" + base + "2b", conv("res" + base + "2b", x, f1, f1, 3, 1, "same"), f1));
    std::string y = conv("res" + base + "2c", x, f1, f3, 1, 1, "valid");
    std::string shortcut = in;
    if (stride > 0) {  // Keras 2.2.4 serialises both convolutions before both normalisations
      const std::string sc = conv("res" + base + "1", in, cin, f3, 1, s, "valid");
      y = bn("bn" + base + "2c", y, f3);
      shortcut = bn("bn" + base + "1", sc, f3);
    } else {
      y = bn("bn" + base + "2c", y, f3);
    }
    const std::string name = adds_ ? "add_" + std::to_string(adds_) : "add";
    ++adds_;
    add(name, "Add", json::object(), {y, shortcut});
    return relu(name);
  }

  // keras.applications.resnet's block1 (stride > 0: projection shortcut).
  std::string block2019(const std::string& in, int stage, int b, int cin, int f1, int f3, int stride) {
    const std::string n = "conv" + std::to_string(stage) + "_block" + std::to_string(b);
    const int s = stride > 0 ? stride : 1;
    std::string shortcut = in;
    if (stride > 0) shortcut = bn(n + "_0_bn", conv(n + "_0_conv", in, cin, f3, 1, s, "valid"), f3);
    std::string x = relu(bn(n + "_1_bn", conv(n + "_1_conv", in, cin, f1, 1, s, "valid"), f1), n + "_1_relu");
    x = relu(bn(n + "_2_bn", conv(n + "_2_conv", x, f1, f1, 3, 1, "same"), f1), n + "_2_relu");
    x = bn(n + "_3_bn", conv(n + "_3_conv", x, f1, f3, 1, 1, "valid"), f3);
    add(n + "_add", "Add", json::object(), {shortcut, x});
    return relu(n + "_add", n + "_out");
  }

  Topology t_;
  bool k19_;
  double eps_;
  int acts_ = 0, adds_ = 0;
};

// ---------------------------------------------------------------------------------------------
// HDF5 helpers: RAII for ids, and string attributes.
struct Id {
  hid_t id = H5I_INVALID_HID;
  herr_t (*close)(hid_t) = nullptr;
  Id() = default;
  Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& o) noexcept : id(o.id), close(o.close) { o.id = H5I_INVALID_HID; }
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id = o.id;
      close = o.close;
      o.id = H5I_INVALID_HID;
    }
    return *this;
  }
  ~Id() { reset(); }
  void reset() {
    if (id >= 0 && close) close(id);
    id = H5I_INVALID_HID;
  }
  bool ok() const { return id >= 0; }
  operator hid_t() const { return id; }
};

constexpr size_t kMaxAttrBytes = 16u << 20;  // a layer-name list of ResNet-50 is ~3 kB

// Reads a 1-D (or scalar) string attribute. Returns false when `name` is absent; an attribute
// holding zero elements (Keras writes `weight_names = []` as an empty float array) gives {}.
bool read_string_list(hid_t obj, const char* name, std::vector<std::string>& out, const std::string& what) {
  out.clear();
  const htri_t ex = H5Aexists(obj, name);
  if (ex <= 0) return false;
  Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) throw Error(what + ": cannot read attribute '" + name + "'");
  Id space(H5Aget_space(attr), H5Sclose);
  Id type(H5Aget_type(attr), H5Tclose);
  if (!space.ok() || !type.ok()) throw Error(what + ": cannot read attribute '" + name + "'");
  const H5S_class_t sc = H5Sget_simple_extent_type(space);
  if (sc == H5S_NULL) return true;
  const int rank = H5Sget_simple_extent_ndims(space);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (rank < 0 || rank > 1 || n < 0) throw Error(what + ": attribute '" + name + "' is not a list");
  if (n == 0) return true;
  if (H5Tget_class(type) != H5T_STRING) throw Error(what + ": attribute '" + name + "' is not a list of strings");
  const size_t count = size_t(n);
  Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem, H5Tget_cset(type));
  if (H5Tis_variable_str(type) > 0) {
    if (count > kMaxAttrBytes / sizeof(char*)) throw Error(what + ": attribute '" + name + "' is impossibly large");
    H5Tset_size(mem, H5T_VARIABLE);
    std::vector<char*> ptrs(count, nullptr);
    if (H5Aread(attr, mem, ptrs.data()) < 0) throw Error(what + ": cannot read attribute '" + name + "'");
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(mem, space, H5P_DEFAULT, ptrs.data());
  } else {
    const size_t len = H5Tget_size(type);
    if (len == 0 || len > kMaxAttrBytes || count > kMaxAttrBytes / len)
      throw Error(what + ": attribute '" + name + "' is impossibly large");
    H5Tset_size(mem, len);
    H5Tset_strpad(mem, H5T_STR_NULLPAD);
    std::vector<char> buf(len * count);
    if (H5Aread(attr, mem, buf.data()) < 0) throw Error(what + ": cannot read attribute '" + name + "'");
    for (size_t i = 0; i < count; ++i) out.emplace_back(buf.data() + i * len, strnlen(buf.data() + i * len, len));
  }
  return true;
}

// External links point into other files; a weights file has no business following them.
herr_t refuse_external_link(const char*, const char*, const char*, const char*, unsigned*, hid_t, void*) { return -1; }

std::string shape_str(const std::vector<size_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

// "conv1/kernel:0" → "kernel"; "bn_conv1_running_mean:0" → "bn_conv1_running_mean"
std::string param_of(const std::string& weight_name) {
  std::string s = weight_name;
  const size_t colon = s.rfind(':');
  if (colon != std::string::npos) s.resize(colon);
  const size_t slash = s.rfind('/');
  return slash == std::string::npos ? s : s.substr(slash + 1);
}

class H5Weights {
 public:
  H5Weights(hid_t file, std::string what, const Topology& topo) : what_(std::move(what)), topo_(topo) {
    lapl_ = Id(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose);
    if (!lapl_.ok() || H5Pset_elink_cb(lapl_, refuse_external_link, nullptr) < 0)
      throw Error("the HDF5 library failed to set up (property list)");
    gapl_ = Id(H5Pcreate(H5P_GROUP_ACCESS), H5Pclose);
    if (!gapl_.ok() || H5Pset_elink_cb(gapl_, refuse_external_link, nullptr) < 0)
      throw Error("the HDF5 library failed to set up (property list)");
    // Weights-only file: attributes on the root. Full-model file: under 'model_weights'.
    root_ = Id(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose);
    if (!root_.ok()) throw Error(what_ + " has no root group; the HDF5 file is damaged");
    std::vector<std::string> names;
    if (!read_string_list(root_, "layer_names", names, what_)) {
      if (H5Lexists(root_, "model_weights", H5P_DEFAULT) > 0) {
        Id g(H5Gopen2(root_, "model_weights", gapl_), H5Gclose);
        if (g.ok() && read_string_list(g, "layer_names", names, what_)) root_ = std::move(g);
      }
      if (names.empty())
        throw Error(what_ + " is an HDF5 file but not Keras weights (no 'layer_names' attribute); use "
                    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 from Keras");
    }
    for (auto& n : names) layer_names_.insert(n);
  }

  bool has_layer(const std::string& l) const { return layer_names_.count(l) != 0; }

  const Tensor* get(const std::string& key) {
    auto cached = cache_.find(key);
    if (cached != cache_.end()) return &cached->second;
    const size_t slash = key.find('/');
    if (slash == std::string::npos) return nullptr;
    const std::string layer = key.substr(0, slash), param = key.substr(slash + 1);
    auto pit = topo_.params.find(layer);
    if (pit == topo_.params.end()) return nullptr;
    const auto& expected = pit->second;
    size_t pos = 0;
    while (pos < expected.size() && expected[pos].first != param) ++pos;
    if (pos == expected.size()) return nullptr;
    if (!has_layer(layer))
      throw Error(what_ + " has no weights for layer '" + layer +
                  "'; it is not a complete Keras ResNet-50 weights file (resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5)");
    if (H5Lexists(root_, layer.c_str(), H5P_DEFAULT) <= 0)
      throw Error(what_ + " lists layer '" + layer + "' but has no group for it; the file is damaged");
    Id g(H5Gopen2(root_, layer.c_str(), gapl_), H5Gclose);
    if (!g.ok()) throw Error(what_ + ": cannot open the group of layer '" + layer + "'; the file is damaged");
    std::vector<std::string> wn;
    read_string_list(g, "weight_names", wn, what_ + ", layer '" + layer + "'");
    if (wn.size() != expected.size()) {
      std::string want;
      for (auto& [p, s] : expected) want += (want.empty() ? "" : ", ") + p;
      throw Error(what_ + ": layer '" + layer + "' has " + std::to_string(wn.size()) + " weights, expected " +
                  std::to_string(expected.size()) + " (" + want + "); this is not Keras ResNet-50 weights");
    }
    // By name when the names say which parameter they are (Keras 2), else by position (Keras 1).
    std::string weight_name = wn[pos];
    for (auto& w : wn)
      if (param_of(w) == param) weight_name = w;
    Tensor t = read_dataset(g, layer, weight_name, expected[pos].second, key);
    return &(cache_[key] = std::move(t));
  }

 private:
  Tensor read_dataset(hid_t g, const std::string& layer, const std::string& weight_name,
                      const std::vector<size_t>& shape, const std::string& key) {
    const std::string where = "weight '" + key + "' ('" + layer + "/" + weight_name + "')";
    Id ds(H5Dopen2(g, weight_name.c_str(), lapl_), H5Dclose);
    if (!ds.ok()) throw Error(what_ + " has no dataset for " + where + "; the file is damaged or incomplete");
    Id dcpl(H5Dget_create_plist(ds), H5Pclose);
    if (!dcpl.ok()) throw Error(what_ + ": cannot read " + where);
    if (H5Pget_external_count(dcpl) != 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL)
      throw Error(what_ + ": " + where + " keeps its data in another file, which Petal does not follow");
    Id space(H5Dget_space(ds), H5Sclose);
    Id type(H5Dget_type(ds), H5Tclose);
    if (!space.ok() || !type.ok()) throw Error(what_ + ": cannot read " + where);
    if (H5Tget_class(type) != H5T_FLOAT) throw Error(what_ + ": " + where + " is not floating point");
    const int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > 8) throw Error(what_ + ": " + where + " has an invalid shape");
    hsize_t dims[8] = {};
    H5Sget_simple_extent_dims(space, dims, nullptr);
    std::vector<size_t> got(dims, dims + rank);
    if (got != shape)
      throw Error(what_ + ": " + where + " has shape " + shape_str(got) + ", expected " + shape_str(shape) +
                  "; this is not the Keras ResNet-50 (channels-last) weights file");
    Tensor t;
    t.shape = shape;
    t.data.resize(t.numel());
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data.data()) < 0)
      throw Error(what_ + ": cannot read the values of " + where + "; the file is truncated or damaged");
    return t;
  }

  std::string what_;
  const Topology& topo_;
  Id root_, lapl_, gapl_;
  std::set<std::string> layer_names_;
  std::map<std::string, Tensor> cache_;
};

// The HDF5 library keeps global state; one import at a time.
std::mutex& h5_mutex() {
  static std::mutex m;
  return m;
}

ImportedBackbone import_from(hid_t fapl, const std::string& open_name, const std::string& what) {
  Id file(H5Fopen(open_name.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!file.ok()) throw Error(what + " is damaged: the HDF5 library cannot open it");
  ImportedBackbone m;
  {
    // Which file is it? Which Keras naming, with top (fc1000/predictions) or without.
    const Topology probe = ResNet50Builder(false).take();
    H5Weights w(file, what, probe);
    const Naming naming = w.has_layer("conv1_conv") ? Naming::K2019 : Naming::K2017;
    const bool top = w.has_layer(naming == Naming::K2019 ? "predictions" : "fc1000");
    const Topology topo = ResNet50Builder(top, naming).take();
    H5Weights weights(file, what, topo);
    m = import_keras_layers(topo.layers.dump(), [&](const std::string& k) { return weights.get(k); });
  }
  return m;
}

struct SilenceH5 {  // no HDF5 error stacks on stderr: we report our own one-line messages
  H5E_auto2_t func = nullptr;
  void* data = nullptr;
  SilenceH5() {
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~SilenceH5() { H5Eset_auto2(H5E_DEFAULT, func, data); }
};

bool has_hdf5_signature(const uint8_t* d, size_t n) {
  static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  // The superblock sits at 0, 512, 1024, 2048, ... (a user block may precede it).
  for (size_t off = 0; off + 8 <= n; off = off ? off * 2 : 512)
    if (std::memcmp(d + off, sig, 8) == 0) return true;
  return false;
}

}  // namespace

std::string resnet50_keras_layers(bool include_top) { return ResNet50Builder(include_top).take().layers.dump(); }

ImportedBackbone import_keras_h5(const std::string& path) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  SilenceH5 quiet;
  const std::string what = "'" + path + "'";
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open " + what + ": " + std::strerror(errno));
  uint8_t head[8] = {};
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  if (n == 0) throw Error(what + " is empty (0 bytes); expected a Keras HDF5 weights file (.h5)");
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw Error(what + " is not an HDF5 file; expected Keras weights such as resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5");
  return import_from(H5P_DEFAULT, path, what);
}

ImportedBackbone import_keras_h5_bytes(const uint8_t* data, size_t size, const std::string& what) {
  std::lock_guard<std::mutex> lock(h5_mutex());
  SilenceH5 quiet;
  if (size == 0) throw Error(what + " is empty (0 bytes); expected a Keras HDF5 weights file (.h5)");
  if (!has_hdf5_signature(data, size))
    throw Error(what + " is not an HDF5 file; expected Keras weights such as resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5");
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.ok() || H5Pset_fapl_core(fapl, 1 << 20, false) < 0 ||
      H5Pset_file_image(fapl, const_cast<uint8_t*>(data), size) < 0)
    throw Error("the HDF5 library failed to set up (file image)");
  return import_from(fapl, "petal-in-memory.h5", what);
}

}  // namespace petal
