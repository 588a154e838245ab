#include "recipes.h"

#include <algorithm>

#include "engine.h"
#include "common.h"
#include "error.h"
#include "head_bundle.h"

namespace petal::cli {

Recipe recipe_by_name(const std::string& name) {
  Recipe r;
  r.name = name;
  r.train.epochs = 10;
  r.train.batch_size = 32;
  r.train.learning_rate = 1e-3f;
  r.train.seed = 123;
  if (name == "tutorial") {
    r.prep = {"raw", 180};
    return r;
  }
  if (name == "petal") {
    // model/TRAINING.md: each ingredient measured over 5 training seeds on flower_photos.
    r.prep = {"caffe", 288};  // +1.1 pt over 224 (ResNet-50's features are better a little above its training size)
    r.flips = true;
    r.extra_views = parse_views("crop85,crop85-flip");
    r.train.dropout = 0.5f;
    r.train.label_smoothing = 0.1f;
    r.train.cosine_decay = true;  // steadier across seeds than a constant rate
    r.train.mixup = 0.6f;         // +0.4 pt over 10 seeds, and a narrower spread
    return r;
  }
  throw Error("unknown recipe '" + name + "'; use tutorial or petal");
}

std::vector<std::string> recipe_names() { return {"petal", "tutorial"}; }

std::vector<int> parse_views(const std::string& list) {
  std::vector<int> ids;
  if (list.empty() || list == "none") return ids;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = list.find(',', start);
    const std::string name = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const int id = view_id(name);
    if (id < 2) throw Error("'" + name + "' is not a crop view; use --flips/--no-flips for the photo and its mirror image");
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return ids;
}

std::string views_string(const std::vector<int>& views) {
  std::string s;
  for (int v : views) s += (s.empty() ? "" : ",") + std::string(all_views()[size_t(v)].name);
  return s.empty() ? "none" : s;
}

// Index a data set, print Keras's lines and one warning per non-image file.
Dataset open_dataset(const std::string& dir, double split, uint32_t seed, bool quiet) {
  DatasetOptions o;
  o.validation_split = split;
  o.seed = seed;
  Dataset d = index_directory(dir, o);
  if (!quiet) {
    for (auto& s : d.not_images) std::fprintf(stderr, "petal: warning: skipped %s: %s\n", s.path.c_str(), s.reason.c_str());
    std::fprintf(stderr, "Found %zu files belonging to %zu classes.\n", d.files.size(), d.class_names.size());
    if (d.num_validation) {
      std::fprintf(stderr, "Using %zu files for training.\n", d.files.size() - d.num_validation);
      std::fprintf(stderr, "Using %zu files for validation.\n", d.num_validation);
    }
  }
  return d;
}

// Seed options are uint32 in numpy; CLI11 reads into int64 so that we can say what is wrong.
uint32_t checked_seed(int64_t s) {
  if (s < 0 || s > 0xffffffffll) throw Error("--seed must be between 0 and 4294967295 (numpy's limit)");
  return uint32_t(s);
}

SplitFeatures split_features(const Dataset& d, const Recipe& r, FeatureSource& src, FeatureCache& cache,
                             Subset which) {
  SplitFeatures f;
  if (which != Subset::Validation) {
    ExtractOptions eo;
    eo.flips = r.flips;
    eo.extra_views = r.extra_views;
    f.train = extract_features(d, subset_indices(d, Subset::Training), src, cache, eo);
  }
  if (which != Subset::Training) f.val = extract_features(d, subset_indices(d, Subset::Validation), src, cache, ExtractOptions{});
  return f;
}

Bundle load_backbone(const std::string& path) {
  const std::string p = path.empty() ? default_backbone_path() : path;
  try {
    return load_model(p);
  } catch (const Error& e) {
    if (path.empty())
      throw Error(std::string(e.what()) + " — the default backbone is made by tools/setup.sh (petal import); or give --model");
    throw;
  }
}

std::vector<size_t> bank_rows(const std::vector<int32_t>& labels, size_t classes, size_t per_class, uint32_t seed) {
  std::vector<size_t> out;
  for (size_t c = 0; c < classes; ++c) {
    std::vector<size_t> rows;
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == int32_t(c)) rows.push_back(i);
    const auto perm = numpy_shuffle_permutation(rows.size(), seed + uint32_t(c));
    for (size_t j = 0; j < std::min(rows.size(), per_class); ++j) out.push_back(rows[perm[j]]);
  }
  return out;
}

void choose_bank(const FeatureTable& photos, size_t classes, size_t per_class, uint32_t seed, std::vector<float>& features,
                 std::vector<int32_t>& labels) {
  const size_t D = photos.dim;
  for (size_t i : bank_rows(photos.labels, classes, per_class, seed)) {
    const float* f = &photos.features[i * D];
    features.insert(features.end(), f, f + D);
    labels.push_back(photos.labels[i]);
  }
}

Bundle head_bundle(const Bundle& backbone, const std::string& backbone_id, const Head& head,
                   const std::vector<std::string>& class_names, const Preprocessing& prep, const std::string& recipe,
                   const std::string& training_json, const std::vector<float>& bank_features,
                   const std::vector<int32_t>& bank_labels) {
  Bundle b = head_only_bundle(backbone.metadata, &head, class_names, bank_features, bank_labels);
  b.metadata["preprocessing"] = prep.mode;
  b.metadata["input_size"] = std::to_string(prep.size) + "x" + std::to_string(prep.size);
  b.metadata["recipe"] = recipe;
  b.metadata["training"] = training_json;
  b.metadata["backbone_id"] = backbone_id;
  return b;
}

}  // namespace petal::cli
