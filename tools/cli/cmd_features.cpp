// petal features: photos → the backbone's pooled features (text, or one JSON document).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "error.h"
#include "photo_features.h"

namespace petal::cli {
using nlohmann::json;

void register_features(CLI::App& app) {
  auto* cmd = app.add_subcommand("features", "Print the backbone's pooled features of photos");
  static std::vector<std::string> images;
  static std::string model;
  static bool as_json = false;
  static int threads = 0;
  cmd->add_option("images", images, "image files (JPEG, PNG, BMP, GIF)")->required();
  cmd->add_option("--model", model, "model bundle (default: the imported ResNet-50 backbone)");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->callback([] {
    Engine engine(load_model(model.empty() ? default_backbone_path() : model), size_t(threads));
    auto res = analyse(engine, images, false);
    bool failed = false;
    json doc = {{"feature_dim", engine.feature_dim()}, {"images", json::array()}};
    for (size_t i = 0; i < images.size(); ++i) {
      failed |= !res[i].error.empty();
      if (as_json) {
        json e = {{"file", images[i]}};
        if (res[i].error.empty()) e["features"] = res[i].features;
        else e["error"] = res[i].error;
        doc["images"].push_back(e);
      } else if (res[i].error.empty()) {
        std::printf("%s", images[i].c_str());
        for (float f : res[i].features) std::printf(" %.6g", f);
        std::printf("\n");
      }
    }
    if (as_json) std::printf("%s\n", doc.dump().c_str());
    if (failed) throw Error("some images could not be read (see above)");
  });
}

}  // namespace petal::cli
