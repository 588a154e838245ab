// petal teach MODEL -o OUT (--class NAME PHOTO... | --folder DIR): what the page's Train button
// does, from the command line. The model learns the labelled photos (a new class, more photos of
// a class it knows, corrections) through teach() (wasm/teach.h) and says how well each class is
// expected to do, measured on photos left out of training.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compute_pool.h"
#include "dataset.h"
#include "error.h"
#include "photo_features.h"
#include "recipes.h"
#include "teach.h"

namespace petal::cli {
using nlohmann::json;

namespace {

// The features of each (path, class) photo, appended to `x`, and its class to `labels`; a photo that
// cannot be read or decoded is left out (analyse says which and why).
void lesson_features(Engine& engine, const std::vector<std::pair<std::string, std::string>>& items, std::vector<float>& x,
                     std::vector<std::string>& labels) {
  std::vector<std::string> paths;
  for (auto& item : items) paths.push_back(item.first);
  const std::vector<Analysed> got = analyse(engine, paths, false);
  for (size_t i = 0; i < got.size(); ++i) {
    if (!got[i].error.empty()) continue;
    x.insert(x.end(), got[i].features.begin(), got[i].features.end());
    labels.push_back(items[i].second);
  }
}

}  // namespace

void register_teach(CLI::App& app) {
  auto* cmd = app.add_subcommand("teach", "Teach a trained model new photos: a new class from a few, or corrections (as the page's Train)");
  static std::string model, out, class_name, folder;
  static std::vector<std::string> photos;
  static int threads = 0;
  static int64_t seed = -1;
  static bool as_json = false;
  cmd->add_option("model", model, "trained model (head-only bundle with its feature bank, or the page's full bundle)")->required();
  cmd->add_option("photos", photos, "photos of --class");
  cmd->add_option("-o,--output", out, "head-only model bundle to write (.safetensors), for the page's Import or petal predict --model")->required();
  cmd->add_option("--class", class_name, "the class of the photos: a new name adds a class");
  cmd->add_option("--folder", folder, "or: a folder with one sub-folder of photos per class (every photo is taught)");
  cmd->add_option("--seed", seed, "seed of the training (default: teach's)");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    if (folder.empty() == (class_name.empty() || photos.empty()))
      throw Error("give either --class NAME with its photos, or --folder DIR with one sub-folder per class");
    Bundle b = load_model(model);
    if (!b.has("head.dense1.weight")) throw Error("'" + model + "' has no trained head to teach; train one with petal train first");
    Engine engine(std::move(b), size_t(threads));
    std::vector<std::pair<std::string, std::string>> items;  // path, class
    if (!folder.empty()) {
      DatasetOptions o;
      o.validation_split = 0;
      o.shuffle = false;
      Dataset d = index_directory(folder, o);
      for (auto& f : d.files) items.push_back({f.path, d.class_names[size_t(f.label)]});
    } else {
      for (auto& p : photos) items.push_back({p, class_name});
    }
    const size_t D = size_t(engine.feature_dim());
    std::vector<float> x;
    std::vector<std::string> labels;
    lesson_features(engine, items, x, labels);
    if (labels.empty()) throw Error("none of the photos could be read");
    TeachOptions opt;
    if (seed >= 0) opt.seed = uint64_t(seed);
    const TeachBase base{&engine.head(), &engine.class_names(), engine.bank_features().data(), engine.bank_labels().data(),
                         engine.bank_labels().size()};
    const Lesson lesson{x.data(), nullptr, &labels, labels.size(), D};
    if (base.bank_rows == 0)
      std::fprintf(stderr, "petal: warning: '%s' has no feature bank, so its classes are kept only by the head itself; export it with petal export to include one\n",
                   model.c_str());
    ComputePool pool{size_t(threads)};
    Progress tbar("teaching", 1000, "step");
    TeachResult t = teach(base, lesson, opt, {}, [&](size_t d, size_t total) { tbar.update(d * 1000 / total); }, pool.get());
    tbar.finish();
    engine.set_head(t.head, t.class_names);
    std::error_code ec;
    const auto parent = std::filesystem::path(out).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    save_bundle_file(engine.to_bundle(false), out, DType::F32);
    if (as_json) {
      json est = json::array();
      for (auto& e : t.estimates)
        est.push_back({{"class", e.name}, {"new", e.is_new}, {"photos", e.photos}, {"tested", e.tested}, {"recall", e.recall},
                       {"recall_low", e.low}, {"recall_high", e.high}, {"confused_with", e.confused_with}, {"hint", estimate_hint(e)}});
      json j = {{"output", out}, {"classes", t.class_names}, {"photos", labels.size()}, {"bank_rows", t.bank_rows},
                {"user_rows", t.user_rows}, {"estimates", est}};
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    std::printf("taught %zu photos (with %zu rows of the model's feature bank); wrote %s\n", labels.size(), t.bank_rows, out.c_str());
    std::printf("expected recall per class, measured on photos left out of training (%d-fold):\n", opt.estimate_folds);
    auto pct = [](double v) { return std::to_string(int(100 * v + 0.5)); };
    for (auto& e : t.estimates) {
      std::printf("  %-20s %s", e.name.c_str(), e.recall >= 0 ? (pct(e.recall) + " %").c_str() : "   -");
      std::printf("  (%s%d tested%s)", e.recall >= 0 ? ("likely " + pct(e.low) + "-" + pct(e.high) + " %; ").c_str() : "", e.tested,
                  e.is_new ? ", new class" : "");
      const std::string hint = estimate_hint(e);
      if (!hint.empty()) std::printf("  %s", hint.c_str());
      std::printf("\n");
    }
  });
}

}  // namespace petal::cli
