// petal extract DATA: the backbone features of every photo (and of the recipe's augmented views)
// computed once, into the feature cache.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "dataset.h"
#include "feature_cache.h"
#include "petal_limits.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

void register_extract(CLI::App& app) {
  auto* cmd = app.add_subcommand("extract", "Compute the backbone features of every photo once, into the feature cache");
  static std::string data, model, recipe = "petal", prep_mode, subset = "all";
  static double split = 0.2;
  static int64_t seed = 123;
  static int size = 0, threads = 0;
  static std::string views;
  static bool flips = false, no_flips = false, no_augment = false, as_json = false;
  static CLI::Option* o_views;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("--model", model, "backbone bundle (default: the imported ResNet-50)");
  cmd->add_option("--recipe", recipe, "take preprocessing and augmented views from this recipe (petal, tutorial)")->capture_default_str();
  cmd->add_option("--preprocessing", prep_mode, "caffe or raw (default: the recipe's)");
  cmd->add_option("--image-size", size, "input size (default: the recipe's; 224 or 180)")->check(CLI::Range(petal::limits::kMinInputSide, petal::limits::kMaxInputSide));
  cmd->add_flag("--flips", flips, "also the training photos mirrored left-right");
  cmd->add_flag("--no-flips", no_flips, "not the mirrored photos");
  o_views = cmd->add_option("--views", views, "crop views of the training photos, e.g. crop85,crop85-flip, or none (default: the recipe's)");
  cmd->add_flag("--no-augment", no_augment, "the photos only: no mirror images, no crops");
  cmd->add_option("--subset", subset, "training, validation or all (augmented views: training photos only)")->capture_default_str();
  cmd->add_option("--validation-split", split, "fraction held out for validation")->capture_default_str();
  cmd->add_option("--seed", seed, "shuffle seed (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--threads", threads, "threads for the backbone (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    Recipe r = recipe_by_name(recipe);
    if (!prep_mode.empty()) r.prep.mode = prep_mode;
    if (size) r.prep.size = size;
    if (flips) r.flips = true;
    if (no_flips) r.flips = false;
    if (o_views->count()) r.extra_views = parse_views(views);
    if (no_augment) {
      r.flips = false;
      r.extra_views.clear();
    }
    Dataset d = open_dataset(data, split, checked_seed(seed));
    Bundle b = load_backbone(model);
    FeatureSource src(b, r.prep, size_t(threads));
    FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
    const SplitFeatures sf = split_features(d, r, src, cache, parse_subset(subset));
    size_t with = 0, computed = 0, from_cache = 0;
    double seconds = 0;
    std::vector<Skipped> skipped;
    for (const FeatureTable* part : {&sf.train, &sf.val}) {
      const FeatureTable& t = *part;
      with += t.files.size();
      computed += t.computed;
      from_cache += t.from_cache;
      seconds += t.seconds;
      skipped.insert(skipped.end(), t.skipped.begin(), t.skipped.end());
    }
    const double rate = seconds > 0 ? double(computed) / seconds : 0;
    const std::string views_desc = std::string(r.flips ? "flip" : "") + (r.flips && !r.extra_views.empty() ? "," : "") +
                                   (r.extra_views.empty() ? "" : views_string(r.extra_views));
    if (as_json) {
      json j = {{"photos", with + skipped.size()}, {"with_features", with}, {"flips", r.flips},
                {"views", views_string(r.extra_views)}, {"preprocessing", r.prep.key()}, {"computed", computed},
                {"from_cache", from_cache}, {"skipped", skipped_json(skipped)}, {"seconds", seconds},
                {"inputs_per_second", rate}, {"cache", cache.path()}, {"cache_entries", cache.size()}};
      std::printf("%s\n", j.dump(1).c_str());
    } else {
      std::printf("features of %zu photos%s (%s): %zu computed (%.1f inputs/s), %zu from the cache, %zu skipped, %.1f s\n", with,
                  views_desc.empty() ? "" : (" + training views " + views_desc).c_str(), r.prep.key().c_str(), computed, rate,
                  from_cache, skipped.size(), seconds);
      std::printf("cache: %s (%zu entries)\n", cache.path().c_str(), cache.size());
    }
  });
}

}  // namespace petal::cli
