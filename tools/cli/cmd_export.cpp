// petal export: a trained model as the one file the page loads (backbone + head + class names +
// a compact feature bank), or as a head-only bundle.
//
// The feature bank is a sample of the *training* photos' features per class (stored fp16). When
// the page retrains the head on a user's new classes it mixes these in, so the default classes
// are not forgotten. The photos come from the folder the model was trained on (recorded in the
// model) or --data; their features come from the feature cache.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"
#include "graph.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

namespace {

// Drop the ImageNet classifier (fc1000 and the 1000 names) from a model bundle.
void drop_imagenet(Bundle& b) {
  Graph g = Graph::from_json(b.meta("graph"));
  if (g.logits.empty()) return;
  const std::string fc = g.logits;
  g.ops.erase(std::remove_if(g.ops.begin(), g.ops.end(), [&](const Op& op) { return op.name == fc; }), g.ops.end());
  for (const Op& op : g.ops)
    for (auto& in : op.inputs)
      if (in == fc) throw Error("the ImageNet classifier feeds another layer; it cannot be dropped");
  g.logits.clear();
  g.num_logits = 0;
  b.metadata["graph"] = g.to_json();
  b.tensors.erase(fc + ".weight");
  b.tensors.erase(fc + ".bias");
  b.metadata.erase("imagenet_labels");
}

}  // namespace

void register_export(CLI::App& app) {
  auto* cmd = app.add_subcommand("export", "Write a trained model as one bundle for the page (backbone + head + class names + feature bank)");
  static std::string model, out, data;
  static bool fp16 = false, no_imagenet = false, head_only = false, as_json = false;
  static int bank_per_class = 50, threads = 0;
  static int64_t bank_seed = 123;
  cmd->add_option("model", model, "trained model (head-only bundle from petal train, or a full bundle)")->required();
  cmd->add_option("-o,--output", out, "bundle to write (.safetensors)")->required();
  cmd->add_flag("--fp16", fp16, "store weights as fp16 (half the size; compute stays fp32)");
  cmd->add_option("--bank-per-class", bank_per_class, "training features kept per class for retraining in the page (0: none)")
      ->capture_default_str()->check(CLI::Range(0, 100000));
  cmd->add_option("--data", data, "photo folder the model was trained on (default: the one recorded in the model)");
  cmd->add_option("--bank-seed", bank_seed, "seed choosing the bank's photos")->capture_default_str();
  cmd->add_flag("--no-imagenet", no_imagenet, "leave out the ImageNet classifier (fc1000, 4 MB in fp16)");
  cmd->add_flag("--head-only", head_only, "write only the head, class names and bank (backbone=external)");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    Bundle b = load_model(model);
    if (!b.has("head.dense1.weight")) throw Error("'" + model + "' has no trained head; train one with petal train first");
    const Preprocessing prep = preprocessing_of(b);
    if (prep.mode != "caffe")
      throw Error("this head was trained on the tutorial's raw inputs, which the page does not use; train it with --recipe petal");
    if (no_imagenet) drop_imagenet(b);
    json training = json::object();
    if (b.metadata.count("training")) {
      try {
        training = json::parse(b.meta("training"));
      } catch (const std::exception&) {
      }
    }
    std::vector<float> bank;
    std::vector<int32_t> bank_labels;
    size_t bank_rows = 0;
    // A model that already carries a bank (a head-only bundle exported with one, as the
    // committed flowers head) keeps it unless --data asks for a new one: a machine without
    // the photos can still make the page's bundle.
    const bool keep_bank = data.empty() && b.has("bank.features");
    if (bank_per_class > 0 && !keep_bank) {
      std::string dir = data.empty() ? training.value("data", std::string()) : data;
      if (dir.empty())
        throw Error("the model does not say which photos it was trained on: give --data FOLDER, or --bank-per-class 0 for no bank");
      DatasetOptions o;
      o.validation_split = training.value("validation_split", 0.2);
      o.seed = training.value("seed", 123u);
      Dataset d = index_directory(dir, o);
      auto names = parse_class_names(b.meta("class_names"));
      if (d.class_names != names) throw Error("the classes in '" + dir + "' are not the model's; give the folder it was trained on with --data");
      FeatureSource src(b, prep, size_t(threads));
      FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(prep), src.dim());
      ExtractOptions eo;
      FeatureTable t = extract_features(d, subset_indices(d, Subset::Training), src, cache, eo);
      choose_bank(t, names.size(), size_t(bank_per_class), uint32_t(bank_seed), bank, bank_labels);
      bank_rows = bank_labels.size();
    }
    Engine engine(b, size_t(threads));
    if (bank_rows) engine.set_bank(std::move(bank), std::move(bank_labels));
    if (keep_bank) bank_rows = engine.bank_labels().size();
    Bundle outb = engine.to_bundle(!head_only);
    const auto parent = std::filesystem::path(out).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    save_bundle_file(outb, out, fp16 ? DType::F16 : DType::F32);
    const auto bytes = std::filesystem::file_size(out);
    const size_t head_params = engine.head().param_count();
    if (as_json) {
      json j = {{"output", out}, {"bytes", bytes}, {"fp16", fp16}, {"head_only", head_only}, {"imagenet", !no_imagenet && engine.graph().num_logits > 0},
                {"bank_rows", bank_rows}, {"classes", engine.class_names()}, {"head_params", head_params}};
      std::printf("%s\n", j.dump(1).c_str());
    } else {
      std::printf("wrote %s: %.1f MB (%s%s, head %zu params, %zu classes, feature bank %zu rows%s)\n", out.c_str(), double(bytes) / 1e6,
                  head_only ? "head only" : "backbone + head", fp16 ? ", fp16" : "", head_params, engine.class_names().size(), bank_rows,
                  !head_only && engine.graph().num_logits ? ", ImageNet classifier" : "");
    }
  });
}

}  // namespace petal::cli
