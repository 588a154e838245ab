// petal fewshot DATA: how well teaching (wasm/teach.h) works from a few photos, measured.
//  - New class: leave one class out, train a model on the others with the default recipe, then
//    teach it the missing class from k of its training photos (several seeded draws per k), and
//    score on the validation photos: new-class recall and precision, old-class accuracy before and
//    after, overall accuracy, and how far teach()'s own estimate is from the real recall.
//  - Corrections: from the model trained on every class, label m of the validation photos it gets
//    wrong with their right class, teach, and score the other validation photos.
// Prints one JSON line per run, then a table (mean and worst decile over runs).
#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compute_pool.h"
#include "error.h"
#include "fp16.h"
#include "recipes.h"
#include "teach.h"

namespace petal::cli {
using nlohmann::json;

namespace {

std::vector<int> parse_ints(const std::string& list, const char* what) {
  std::vector<int> v;
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    try {
      v.push_back(std::stoi(list.substr(start, end - start)));
    } catch (const std::exception&) {
      throw Error(std::string(what) + " must be a comma-separated list of whole numbers, e.g. 1,5,10");
    }
    if (v.back() < 1) throw Error(std::string(what) + " must be at least 1");
    start = end + 1;
  }
  return v;
}

// The page keeps its bank in fp16; the benchmark teaches from the same rounded values.
void round_to_fp16(std::vector<float>& v) {
  for (float& x : v) x = half_to_float(float_to_half(x));
}

// A model as the page holds it: head, class names, fp16 feature bank.
struct Model {
  Head head;
  std::vector<std::string> names;
  std::vector<float> bank;
  std::vector<int32_t> bank_labels;
  TeachBase base() const { return {&head, &names, bank.data(), bank_labels.data(), bank_labels.size()}; }
};

// Rows of a feature table (and its training views) whose class is in `keep`, relabelled to their
// index in `keep`.
struct Table {
  std::vector<float> x;
  std::vector<int32_t> y;
};
Table select_rows(const FeatureTable& t, const std::vector<const std::vector<float>*>& views, const std::vector<int>& keep) {
  Table r;
  for (auto* v : views)
    for (size_t i = 0; i < t.files.size(); ++i) {
      auto it = std::find(keep.begin(), keep.end(), t.labels[i]);
      if (it == keep.end()) continue;
      r.x.insert(r.x.end(), v->begin() + i * t.dim, v->begin() + (i + 1) * t.dim);
      r.y.push_back(int32_t(it - keep.begin()));
    }
  return r;
}

// Train a model on the classes in `keep` with the recipe, and give it the bank export would.
Model base_model(const FeatureTable& train, const Recipe& r, const std::vector<int>& keep, const std::vector<std::string>& all_names,
                 size_t bank_per_class, pthreadpool_t pool, bool holdout_bank = false) {
  std::vector<const std::vector<float>*> views{&train.features};
  if (r.flips) views.push_back(&train.flipped);
  for (auto& e : train.extra) views.push_back(&e);
  // The bank: export's choice among the kept classes' photos (view 0).
  const Table photos = select_rows(train, {&train.features}, keep);
  const auto bank = bank_rows(photos.y, keep.size(), bank_per_class, 123);
  FeatureTable without_bank;
  const FeatureTable* tr = &train;
  if (holdout_bank) {  // the bank's photos left out of the head's training, all their views
    std::vector<size_t> kept;  // photos' rows -> train rows
    for (size_t i = 0; i < train.files.size(); ++i)
      if (std::find(keep.begin(), keep.end(), train.labels[i]) != keep.end()) kept.push_back(i);
    without_bank = train;
    for (size_t b : bank) without_bank.labels[kept[b]] = -1;
    tr = &without_bank;
  }
  Table t = select_rows(*tr, views, keep);
  Model m;
  m.head = Head(int(train.dim), r.hidden, int(keep.size()), r.train.seed);
  FeatureSet fs{t.x.data(), t.y.data(), t.y.size(), train.dim};
  m.head.train(fs, nullptr, r.train, {}, {}, pool);
  for (int c : keep) m.names.push_back(all_names[size_t(c)]);
  for (size_t b : bank) {
    m.bank.insert(m.bank.end(), photos.x.begin() + b * train.dim, photos.x.begin() + (b + 1) * train.dim);
    m.bank_labels.push_back(photos.y[b]);
  }
  round_to_fp16(m.bank);
  return m;
}

// A bundle tensor; labels are given as floats, as Bundle keeps I32 data.
Tensor tensor_of(std::vector<size_t> shape, std::vector<float> data, DType stored) {
  Tensor t;
  t.shape = std::move(shape);
  t.data = std::move(data);
  t.stored = stored;
  return t;
}
template <class T>
Tensor labels_tensor(const std::vector<T>& labels) {
  return tensor_of({labels.size()}, std::vector<float>(labels.begin(), labels.end()), DType::I32);
}

// Every class but `left_out` (-1: every class).
std::vector<int> classes_without(size_t classes, int left_out) {
  std::vector<int> keep;
  for (size_t c = 0; c < classes; ++c)
    if (int(c) != left_out) keep.push_back(int(c));
  return keep;
}

// k distinct indices of `pool_idx`, the same for the same seed on every platform.
std::vector<size_t> draw(const std::vector<size_t>& pool_idx, size_t k, uint64_t seed) {
  std::vector<size_t> v = pool_idx;
  Rng rng(seed);
  for (size_t i = 0; i < k && i < v.size(); ++i) std::swap(v[i], v[i + rng.below(v.size() - i)]);
  v.resize(std::min(k, v.size()));
  return v;
}

std::vector<int> predict_all(const Head& h, const std::vector<float>& x, size_t n, pthreadpool_t pool) {
  const auto p = h.predict(x.data(), n, pool);
  const size_t C = size_t(h.classes());
  std::vector<int> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = int(std::max_element(&p[i * C], &p[i * C] + C) - &p[i * C]);
  return out;
}

// Mean, and mean of the worst tenth (at least one run), of a metric where higher is better.
std::pair<double, double> mean_and_worst_decile(std::vector<double> v) {
  if (v.empty()) return {NAN, NAN};
  std::sort(v.begin(), v.end());
  double sum = 0, worst = 0;
  for (double x : v) sum += x;
  const size_t w = std::max<size_t>(1, v.size() / 10);
  for (size_t i = 0; i < w; ++i) worst += v[i];
  return {sum / double(v.size()), worst / double(w)};
}

// The teaching options a run uses, from the command line's overrides of teach()'s defaults.
struct Knobs {
  TeachOptions opt;
  bool mirror = false;
};

}  // namespace

// long function: not split yet — a measuring tool (not a path users' models take) whose new-class,
// corrections, dump and study modes share the base models and the tallies; giving it an options
// struct and a step per mode, as petal train and bench have, is left for a change of its own (issue 15).
void register_fewshot(CLI::App& app) {
  auto* cmd = app.add_subcommand("fewshot", "Benchmark teaching: a left-out class from k photos, and corrections (JSON lines + table)");
  static std::string data, model, ks = "1,5,10,20", ms = "5,10,20", classes, dump;
  static int draws = 10, bank_per_class = 50, threads = 0, dump_k = 10, dump_draw = 0;
  static bool no_corrections = false, no_new_class = false, no_estimate = false;
  static Knobs kn;
  static std::string dump_class, study;
  static bool study_holdout = false;
  static bool no_views = false;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class (split 0.2, seed 123)")->required();
  cmd->add_option("--model", model, "backbone bundle (default: the imported ResNet-50)");
  cmd->add_option("--k", ks, "photos of the new class to teach from")->capture_default_str();
  cmd->add_option("--corrections", ms, "mistakes corrected per run")->capture_default_str();
  cmd->add_option("--draws", draws, "seeded draws per k (and per correction count)")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--classes", classes, "only these classes as the new one (comma-separated; default: each)");
  cmd->add_option("--bank-per-class", bank_per_class, "feature bank rows per class (petal export's default)")->capture_default_str()->check(CLI::Range(0, 100000));
  cmd->add_flag("--no-corrections", no_corrections, "skip the corrections runs");
  cmd->add_flag("--no-new-class", no_new_class, "skip the new-class runs");
  cmd->add_flag("--no-views", no_views, "train the base models on the photos alone, without the recipe's mirror and crop views (quicker; the wasm parity test uses it)");
  cmd->add_flag("--no-estimate", no_estimate, "skip teach()'s k-fold estimate (faster)");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  auto& o = kn.opt;
  cmd->add_option("--epochs", o.epochs, "teach: epochs")->capture_default_str();
  cmd->add_option("--steps", o.steps, "teach: full-batch steps of the residual units")->capture_default_str();
  cmd->add_option("--learning-rate", o.learning_rate, "teach: Adam learning rate of the residual units")->capture_default_str();
  cmd->add_option("--l2", o.l2, "teach: weight penalty of the residual units")->capture_default_str();
  cmd->add_option("--l2-known", o.l2_known, "teach: weight penalty of a known class's residual unit")->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "teach: the model's scores are divided by this")->capture_default_str();
  cmd->add_option("--dropout", o.dropout, "teach: dropout")->capture_default_str();
  cmd->add_option("--label-smoothing", o.label_smoothing, "teach: label smoothing")->capture_default_str();
  cmd->add_option("--max-repeat", o.max_repeat, "teach: repeats of the user's photos at most")->capture_default_str();
  cmd->add_option("--from-model", o.from_model, "teach: start from the model's head (false: a new head)")->capture_default_str();
  cmd->add_flag("--mirror", kn.mirror, "teach with the photos' mirror images too");
  cmd->add_option("--dump-case", dump, "write one new-class case (model, photos, validation features) to this bundle for the wasm parity test, and run only it");
  cmd->add_option("--dump-class", dump_class, "the class of --dump-case (default: the last)");
  cmd->add_option("--dump-k", dump_k, "k of --dump-case")->capture_default_str();
  cmd->add_option("--dump-draw", dump_draw, "draw of --dump-case")->capture_default_str();
  cmd->add_flag("--study-holdout-bank", study_holdout, "with --dump-study: the base models train without their bank's photos");
  cmd->add_option("--dump-study", study, "for studying methods outside Petal: write every feature (training views, validation) and each left-out class's base model (head + bank) to this folder, then stop");
  cmd->callback([] {
    TeachOptions opt = kn.opt;
    if (no_estimate) opt.estimate_folds = 0;
    Recipe r = recipe_by_name("petal");
    if (no_views) {
      r.flips = false;
      r.extra_views.clear();
    }
    Dataset d = open_dataset(data, 0.2, 123);
    if (d.class_names.size() < 3) throw Error("the benchmark leaves one class out and needs at least 3 classes; '" + d.root + "' has " + std::to_string(d.class_names.size()));
    Bundle b = load_backbone(model);
    FeatureSource src(b, r.prep, size_t(threads));
    FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
    ExtractOptions eo;
    eo.flips = r.flips || kn.mirror;  // the recipe's views include the mirror image; --mirror teaches with it
    eo.extra_views = r.extra_views;
    const FeatureTable train = extract_features(d, subset_indices(d, Subset::Training), src, cache, eo);
    const FeatureTable val = extract_features(d, subset_indices(d, Subset::Validation), src, cache, ExtractOptions{});
    ComputePool pool{size_t(threads)};
    const size_t C = d.class_names.size(), D = train.dim, nval = val.files.size();

    std::vector<int> targets;
    if (classes.empty() || !dump.empty()) {
      for (size_t c = 0; c < C; ++c) targets.push_back(int(c));
    }
    if (!classes.empty()) {
      targets.clear();
      size_t start = 0;
      while (start <= classes.size()) {
        size_t end = classes.find(',', start);
        if (end == std::string::npos) end = classes.size();
        const std::string name = classes.substr(start, end - start);
        auto it = std::find(d.class_names.begin(), d.class_names.end(), name);
        if (it == d.class_names.end()) throw Error("--classes: '" + name + "' is not a class of " + d.root);
        targets.push_back(int(it - d.class_names.begin()));
        start = end + 1;
      }
    }
    if (!dump.empty()) {
      int c = int(C) - 1;
      if (!dump_class.empty()) {
        auto it = std::find(d.class_names.begin(), d.class_names.end(), dump_class);
        if (it == d.class_names.end()) throw Error("--dump-class: '" + dump_class + "' is not a class of " + d.root);
        c = int(it - d.class_names.begin());
      }
      targets = {c};
      no_corrections = true;
    }
    const auto k_list = !dump.empty() ? std::vector<int>{dump_k} : parse_ints(ks, "--k");

    struct Sums {
      std::vector<double> recall, precision, old_before, old_after, overall, est_error, est, old_est_error;
    };
    if (!study.empty()) {
      Bundle f;
      const size_t ntr = train.files.size();
      f.tensors["train.view0"] = tensor_of({ntr, D}, train.features, DType::F32);
      if (!train.flipped.empty()) f.tensors["train.mirror"] = tensor_of({ntr, D}, train.flipped, DType::F32);
      for (size_t e = 0; e < train.extra.size(); ++e) f.tensors["train.extra" + std::to_string(e)] = tensor_of({ntr, D}, train.extra[e], DType::F32);
      f.tensors["train.labels"] = labels_tensor(train.labels);
      f.tensors["val.features"] = tensor_of({nval, D}, val.features, DType::F32);
      f.tensors["val.labels"] = labels_tensor(val.labels);
      f.metadata["class_names"] = json(d.class_names).dump();
      if (!study_holdout) save_bundle_file(f, study + "/features.safetensors", DType::F32);
      for (int L : targets) {
        const std::vector<int> keep = classes_without(C, L);
        const Model m = base_model(train, r, keep, d.class_names, size_t(bank_per_class), pool.get(), study_holdout);
        Bundle out;
        m.head.save(out);
        out.tensors["bank.features"] = tensor_of({m.bank_labels.size(), D}, m.bank, DType::F32);
        out.tensors["bank.labels"] = labels_tensor(m.bank_labels);
        out.metadata["keep"] = json(keep).dump();
        save_bundle_file(out, study + "/without-" + d.class_names[size_t(L)] + (study_holdout ? "-holdout" : "") + ".safetensors", DType::F32);
      }
      return;
    }
    std::map<int, Sums> by_k;
    auto put = [](json& j) { std::printf("%s\n", j.dump().c_str()); std::fflush(stdout); };
    Progress progress("fewshot", (no_new_class ? 0 : targets.size() * k_list.size() * size_t(draws)) +
                                     (no_corrections ? 0 : parse_ints(ms, "--corrections").size() * size_t(draws)), "run");
    size_t done = 0;

    // The ceiling: a model trained with the recipe on every class, all of the left-out class's
    // training photos included. What it gets for each class (recall, precision) and what the
    // other classes' accuracy becomes beside it bounds what teaching from k photos can reach.
    struct Ceiling {
      double recall, precision, old_before, old_after;
    };
    std::map<int, Ceiling> ceiling;
    // The same model is the one the corrections start from: trained once for both.
    const bool want_ceiling = !no_new_class && dump.empty();
    Model full;
    std::vector<int> full_pred;  // its answers for the validation photos
    if (want_ceiling || !no_corrections) {
      full = base_model(train, r, classes_without(C, -1), d.class_names, size_t(bank_per_class), pool.get());
      full_pred = predict_all(full.head, val.features, nval, pool.get());
    }

    if (!no_new_class) {
      for (int L : targets) {
        const std::vector<int> keep = classes_without(C, L);
        const Model m = base_model(train, r, keep, d.class_names, size_t(bank_per_class), pool.get());
        // the new class's training photos, and the validation photos under the taught class order
        std::vector<size_t> candidates;
        for (size_t i = 0; i < train.files.size(); ++i)
          if (train.labels[i] == L) candidates.push_back(i);
        std::vector<int32_t> yval(nval);
        for (size_t i = 0; i < nval; ++i) {
          auto it = std::find(keep.begin(), keep.end(), val.labels[i]);
          yval[i] = it == keep.end() ? int32_t(keep.size()) : int32_t(it - keep.begin());
        }
        const int32_t new_index = int32_t(keep.size());
        const auto before = predict_all(m.head, val.features, nval, pool.get());
        size_t old_n = 0, old_ok_before = 0;
        for (size_t i = 0; i < nval; ++i)
          if (yval[i] != new_index) {
            ++old_n;
            old_ok_before += before[i] == yval[i];
          }
        if (want_ceiling) {  // the model on every class, for this class and beside the same old photos
          size_t tp = 0, fp = 0, pos = 0, ok_after = 0;
          for (size_t i = 0; i < nval; ++i) {
            const bool is_new = yval[i] == new_index, said_new = full_pred[i] == L;
            pos += is_new;
            tp += is_new && said_new;
            fp += !is_new && said_new;
            if (!is_new) ok_after += full_pred[i] == val.labels[i];
          }
          const Ceiling c{double(tp) / double(pos), tp + fp ? double(tp) / double(tp + fp) : 0.0, double(old_ok_before) / double(old_n),
                          double(ok_after) / double(old_n)};
          ceiling[L] = c;
          json j = {{"case", "ceiling"}, {"class", d.class_names[size_t(L)]}, {"recall", c.recall}, {"precision", c.precision},
                    {"old_before", c.old_before}, {"old_after", c.old_after}};
          put(j);
        }
        for (int k : k_list) {
          for (int dr = 0; dr < (dump.empty() ? draws : dump_draw + 1); ++dr) {
            if (!dump.empty() && dr != dump_draw) continue;
            const auto pick = draw(candidates, size_t(k), 1000003ull * uint64_t(L + 1) + 1009ull * uint64_t(k) + uint64_t(dr));
            std::vector<float> x, xm;
            for (size_t i : pick) {
              x.insert(x.end(), train.features.begin() + i * D, train.features.begin() + (i + 1) * D);
              if (kn.mirror) xm.insert(xm.end(), train.flipped.begin() + i * D, train.flipped.begin() + (i + 1) * D);
            }
            const std::vector<std::string> labels(pick.size(), d.class_names[size_t(L)]);
            Lesson lesson{x.data(), kn.mirror ? xm.data() : nullptr, &labels, pick.size(), D};
            const TeachResult t = teach(m.base(), lesson, opt, {}, {}, pool.get());
            const auto after = predict_all(t.head, val.features, nval, pool.get());
            size_t tp = 0, fp = 0, pos = 0, old_ok = 0, all_ok = 0;
            for (size_t i = 0; i < nval; ++i) {
              const bool is_new = yval[i] == new_index, said_new = after[i] == new_index;
              pos += is_new;
              tp += is_new && said_new;
              fp += !is_new && said_new;
              if (!is_new) old_ok += after[i] == yval[i];
              all_ok += after[i] == yval[i];
            }
            json j = {{"case", "new-class"}, {"class", d.class_names[size_t(L)]}, {"k", k}, {"draw", dr},
                      {"recall", double(tp) / double(pos)}, {"precision", tp + fp ? double(tp) / double(tp + fp) : 0.0},
                      {"old_before", double(old_ok_before) / double(old_n)}, {"old_after", double(old_ok) / double(old_n)},
                      {"overall", double(all_ok) / double(nval)}};
            Sums& s = by_k[k];
            s.recall.push_back(j["recall"]);
            s.precision.push_back(j["precision"]);
            s.old_before.push_back(j["old_before"]);
            s.old_after.push_back(j["old_after"]);
            s.overall.push_back(j["overall"]);
            if (!t.estimates.empty() && t.estimates.back().recall >= 0) {
              const double est = t.estimates.back().recall;
              j["estimated_recall"] = est;
              s.est.push_back(est);
              s.est_error.push_back(est - double(j["recall"]));
              // old classes: estimate vs real recall per class, mean absolute gap
              double gap = 0;
              int n_old = 0;
              for (size_t c = 0; c < keep.size(); ++c) {
                const ClassEstimate& e = t.estimates[c];
                if (e.recall < 0) continue;
                size_t n = 0, ok = 0;
                for (size_t i = 0; i < nval; ++i)
                  if (yval[i] == int32_t(c)) {
                    ++n;
                    ok += after[i] == int32_t(c);
                  }
                gap += std::fabs(e.recall - double(ok) / double(n));
                ++n_old;
              }
              if (n_old) {
                j["old_estimate_gap"] = gap / n_old;
                s.old_est_error.push_back(gap / n_old);
              }
            }
            if (!dump.empty()) {
              // The case as the page would hold it: the model bundle (head + bank), the photos, and
              // the validation features with their labels, for tests/node/teach.test.mjs.
              Bundle out = head_bundle(b, src.model_id(), m.head, m.names, r.prep, r.name, "{}", m.bank, m.bank_labels);
              out.tensors["case.features"] = tensor_of({pick.size(), D}, x, DType::F32);
              out.tensors["case.val_features"] = tensor_of({nval, D}, std::vector<float>(val.features.begin(), val.features.begin() + nval * D), DType::F32);
              out.tensors["case.val_labels"] = labels_tensor(yval);
              out.metadata["case"] = j.dump();
              out.metadata["case_label"] = d.class_names[size_t(L)];
              json teach_json = json::array();
              for (auto& e : t.estimates) teach_json.push_back({{"name", e.name}, {"recall", e.recall}, {"tested", e.tested}});
              out.metadata["case_estimates"] = teach_json.dump();
              save_bundle_file(out, dump, DType::F32);
            }
            put(j);
            progress.update(++done);
          }
        }
      }
    }

    std::map<int, Sums> by_m;
    if (!no_corrections) {
      const Model& m = full;
      const auto& before = full_pred;
      std::vector<size_t> wrong;
      for (size_t i = 0; i < nval; ++i)
        if (before[i] != val.labels[i]) wrong.push_back(i);
      for (int count : parse_ints(ms, "--corrections")) {
        for (int dr = 0; dr < draws; ++dr) {
          const auto pick = draw(wrong, size_t(count), 7919ull * uint64_t(count) + uint64_t(dr));
          std::vector<float> x, xm;
          std::vector<std::string> labels;
          for (size_t i : pick) {
            x.insert(x.end(), val.features.begin() + i * D, val.features.begin() + (i + 1) * D);
            labels.push_back(d.class_names[size_t(val.labels[i])]);
          }
          Lesson lesson{x.data(), nullptr, &labels, pick.size(), D};
          const TeachResult t = teach(m.base(), lesson, opt, {}, {}, pool.get());
          const auto after = predict_all(t.head, val.features, nval, pool.get());
          size_t n = 0, ok_before = 0, ok_after = 0;
          for (size_t i = 0; i < nval; ++i) {
            if (std::find(pick.begin(), pick.end(), i) != pick.end()) continue;
            ++n;
            ok_before += before[i] == val.labels[i];
            ok_after += after[i] == val.labels[i];
          }
          json j = {{"case", "corrections"}, {"corrected", pick.size()}, {"draw", dr}, {"accuracy_before", double(ok_before) / double(n)},
                    {"accuracy_after", double(ok_after) / double(n)}, {"scored", n}};
          by_m[count].old_before.push_back(j["accuracy_before"]);
          by_m[count].overall.push_back(j["accuracy_after"]);
          put(j);
          progress.update(++done);
        }
      }
    }
    progress.finish();

    auto pct = [](double v) { return 100 * v; };
    if (!by_k.empty()) {
      std::printf("\nnew class from k photos (%zu classes left out in turn x %d draws; mean / worst decile, %%):\n", targets.size(), draws);
      std::printf("%4s  %15s  %15s  %15s  %15s  %15s  %11s  %11s\n", "k", "new recall", "new precision", "old before", "old after",
                  "overall", "est - real", "old |est-real|");
      for (auto& [k, s] : by_k) {
        auto rc = mean_and_worst_decile(s.recall), pr = mean_and_worst_decile(s.precision), ob = mean_and_worst_decile(s.old_before),
             oa = mean_and_worst_decile(s.old_after), ov = mean_and_worst_decile(s.overall);
        double bias = 0, ogap = 0;
        for (double e : s.est_error) bias += e;
        for (double e : s.old_est_error) ogap += e;
        std::printf("%4d  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %11s  %11s\n", k, pct(rc.first), pct(rc.second),
                    pct(pr.first), pct(pr.second), pct(ob.first), pct(ob.second), pct(oa.first), pct(oa.second), pct(ov.first), pct(ov.second),
                    s.est_error.empty() ? "-" : (std::to_string(pct(bias / double(s.est_error.size()))).substr(0, 5)).c_str(),
                    s.old_est_error.empty() ? "-" : (std::to_string(pct(ogap / double(s.old_est_error.size()))).substr(0, 5)).c_str());
      }
    }
    if (!ceiling.empty()) {
      double rc = 0, pr = 0, ob = 0, oa = 0;
      for (auto& [L, c] : ceiling) {
        rc += c.recall;
        pr += c.precision;
        ob += c.old_before;
        oa += c.old_after;
      }
      const double n = double(ceiling.size());
      std::printf("%4s  %6.1f %8s  %6.1f %8s  %6.1f %8s  %6.1f %8s   (the ceiling: the recipe's model on every class, all the photos)\n", "all",
                  pct(rc / n), "", pct(pr / n), "", pct(ob / n), "", pct(oa / n), "");
    }
    if (!by_m.empty()) {
      std::printf("\ncorrections (%d draws; accuracy on the other validation photos, %%):\n%9s  %8s  %15s  %6s\n", draws, "corrected", "before",
                  "after (worst)", "worse");
      for (auto& [count, s] : by_m) {
        auto a = mean_and_worst_decile(s.overall);
        int worse = 0;
        for (size_t i = 0; i < s.overall.size(); ++i) worse += s.overall[i] < s.old_before[i];
        std::printf("%9d  %8.2f  %6.2f / %6.2f  %6d\n", count, pct(mean_and_worst_decile(s.old_before).first), pct(a.first), pct(a.second), worse);
      }
    }
  });
}

}  // namespace petal::cli
