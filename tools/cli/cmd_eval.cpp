// petal eval MODEL DATA: accuracy, per-class precision/recall and the confusion matrix of a model
// on a photo folder.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compute_pool.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"
#include "head.h"
#include "plot.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

namespace {

std::vector<std::vector<double>> per_class_metrics(const std::vector<std::vector<int>>& m) {
  const size_t n = m.size();
  std::vector<std::vector<double>> r(n, std::vector<double>(4, 0));  // precision, recall, f1, support
  for (size_t c = 0; c < n; ++c) {
    double tp = m[c][c], pred = 0, truth = 0;
    for (size_t k = 0; k < n; ++k) {
      pred += m[k][c];
      truth += m[c][k];
    }
    const double p = pred ? tp / pred : 0, rc = truth ? tp / truth : 0;
    r[c] = {p, rc, p + rc > 0 ? 2 * p * rc / (p + rc) : 0, truth};
  }
  return r;
}

void print_confusion(const std::vector<std::vector<int>>& m, const std::vector<std::string>& names) {
  size_t w = 6;
  for (auto& s : names) w = std::max(w, s.size());
  std::printf("confusion matrix (rows: true class, columns: predicted)\n%*s", int(w), "");
  for (auto& s : names) std::printf(" %*s", int(std::max<size_t>(s.size(), 5)), s.c_str());
  std::printf("\n");
  for (size_t t = 0; t < m.size(); ++t) {
    std::printf("%*s", int(w), names[t].c_str());
    for (size_t p = 0; p < m.size(); ++p) std::printf(" %*d", int(std::max<size_t>(names[p].size(), 5)), m[t][p]);
    std::printf("\n");
  }
}

// The validation split and seed the model was trained with (its "training" metadata), else Keras's.
void trained_split(const Bundle& b, double& split, int64_t& seed) {
  if (!b.metadata.count("training")) return;
  try {
    json tr = json::parse(b.meta("training"));
    split = tr.value("validation_split", split);
    seed = tr.value("seed", seed);
  } catch (const std::exception&) {
  }
}

// The head's answers for the photos of `t`, scored: confusion matrix, accuracy, mean loss, and each
// photo's prediction (only when `list` asks for them).
struct Scores {
  std::vector<std::vector<int>> conf;
  size_t correct = 0;
  double accuracy = 0, loss = 0;
  json predictions = json::array();
};
Scores score(const std::vector<float>& p, const FeatureTable& t, const Dataset& d, const std::vector<std::string>& names, bool list) {
  const size_t n = t.files.size(), C = names.size();
  Scores s;
  s.conf.assign(C, std::vector<int>(C, 0));
  for (size_t i = 0; i < n; ++i) {
    const float* row = &p[i * C];
    const int pred = int(std::max_element(row, row + C) - row), y = t.labels[i];
    s.conf[size_t(y)][size_t(pred)]++;
    s.correct += pred == y;
    s.loss -= std::log(std::max(double(row[y]), 1e-12));
    if (list)
      s.predictions.push_back({{"file", d.files[t.files[i]].path}, {"label", names[size_t(y)]}, {"predicted", names[size_t(pred)]},
                               {"probability", row[pred]}});
  }
  s.accuracy = double(s.correct) / double(n);
  s.loss /= double(n);
  return s;
}

// The text report: the subset, accuracy and loss, per-class metrics, the confusion matrix.
void print_scores(const Scores& s, const std::vector<std::vector<double>>& m, const std::vector<std::string>& names, Subset sub,
                  const Dataset& d, double sp, int64_t sd, size_t n, size_t skipped) {
  std::printf("%s subset of %s (split %g, seed %lld): %zu photos, %zu skipped\n", subset_name(sub), d.root.c_str(), sp,
              (long long)sd, n, skipped);
  std::printf("accuracy: %.4f (%zu/%zu)  loss: %.4f\n", s.accuracy, s.correct, n, s.loss);
  size_t w = 5;
  for (auto& x : names) w = std::max(w, x.size());
  std::printf("%-*s  precision  recall      f1  support\n", int(w), "class");
  for (size_t c = 0; c < names.size(); ++c)
    std::printf("%-*s  %9.4f  %6.4f  %6.4f  %7d\n", int(w), names[c].c_str(), m[c][0], m[c][1], m[c][2], int(m[c][3]));
  print_confusion(s.conf, names);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Accuracy, per-class precision/recall and confusion matrix of a model on a photo folder");
  static std::string model, data, subset = "validation", confusion_png;
  static double split = 0.2;
  static int64_t seed = 123;
  static int threads = 0;
  static bool as_json = false;
  static CLI::Option *o_split, *o_seed;
  cmd->add_option("model", model, "model bundle (head-only or full)")->required();
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("--subset", subset, "validation, training or all")->capture_default_str();
  o_split = cmd->add_option("--validation-split", split, "fraction held out for validation (default: as the model was trained)");
  o_seed = cmd->add_option("--seed", seed, "split seed (default: as the model was trained)");
  cmd->add_option("--confusion-png", confusion_png, "also draw the confusion matrix into this PNG");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document (with every photo's prediction)");
  cmd->callback([] {
    Bundle b = load_model(model);
    Preprocessing prep = preprocessing_of(b);
    Head head = Head::load(b);
    auto names = parse_class_names(b.meta("class_names"));
    double sp = 0.2;
    int64_t sd = 123;
    trained_split(b, sp, sd);
    if (o_split->count()) sp = split;
    if (o_seed->count()) sd = seed;
    Dataset d = open_dataset(data, sp, checked_seed(sd), as_json);
    if (d.class_names != names) {
      std::string a, m;
      for (auto& s : d.class_names) a += (a.empty() ? "" : ", ") + s;
      for (auto& s : names) m += (m.empty() ? "" : ", ") + s;
      throw Error("the data set's classes (" + a + ") are not the model's (" + m + ")");
    }
    const Subset sub = parse_subset(subset);
    FeatureSource src(b, prep, size_t(threads));
    if (b.metadata.count("backbone_id"))
      if (const std::string why = backbone_mismatch(b, src.model_id(), b.meta("backbone_id")); !why.empty())
        std::fprintf(stderr, "petal: warning: %s\n", why.c_str());
    FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(prep), src.dim());
    ExtractOptions eo;
    FeatureTable t = extract_features(d, subset_indices(d, sub), src, cache, eo);
    if (t.files.empty()) throw Error("no photo of the " + subset + " subset could be read");
    const size_t n = t.files.size(), C = names.size();
    ComputePool pool{size_t(threads)};
    const Scores s = score(head.predict(t.features.data(), n, pool.get()), t, d, names, as_json);
    const auto& conf = s.conf;
    const double acc = s.accuracy;
    const auto m = per_class_metrics(conf);
    if (!confusion_png.empty()) {
      char title[128];
      std::snprintf(title, sizeof title, "%s subset: accuracy %.2f%% (%zu photos)", subset_name(sub), 100 * acc, n);
      ensure_parent(confusion_png);
      draw_confusion(conf, names, title).save_png(confusion_png);
    }
    if (as_json) {
      json classes = json::array();
      for (size_t c = 0; c < C; ++c)
        classes.push_back({{"name", names[c]}, {"precision", m[c][0]}, {"recall", m[c][1]}, {"f1", m[c][2]}, {"support", int(m[c][3])}});
      json j = {{"model", model}, {"data", abs_path(d.root)}, {"subset", subset_name(sub)}, {"validation_split", sp}, {"seed", sd},
                {"photos", n}, {"correct", s.correct}, {"accuracy", acc}, {"loss", s.loss}, {"classes", classes},
                {"confusion", conf}, {"skipped", skipped_json(t.skipped)}, {"predictions", s.predictions}};
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    print_scores(s, m, names, sub, d, sp, sd, n, t.skipped.size());
  });
}

}  // namespace petal::cli
