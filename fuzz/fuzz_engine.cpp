// libFuzzer target: a whole Engine from a bundle, as the page builds one from a file the user
// opens: read_bundle → Engine (graph validation, XNNPACK backbone on 1 thread, head, classes,
// bank) → one forward pass on a blank image when the graph is small → top-k from the head →
// to_bundle. XNNPACK itself is not instrumented; what this checks is that whatever Engine
// accepts, it can run.
#include <cstdlib>
#include <vector>

#include "bundle.h"
#include "engine.h"
#include "error.h"

using namespace petal;

static double macs(const Graph& g) {  // a rough cost bound, to keep each input fast
  double m = 0;
  for (const Op& op : g.ops)
    if (op.kind == Op::Conv) m += double(op.kh) * op.kw * op.cin * op.cout * (double(g.input_h) * g.input_w);
  return m;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    Bundle b = read_bundle(data, size, "the bundle");
    Engine e(b, 1);
    if (macs(e.graph()) <= 2e7) {
      const size_t n = size_t(e.graph().input_h) * e.graph().input_w * 3;
      std::vector<float> input(n + 16, 0.f), logits;
      auto f = e.features_of_inputs(input.data(), 1, &logits);
      if (f.size() != size_t(e.feature_dim())) std::abort();
      if (e.has_head()) {
        auto top = e.classify_features(f.data(), 3);
        if (top.empty()) std::abort();
      }
    }
    Bundle out = e.to_bundle(true);
    auto bytes = write_bundle(out);
    Bundle again = read_bundle(bytes.data(), bytes.size(), "the exported bundle");
    Engine e2(again, 1);  // what the engine exports, it can load
  } catch (const Error&) {
  }
  return 0;
}
