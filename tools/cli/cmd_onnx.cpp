// petal onnx: a Petal model → an ONNX model, for ONNX Runtime (native, node, web) and
// anything else that reads ONNX. Same input as the engine (NHWC, caffe-preprocessed).
#include <filesystem>

#include "common.h"
#include "engine.h"
#include "error.h"
#include "onnx_export.h"

namespace petal::cli {

void register_onnx(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "onnx", "Export a model as ONNX: the backbone (features + ImageNet logits) or the full classifier (probabilities)");
  static std::string model, out;
  static bool no_head = false, no_logits = false;
  cmd->add_option("model", model, "model bundle (a backbone, a full model, or a head-only bundle + the default backbone)")
      ->required();
  cmd->add_option("-o,--output", out, "ONNX file to write")->required();
  cmd->add_flag("--no-head", no_head, "export the backbone only, even when the model has a trained head");
  cmd->add_flag("--no-logits", no_logits, "leave out the ImageNet classifier (features only) when exporting the backbone");
  cmd->callback([] {
    const Bundle b = load_model(model);
    auto it = b.metadata.find("format");
    if (it == b.metadata.end() || it->second != "petal-bundle")
      throw Error("'" + model + "' is a safetensors file but not a Petal model bundle");
    const Graph g = bundle_graph(b);
    OnnxOptions o;
    o.head = !no_head;
    o.logits = !no_logits;
    OnnxSummary s;
    const std::string bytes = export_onnx(g, b, o, &s);
    const auto parent = std::filesystem::path(out).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      throw Error("the folder of '" + out + "' does not exist");
    write_file(out, bytes);
    std::string outs;
    for (auto& n : s.outputs) outs += (outs.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "petal: wrote %s (%.1f MB, %zu nodes, %.1f M parameters; input NHWC %dx%dx3, outputs: %s)\n",
                 out.c_str(), double(bytes.size()) / 1e6, s.nodes, double(s.parameters) / 1e6, g.input_h, g.input_w,
                 outs.c_str());
  });
}

}  // namespace petal::cli
