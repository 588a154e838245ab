// The feature cache: the backbone's pooled features of each photo (and of its mirror image),
// computed once and kept on disk, keyed by the photo's content hash (SHA-256 of the file bytes),
// the backbone (SHA-256 of its graph and weights), the preprocessing (mode + size) and the view
// (the photo, its mirror image, or one of a few fixed crops).
// Renaming, moving or re-splitting photos, retraining, or an interrupted run never recomputes
// anything already there.
//
// On disk: $PETAL_CACHE/features/<model id, 16 hex>-<preprocessing>.feat, one append-only file:
//   header (112 bytes): "PETALFC1", u32 dim, u32 0, 64 ASCII hex model id, 32 bytes preprocessing key
//   records: 32-byte SHA-256 of the photo file, u8 view (0 the photo, 1 mirrored, 2… crops: see
//   all_views() in dataset.h), 3 zero bytes, dim × f32 (little-endian).
// Records are appended one batch at a time under an exclusive flock(), so parallel runs and a run
// killed mid-write (the torn last record is dropped) are safe.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backbone.h"
#include "bundle.h"
#include "dataset.h"
#include "sha256.h"

namespace petal::cli {

// Identity of the backbone inside a model bundle: SHA-256 of its graph up to the pooled features
// and of their weights (not the ImageNet classifier, head.* or bank.*).
std::string backbone_id(const Bundle& model);
// The id `model` would have as `petal quantize` leaves it: with or without the int8 marker, with
// or without its calibrated ranges (no copy of the weights).
std::string backbone_id(const Bundle& model, bool int8, bool with_ranges);

// Whether a head trained on the backbone `trained_id` (its metadata "backbone_id") fits the backbone
// of `model`, whose backbone_id is `model_id`. Empty when it does: the same id, or the same graph
// with the same weights stored as fp16 (as `petal export --fp16` ships it; checked against the
// default backbone when that is the one the head was trained on). Otherwise one line saying what
// differs and what to do.
std::string backbone_mismatch(const Bundle& model, const std::string& model_id, const std::string& trained_id);

class FeatureCache {
 public:
  // Opens or creates the cache file for this backbone + preprocessing in `dir` (created if needed).
  // A damaged file is set aside (renamed *.damaged) with a warning and a fresh one started.
  FeatureCache(const std::string& dir, const std::string& model_id, const std::string& prep_key, size_t dim);
  ~FeatureCache();
  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;

  const float* find(const Digest& d, int view) const;  // null when absent
  struct Entry {
    Digest digest;
    int view;
    const float* features;
  };
  void append(const std::vector<Entry>& entries);  // written to disk before it returns
  size_t size() const { return index_.size(); }
  size_t dim() const { return dim_; }
  const std::string& path() const { return path_; }

 private:
  struct KeyHash {
    size_t operator()(const std::string& k) const { return std::hash<std::string>()(k); }
  };
  std::string path_, model_id_, prep_;
  size_t dim_;
  int fd_ = -1;
  std::vector<std::unique_ptr<std::vector<float>>> rows_;
  std::unordered_map<std::string, const float*, KeyHash> index_;  // 33-byte key → row
  mutable std::mutex mutex_;  // find() and append() may run on different threads
  void load();
  void write_header();
};

// The backbone as a feature extractor for one preprocessing; built on first use (so runs whose
// features are all cached never pay for packing the weights).
class FeatureSource {
 public:
  FeatureSource(const Bundle& model, Preprocessing prep, size_t threads = 0);
  ~FeatureSource();
  const std::string& model_id() const { return model_id_; }
  const Preprocessing& preprocessing() const { return prep_; }
  size_t dim() const { return dim_; }
  Backbone& backbone();
  size_t threads() const;

 private:
  const Bundle& model_;
  Preprocessing prep_;
  size_t threads_;
  std::string model_id_;
  size_t dim_ = 0;
  std::unique_ptr<Backbone> backbone_;
};

// Features of data set files, from the cache or computed (decode on a thread while the backbone
// runs batches of 8). Files that cannot be read or decoded are skipped with one warning each.
struct FeatureTable {
  size_t dim = 0;
  std::vector<size_t> files;          // data set indices that have features, in request order
  std::vector<int32_t> labels;        // their labels
  std::vector<float> features;        // files.size() × dim
  std::vector<float> flipped;         // files.size() × dim, when flips were asked for
  std::vector<std::vector<float>> extra;  // per extra view (ExtractOptions::extra_views): files.size() × dim
  std::vector<Skipped> skipped;       // requested files without features, and why
  size_t computed = 0;                // backbone runs (photos + views) done now
  size_t from_cache = 0;              // rows found in the cache
  double seconds = 0;
};
struct ExtractOptions {
  bool flips = false;             // view 1, the mirror image
  std::vector<int> extra_views;   // ids ≥ 2 of all_views()
  bool progress = true;
  bool warn = true;   // print one warning per skipped file
  size_t batch = 8;
};
FeatureTable extract_features(const Dataset& d, const std::vector<size_t>& indices, FeatureSource& src,
                              FeatureCache& cache, const ExtractOptions& opt);

// $PETAL_CACHE/features
std::string feature_cache_dir();

// The preprocessing a model bundle asks for (metadata "preprocessing" and "input_size"; caffe 224
// when absent).
Preprocessing preprocessing_of(const Bundle& model);

// The cache key of a preprocessing: mode + size + a fingerprint of this build's decode → resize →
// preprocess code (a fixed synthetic JPEG run through it), so features computed by a build whose
// image pipeline differs are never reused. E.g. "caffe224-3f2a9c01".
std::string preprocessing_key(const Preprocessing& p);

}  // namespace petal::cli
