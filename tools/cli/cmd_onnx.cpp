// petal onnx: a Petal model → an ONNX model, for ONNX Runtime (native, node, web) and
// anything else that reads ONNX. Same input as the engine (NHWC, caffe-preprocessed).
#include <filesystem>

#include "backbone.h"
#include "common.h"
#include "calibrate.h"
#include "engine.h"
#include "error.h"
#include "image.h"
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

  // int8: mark a model so that every engine that loads it (CLI, page) runs its convolutions in
  // int8. The weights stay as they are (fp32 or fp16) and are quantised when the engine loads.
  auto* quant = app.add_subcommand("quantize", "Mark a model to run its backbone's convolutions in int8 (QD8: faster, "
                                               "features within ~3% of fp32; see docs/benchmarks.md)");
  static std::string q_model, q_out;
  static bool q_fp32 = false;
  static std::string q_calibrate;
  static int q_photos = 64;
  quant->add_option("model", q_model, "model bundle (a backbone or a full model)")->required();
  quant->add_option("-o,--output", q_out, "bundle to write")->required();
  quant->add_flag("--fp32", q_fp32, "remove the mark instead (back to fp32)");
  quant->add_option("--calibrate", q_calibrate,
                    "photo folder (class sub-folders): measure activation ranges on photos of its training split "
                    "(80/20, seed 123) for static int8 (QS8: every activation int8, fastest)");
  quant->add_option("--calibration-photos", q_photos, "photos used by --calibrate")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  quant->callback([] {
    Bundle b = load_bundle_file(q_model);
    auto it = b.metadata.find("format");
    if (it == b.metadata.end() || it->second != "petal-bundle")
      throw Error("'" + q_model + "' is a safetensors file but not a Petal model bundle");
    if (b.metadata.count("backbone") && b.metadata.at("backbone") == "external")
      throw Error("'" + q_model + "' holds only a classifier head; quantize the backbone or a full model (petal export)");
    if (q_fp32) {
      b.tensors.erase(kInt8Marker);
      b.tensors.erase(kInt8RangesTensor);
    } else if (!q_calibrate.empty()) {
      const size_t n = calibrate_on_photos(b, q_calibrate, size_t(q_photos));
      std::fprintf(stderr, "petal: calibrated int8 ranges on %zu photos of %s\n", n, q_calibrate.c_str());
    } else {
      mark_int8(b);
      b.tensors.erase(kInt8RangesTensor);
    }
    const auto parent = std::filesystem::path(q_out).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent))
      throw Error("the folder of '" + q_out + "' does not exist");
    save_bundle_file(b, q_out, DType::F32);  // F32 stays F32, F16 stays F16
    std::fprintf(stderr, "petal: wrote %s (%s)\n", q_out.c_str(),
                 q_fp32                ? "fp32 backbone"
                 : q_calibrate.empty() ? "int8 convolutions: features differ from fp32 by up to ~3% of their largest value"
                                       : "static int8: every activation int8 with calibrated ranges");
  });

  // The exported model expects Petal's preprocessing; this writes exactly the tensor the engine
  // feeds its backbone, so other runtimes can be given (and checked on) the same input.
  auto* pre = app.add_subcommand("preprocess", "Write photos as the model's input tensor (n x H x W x 3 float32, "
                                               "little-endian), decoded and preprocessed exactly as the engine does");
  static std::vector<std::string> images;
  static std::string pre_out;
  static int size = 224;
  pre->add_option("images", images, "image files (JPEG, PNG, BMP, GIF)")->required();
  pre->add_option("-o,--output", pre_out, "file to write (raw float32, NHWC)")->required();
  pre->add_option("--size", size, "input size in pixels (the model's input; ResNet-50: 224)")
      ->capture_default_str()
      ->check(CLI::Range(32, 1024));
  pre->callback([] {
    std::string data;
    data.reserve(images.size() * size_t(size) * size * 3 * sizeof(float));
    for (auto& f : images) {
      auto bytes = read_file(f);
      std::vector<float> x;
      try {
        x = image_to_input(bytes.data(), bytes.size(), size, size);
      } catch (const Error& e) {
        throw Error("'" + f + "': " + e.what());
      }
      data.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
    }
    write_file(pre_out, data);
    std::fprintf(stderr, "petal: wrote %s (%zu x %d x %d x 3 float32)\n", pre_out.c_str(), images.size(), size, size);
  });
}

}  // namespace petal::cli
