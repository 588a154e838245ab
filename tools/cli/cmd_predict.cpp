// petal predict: photos → classes (a trained head's, or ImageNet's), optionally with heatmaps.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "common.h"
#include "error.h"
#include "photo_features.h"
#include "plot.h"

namespace petal::cli {
using nlohmann::json;

namespace {

// Like analyse, and each photo's heatmap drawn to `where` (the PNG for one photo, a folder for several).
std::vector<Analysed> draw_heatmaps(Engine& engine, const std::vector<std::string>& images, const std::string& where, int k) {
  namespace fs = std::filesystem;
  if (images.size() > 1) {
    std::error_code ec;
    fs::create_directories(where, ec);
    if (!fs::is_directory(where)) throw Error("--heatmap " + where + ": cannot make that folder (" + ec.message() + "); give a folder for several photos");
  }
  return for_each_image(images, "heatmaps", [&](const std::vector<uint8_t>& bytes, size_t i, Analysed& a) {
    const Image photo = decode_image(bytes.data(), bytes.size());
    const Explained x = engine.explain_image(photo, k);
    a.features = x.features;
    char caption[200];
    std::snprintf(caption, sizeof caption, "where it sees %s (%.1f%%)", x.top[0].label.c_str(), 100.0 * x.top[0].probability);
    const std::string png = images.size() > 1 ? (fs::path(where) / (fs::path(images[i]).stem().string() + ".heatmap.png")).string() : where;
    draw_heatmap(photo, x.heatmap, caption).save_png(png);
  });
}

json predictions_json(const std::vector<Prediction>& ps) {
  json a = json::array();
  for (auto& p : ps) a.push_back({{"index", p.index}, {"label", p.label}, {"probability", p.probability}});
  return a;
}

}  // namespace

void register_predict(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict", "Classify photos (default: the shipped flowers model; ImageNet classes with --model BACKBONE)");
  static std::vector<std::string> images;
  static std::string model;
  static int top = 0, threads = 0;
  static bool as_json = false, imagenet = false;
  static std::string heatmap;
  cmd->add_option("images", images, "image files (JPEG, PNG, BMP, GIF)")->required();
  cmd->add_option("--heatmap", heatmap,
                  "also draw where the model looks for its top class over each photo: a PNG file for one photo, a folder "
                  "(NAME.heatmap.png each) for several");
  cmd->add_option("-m,--model", model,
                  "model bundle (default: $PETAL_MODEL, else the shipped flowers model model/flowers-head.safetensors on the "
                  "default backbone; the ImageNet backbone when neither is found; give the backbone for ImageNet classes)");
  cmd->add_option("-k,--top", top, "how many classes to show (default 1 with a trained head, 5 for ImageNet)");
  cmd->add_flag("--imagenet", imagenet, "show ImageNet classes even when the model has a trained head");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->callback([] {
    std::string path = model;
    if (path.empty()) path = default_model_path();
    if (path.empty()) {
      path = default_backbone_path();
      std::fprintf(stderr, "petal: note: the shipped flowers model (model/flowers-head.safetensors) is not beside this petal and "
                           "PETAL_MODEL is not set; showing ImageNet classes (give --model or set PETAL_MODEL)\n");
    }
    Engine engine(load_model(path), size_t(threads));
    const bool use_head = engine.has_head() && !imagenet;
    if (!use_head && engine.graph().num_logits == 0)
      throw Error("this model has neither a trained head nor an ImageNet classifier");
    const int k = top > 0 ? top : use_head ? 1 : 5;
    if (!heatmap.empty() && !use_head) throw Error("--heatmap needs a trained head (the flowers model or --model HEAD), not ImageNet classes");
    auto res = heatmap.empty() ? analyse(engine, images, !use_head) : draw_heatmaps(engine, images, heatmap, k);
    json doc = {{"classes", use_head ? "model" : "imagenet"}, {"images", json::array()}};
    bool failed = false;
    for (size_t i = 0; i < images.size(); ++i) {
      if (!res[i].error.empty()) {
        failed = true;
        doc["images"].push_back({{"file", images[i]}, {"error", res[i].error}});
        continue;
      }
      auto ps = use_head ? engine.classify_features(res[i].features.data(), k) : engine.imagenet_top(res[i].logits.data(), k);
      if (as_json) {
        doc["images"].push_back({{"file", images[i]}, {"predictions", predictions_json(ps)}});
      } else {
        std::printf("%s:", images[i].c_str());
        for (auto& p : ps) std::printf("  %s %.1f%%", p.label.c_str(), 100.0 * p.probability);
        std::printf("\n");
      }
    }
    if (as_json) std::printf("%s\n", doc.dump(1).c_str());
    if (failed) throw Error("some images could not be read (see above)");
  });
}

}  // namespace petal::cli
