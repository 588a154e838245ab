// petal quantize: mark a model so that every engine that loads it (CLI, page) runs its convolutions
// in int8. The weights stay as they are (fp32 or fp16) and are quantised when the engine loads.
#include <filesystem>

#include "backbone.h"
#include "calibrate.h"
#include "common.h"
#include "error.h"
#include "head_bundle.h"

namespace petal::cli {

void register_quantize(CLI::App& app) {
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
    if (is_head_only(b))
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
}

}  // namespace petal::cli
