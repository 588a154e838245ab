#include "engine.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "error.h"
#include "head_bundle.h"
#include "image.h"
#include "onnx_export.h"
#include "petal_limits.h"

namespace petal {
using nlohmann::json;

namespace {
// Class names compare without regard to ASCII case: "Roses" and "roses" are one class to a reader.
bool same_class_name(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}
}  // namespace

std::string class_name_problem(const std::string& name, const std::vector<std::string>& others) {
  if (name.empty()) return "a class name cannot be empty";
  if (name.size() > limits::kMaxClassNameBytes) {
    size_t cut = 20;  // quote the start of the name without splitting a UTF-8 character
    while (cut > 0 && (uint8_t(name[cut]) & 0xC0) == 0x80) --cut;
    return "class name '" + name.substr(0, cut) + "…' is longer than " + std::to_string(limits::kMaxClassNameBytes) + " bytes";
  }
  for (auto& o : others)
    if (same_class_name(name, o)) return "there is already a class '" + o + "'";
  return "";
}

void validate_class_names(const std::vector<std::string>& names) {
  if (names.size() < 2) throw Error("a classifier needs at least 2 classes, got " + std::to_string(names.size()));
  if (names.size() > limits::kMaxClasses)
    throw Error("too many classes (" + std::to_string(names.size()) + "); the limit is " + std::to_string(limits::kMaxClasses));
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string why = class_name_problem(names[i], {names.begin(), names.begin() + i});
    if (!why.empty()) throw Error(why);
  }
}

std::vector<std::string> parse_class_names(const std::string& text) {
  try {
    auto v = json::parse(text).get<std::vector<std::string>>();
    return v;
  } catch (const std::exception&) {
    throw Error("the model bundle's class names are not a JSON list of strings");
  }
}

std::string class_names_json(const std::vector<std::string>& names) { return json(names).dump(); }

Graph bundle_graph(const Bundle& bundle) {
  Graph g = Graph::from_json(bundle.meta("graph"));
  // A head trained at another input size (petal train --image-size) says so in "input_size"; the
  // backbone (convolutions and a global average pool) runs at any size, and must run at that one.
  if (auto is = bundle.metadata.find("input_size"); is != bundle.metadata.end()) {
    int h = 0, w = 0;
    char x = 0, rest = 0;
    if (std::sscanf(is->second.c_str(), "%d%c%d%c", &h, &x, &w, &rest) != 3 || x != 'x')
      throw Error("the model bundle's input_size '" + is->second + "' is not HEIGHTxWIDTH; re-export the model");
    if (const std::string p = limits::input_size_problem(h, w); !p.empty())
      throw Error("the model bundle's input_size " + p + "; re-export the model");
    g.input_h = h;
    g.input_w = w;
  }
  return g;
}

Engine::Engine(const Bundle& bundle, size_t threads) : Engine(Bundle(bundle), threads) {}

Engine::Engine(Bundle&& bundle, size_t threads) {
  auto it = bundle.metadata.find("format");
  if (it == bundle.metadata.end() || it->second != "petal-bundle")
    throw Error("this file is a safetensors file but not a Petal model bundle (metadata 'format' is not 'petal-bundle')");
  const Graph g = bundle_graph(bundle);
  if (bundle.metadata.count("preprocessing") && bundle.meta("preprocessing") != "caffe")
    throw Error("the model bundle asks for preprocessing '" + bundle.meta("preprocessing") + "', which Petal does not know");
  for (auto& [name, t] : bundle.tensors)
    if (name.rfind("head.", 0) != 0 && name.rfind("bank.", 0) != 0) backbone_tensors_.tensors[name] = std::move(t);
  for (auto& [k, v] : bundle.metadata)
    if (k != "class_names" && k != "head_shape") backbone_tensors_.metadata[k] = v;
  backbone_ = std::make_unique<Backbone>(g, backbone_tensors_, threads);
  if (bundle.metadata.count("imagenet_labels")) imagenet_labels_ = parse_class_names(bundle.meta("imagenet_labels"));
  load_head_and_bank(bundle);
}

void Engine::load_head_and_bank(const Bundle& bundle) {
  const int dim = feature_dim();
  if (bundle.has("head.dense1.weight")) {
    Head h = Head::load(bundle);
    if (h.in() != dim)
      throw Error("the model's head expects " + std::to_string(h.in()) + " features but this backbone gives " + std::to_string(dim));
    auto names = parse_class_names(bundle.meta("class_names"));
    if (int(names.size()) != h.classes())
      throw Error("the model bundle has " + std::to_string(names.size()) + " class names for a head with " +
                  std::to_string(h.classes()) + " outputs");
    set_head(std::move(h), std::move(names));
  }
  if (bundle.has("bank.features")) {
    const Tensor& f = bundle.get("bank.features");
    const Tensor& l = bundle.get("bank.labels");
    if (f.shape.size() != 2 || f.shape[1] != size_t(dim) || l.numel() != f.shape[0])
      throw Error("the model bundle's feature bank has the wrong shape");
    std::vector<int32_t> labels;
    for (float y : l.data) {  // check before converting: a float out of int range is undefined
      if (!(y >= 0 && y < float(class_names_.size()))) throw Error("the model bundle's feature bank has a label outside its classes");
      labels.push_back(int32_t(y));
    }
    set_bank(f.data, std::move(labels));
  }
}

void Engine::import_head(const Bundle& b) {
  auto it = b.metadata.find("format");
  if (it == b.metadata.end() || it->second != "petal-bundle") throw Error("the file is not a Petal model bundle");
  if (!b.has("head.dense1.weight")) throw Error("the model bundle has no classifier head; export a trained model (petal train, or the page's Export)");
  // Features only mean the same when the photos are prepared the same way.
  const std::string size = std::to_string(input_size()) + "x" + std::to_string(input_size());
  if (auto s = b.metadata.find("input_size"); s != b.metadata.end() && s->second != size)
    throw Error("the model was trained on " + s->second + " photos, but this engine runs at " + size +
                "; train it with --image-size " + std::to_string(input_size()) + " (petal train) to use it here");
  if (auto p = b.metadata.find("preprocessing"); p != b.metadata.end() && p->second != "caffe")
    throw Error("the model was trained with '" + p->second + "' preprocessing, but this engine uses caffe; train it with --recipe petal");
  const std::vector<std::string> old_names = class_names_;
  std::vector<float> old_bank = bank_features_;
  std::vector<int32_t> old_labels = bank_labels_;
  Head old_head = head_;
  try {
    load_head_and_bank(b);
  } catch (...) {  // all or nothing
    head_ = std::move(old_head);
    class_names_ = old_names;
    bank_features_ = std::move(old_bank);
    bank_labels_ = std::move(old_labels);
    throw;
  }
  if (!b.has("bank.features")) {  // keep the bank's rows of the classes the new head knows too
    const size_t D = size_t(feature_dim());
    std::vector<float> f;
    std::vector<int32_t> l;
    for (size_t i = 0; i < old_labels.size(); ++i) {
      auto at = std::find(class_names_.begin(), class_names_.end(), old_names[size_t(old_labels[i])]);
      if (at == class_names_.end()) continue;
      f.insert(f.end(), old_bank.begin() + i * D, old_bank.begin() + (i + 1) * D);
      l.push_back(int32_t(at - class_names_.begin()));
    }
    set_bank(std::move(f), std::move(l));
  }
}

TeachBase Engine::teach_base() const {
  return {has_head() ? &head_ : nullptr, &class_names_, bank_features_.data(), bank_labels_.data(), bank_labels_.size()};
}

TeachResult Engine::teach(const Lesson& lesson, const TeachOptions& opt,
                          const std::function<bool(const EpochStats&)>& on_epoch,
                          const std::function<void(size_t, size_t)>& on_progress) {
  TeachResult r = petal::teach(teach_base(), lesson, opt, on_epoch, on_progress, pool());
  set_head(std::move(r.head), r.class_names);  // the engine's now: read it with head()
  return r;
}

std::vector<float> Engine::features_of_inputs(const float* inputs, size_t n, std::vector<float>* logits) {
  std::vector<float> f(n * feature_dim());
  if (logits && graph().num_logits) {
    logits->resize(n * graph().num_logits);
    backbone_->run(inputs, n, f.data(), logits->data());
  } else {
    backbone_->run(inputs, n, f.data(), nullptr);
  }
  return f;
}

std::vector<float> Engine::features_of_bytes(const uint8_t* data, size_t size, bool flip, std::vector<float>* logits) {
  auto input = image_to_input(data, size, graph().input_h, graph().input_w, flip);
  return features_of_inputs(input.data(), 1, logits);
}

static std::vector<Prediction> top_k(const float* scores, int n, int k, const std::vector<std::string>& names);

Explained Engine::explain_bytes(const uint8_t* data, size_t size, int k, int cls) {
  return explain_image(decode_image(data, size), k, cls);
}

Explained Engine::explain_image(const Image& rgb, int k, int cls) {
  if (!has_head()) throw Error("this model has no classifier head; a heatmap shows where a trained head looks");
  if (cls < -1 || cls >= head_.classes()) throw Error("no class " + std::to_string(cls) + " in this model");
  const Graph& g = graph();
  const Backbone::MapShape ms = backbone_->feature_map_shape();
  if (ms.c != g.feature_dim) throw Error("this backbone gives no feature map to draw a heatmap from");
  std::vector<float> input(size_t(g.input_h) * g.input_w * 3);
  preprocess_caffe(resize_image(rgb, g.input_w, g.input_h), input.data());
  Explained e;
  e.features.resize(size_t(g.feature_dim));
  std::vector<float> map(backbone_->feature_map_size());
  backbone_->run(input.data(), 1, e.features.data(), nullptr, map.data());
  auto p = head_.predict(e.features.data(), 1, pool());
  e.top = top_k(p.data(), head_.classes(), std::max(k, 1), class_names_);
  e.heatmap = class_activation_map(head_, map.data(), ms.h, ms.w, ms.c, e.features.data(), cls < 0 ? e.top[0].index : cls);
  if (k < 1) e.top.clear();
  return e;
}

static std::vector<Prediction> top_k(const float* scores, int n, int k, const std::vector<std::string>& names) {
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  k = std::max(0, std::min(k, n));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  std::vector<Prediction> r;
  for (int i = 0; i < k; ++i)
    r.push_back({idx[i], idx[i] < int(names.size()) ? names[idx[i]] : std::to_string(idx[i]), scores[idx[i]]});
  return r;
}

std::vector<Prediction> Engine::imagenet_top(const float* logits, int k) const {
  const int n = graph().num_logits;
  if (n == 0) throw Error("this model has no ImageNet classifier");
  std::vector<float> p(logits, logits + n);
  softmax_rows(p.data(), 1, n);
  return top_k(p.data(), n, k, imagenet_labels_);
}

void Engine::set_head(Head head, std::vector<std::string> class_names) {
  validate_class_names(class_names);
  if (int(class_names.size()) != head.classes()) throw Error("class names do not match the head's outputs");
  if (head.in() != feature_dim()) throw Error("the head does not fit this backbone's features");
  head_ = std::move(head);
  class_names_ = std::move(class_names);
}

std::vector<Prediction> Engine::classify_features(const float* features, int k) const {
  if (!has_head()) throw Error("this model has no classifier head yet; train one first");
  auto p = head_.predict(features, 1, pool());
  return top_k(p.data(), head_.classes(), k, class_names_);
}

void Engine::set_bank(std::vector<float> features, std::vector<int32_t> labels) {
  if (features.size() != labels.size() * size_t(feature_dim())) throw Error("feature bank size mismatch");
  bank_features_ = std::move(features);
  bank_labels_ = std::move(labels);
}

Bundle Engine::to_bundle(bool with_backbone) const {
  Bundle head = head_only_bundle(backbone_tensors_.metadata, has_head() ? &head_ : nullptr, class_names_, bank_features_, bank_labels_);
  return with_backbone ? merge_head_bundle(backbone_tensors_, head) : head;
}

std::string Engine::to_onnx() {
  if (!has_head()) throw Error("this model has no classifier head yet; train one first");
  Bundle b;
  b.metadata = backbone_tensors_.metadata;
  b.metadata["class_names"] = class_names_json(class_names_);
  // The backbone's tensors move into `b` (swapping the maps copies nothing) and come back
  // whatever happens; the backbone itself never reads them again (wasm/backbone.cpp).
  struct GiveBack {
    Bundle &lent, &owner;
    ~GiveBack() {
      for (auto it = lent.tensors.begin(); it != lent.tensors.end();)
        it = it->first.rfind("head.", 0) == 0 ? lent.tensors.erase(it) : std::next(it);
      owner.tensors.swap(lent.tensors);
    }
  } give_back{b, backbone_tensors_};
  b.tensors.swap(backbone_tensors_.tensors);
  head_.save(b);
  return export_onnx(bundle_graph(b), b);
}

}  // namespace petal
