// Training recipes for the classifier head on frozen ResNet-50 features, and the pieces the
// data set commands share (load a data set + its cached features, the head-only bundle layout).
// model/TRAINING.md measures each ingredient of the default recipe.
#pragma once
#include <string>
#include <vector>

#include "bundle.h"
#include "dataset.h"
#include "feature_cache.h"
#include "head.h"

namespace petal::cli {

struct Recipe {
  std::string name;
  Preprocessing prep;
  bool flips = false;  // mirrored photos' features as extra training examples
  std::vector<int> extra_views;  // more views (crops, ids of all_views() from 2) as extra training examples
  int hidden = 512;
  TrainOptions train;
};
// "tutorial": the Keras transfer-learning tutorial as written (raw 0–255 pixels at 180², no
// augmentation, Dense(512, ReLU) → Dense(N), Adam 1e-3, batch 32, 10 epochs).
// "petal" (default): caffe-preprocessed 288² inputs plus everything measured to help.
Recipe recipe_by_name(const std::string& name);
std::vector<std::string> recipe_names();
// "crop85,crop85-flip" → view ids (no duplicates; "none" or "" → none). Throws petal::Error.
std::vector<int> parse_views(const std::string& list);
std::string views_string(const std::vector<int>& views);

// Index a data set, print Keras's lines and one warning per non-image file (unless quiet).
Dataset open_dataset(const std::string& dir, double split, uint32_t seed, bool quiet = false);
// Seed options are uint32 in numpy; CLI11 reads them into int64 so that we can say what is wrong.
uint32_t checked_seed(int64_t s);
// The backbone bundle at `path`, or the one `petal import` made (tools/setup.sh) when empty.
Bundle load_backbone(const std::string& path);

// Features a recipe trains on: every training photo in each of the recipe's views, the validation
// photos as they are (augmented views are for training only; a changed split computes what it lacks).
// `which` leaves out the other half (Subset::All: both).
struct SplitFeatures {
  FeatureTable train, val;
};
SplitFeatures split_features(const Dataset& d, const Recipe& r, FeatureSource& src, FeatureCache& cache,
                             Subset which = Subset::All);

// The feature bank a bundle carries for teaching (petal export): for each class, `per_class` of its
// photos in `photos` (view 0), chosen by numpy's shuffle with seed + class index; appended.
void choose_bank(const FeatureTable& photos, size_t classes, size_t per_class, uint32_t seed, std::vector<float>& features,
                 std::vector<int32_t>& labels);
// Which rows choose_bank takes, in its order: indices into `labels` (one class index per photo).
std::vector<size_t> bank_rows(const std::vector<int32_t>& labels, size_t classes, size_t per_class, uint32_t seed);

// A trained head (and its feature bank, if any) as a head-only bundle (head_only_bundle,
// wasm/head_bundle.h) that also says how it was made ("recipe", "training" JSON, "backbone_id")
// and the preprocessing it expects.
Bundle head_bundle(const Bundle& backbone, const std::string& backbone_id, const Head& head,
                   const std::vector<std::string>& class_names, const Preprocessing& prep, const std::string& recipe,
                   const std::string& training_json, const std::vector<float>& bank_features = {},
                   const std::vector<int32_t>& bank_labels = {});

}  // namespace petal::cli
