// libFuzzer target: the TF.js layers-model importer (import_tfjs) with in-memory shards, as
// `petal import --tfjs` reads a model folder. Input: model.json text, a NUL byte, then the shard
// bytes (handed out for the first shard path the manifest names; later paths get nothing).
// An imported model must make a bundle whose graph the engine's own validation accepts.
#include <cstdlib>
#include <cstring>

#include "bundle.h"
#include "error.h"
#include "graph.h"
#include "keras_import.h"

using namespace petal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t json_len = nul ? size_t(nul - data) : size;
  const std::string model_json(reinterpret_cast<const char*>(data), json_len);
  std::vector<uint8_t> shards;
  if (nul) shards.assign(nul + 1, data + size);
  int calls = 0;
  ImportedBackbone m;
  try {
    m = import_tfjs(model_json, [&](const std::string&) { return calls++ == 0 ? shards : std::vector<uint8_t>(); });
  } catch (const Error&) {
    return 0;
  }
  // Every tensor the graph names exists with the shape the op says.
  for (const Op& op : m.graph.ops) {
    if (op.kind != Op::Conv && op.kind != Op::Dense) continue;
    const Tensor& w = m.tensors.at(op.name + ".weight");
    const Tensor& b = m.tensors.at(op.name + ".bias");
    const size_t k = op.kind == Op::Conv ? size_t(op.kh) * size_t(op.kw) : 1;
    if (w.data.size() != size_t(op.cout) * k * size_t(op.cin) || w.numel() != w.data.size()) std::abort();
    if (b.data.size() != size_t(op.cout) || b.numel() != b.data.size()) std::abort();
  }
  Bundle bundle = make_backbone_bundle(m, {"a", "b"});
  auto bytes = write_bundle(bundle, DType::F16);
  Bundle r = read_bundle(bytes.data(), bytes.size(), "the imported bundle");
  try {
    Graph g = Graph::from_json(r.meta("graph"));
    if (g.to_json() != m.graph.to_json()) std::abort();
  } catch (const Error& e) {
    // The importer accepted a model whose bundle the engine refuses: tolerated only for input
    // sizes the engine does not run (it says so).
    if (!std::strstr(e.what(), "input size")) std::abort();
  }
  return 0;
}
