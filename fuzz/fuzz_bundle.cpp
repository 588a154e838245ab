// libFuzzer target: a model bundle file as the page receives it (a user may open any
// .safetensors). read_bundle, then the validation Engine applies before it builds the XNNPACK
// backbone: the graph (Graph::from_json), the head (Head::load, and one prediction), class
// names, ImageNet labels and the feature bank. Bundles that read must write back and read again
// to the same tensors.
#include <xnnpack.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "bundle.h"
#include "engine.h"
#include "error.h"
#include "graph.h"
#include "head.h"

using namespace petal;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (xnn_initialize(nullptr) != xnn_status_success) std::abort();
  return 0;
}

static bool same(const Tensor& a, const Tensor& b) {
  if (a.shape != b.shape || a.data.size() != b.data.size()) return false;
  for (size_t i = 0; i < a.data.size(); ++i)
    if (!(a.data[i] == b.data[i] || (std::isnan(a.data[i]) && std::isnan(b.data[i])))) return false;
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bundle b;
  try {
    b = read_bundle(data, size, "the bundle");
  } catch (const Error&) {
    return 0;
  }
  for (auto& [name, t] : b.tensors)
    if (t.data.size() != t.numel()) std::abort();
  // Round trip (F16 and I32 tensors are written as they were read).
  {
    auto bytes = write_bundle(b, DType::F32);
    Bundle r = read_bundle(bytes.data(), bytes.size(), "the rewritten bundle");
    if (r.metadata != b.metadata || r.tensors.size() != b.tensors.size()) std::abort();
    for (auto& [name, t] : b.tensors)
      if (!r.has(name) || !same(r.get(name), t)) std::abort();
  }
  // What Engine::Engine checks before it builds the backbone.
  int feature_dim = -1;
  try {
    if (b.metadata.count("graph")) {
      Graph g = Graph::from_json(b.meta("graph"));
      feature_dim = g.feature_dim;
      Graph g2 = Graph::from_json(g.to_json());
      if (g2.to_json() != g.to_json()) std::abort();
    }
  } catch (const Error&) {
  }
  try {
    if (b.metadata.count("imagenet_labels")) parse_class_names(b.meta("imagenet_labels"));
  } catch (const Error&) {
  }
  try {
    if (b.has("head.dense1.weight")) {
      Head h = Head::load(b);
      if (feature_dim >= 0 && h.in() != feature_dim) throw Error("mismatch");
      auto names = parse_class_names(b.meta("class_names"));
      validate_class_names(names);
      if (int(names.size()) != h.classes()) throw Error("mismatch");
      // One prediction on a zero feature vector: the loaded head's buffers must be consistent.
      if (size_t(h.in()) * size_t(h.hidden()) <= (1u << 22) && size_t(h.hidden()) * size_t(h.classes()) <= (1u << 22)) {
        std::vector<float> x(size_t(h.in()) + 64, 0.f);
        auto p = h.predict(x.data(), 1);
        if (p.size() != size_t(h.classes())) std::abort();
      }
      if (b.has("bank.features")) {
        const Tensor& f = b.get("bank.features");
        const Tensor& l = b.get("bank.labels");
        if (f.shape.size() != 2 || f.shape[1] != size_t(h.in()) || l.numel() != f.shape[0]) throw Error("bank shape");
        for (float y : l.data)
          if (!(y >= 0 && y < float(names.size()))) throw Error("bank label");
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
