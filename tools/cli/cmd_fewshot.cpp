// petal fewshot DATA: how well teaching (wasm/teach.h) works from a few photos, measured.
//  - New class: leave one class out, train a model on the others with the default recipe, then
//    teach it the missing class from k of its training photos (several seeded draws per k), and
//    score on the validation photos: new-class recall and precision, old-class accuracy before and
//    after, overall accuracy, and how far teach()'s own estimate is from the real recall (and how
//    often the real recall lies in the estimate's likely range).
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

// The command line: teach()'s defaults with the run's overrides, and what to run.
struct FewshotArgs {
  std::string data, model, ks = "1,5,10,20", ms = "5,10,20", classes;
  int draws = 10, bank_per_class = 50, threads = 0;
  bool no_corrections = false, no_new_class = false, no_estimate = false, no_views = false, mirror = false;
  TeachOptions opt;
  std::string dump, dump_class;  // --dump-case: one new-class case for the wasm parity test
  int dump_k = 10, dump_draw = 0;
  std::string study;  // --dump-study: every feature and each base model, for studying methods
  bool study_holdout = false;
};

// What every run shares: the photos' split, the recipe, the features, the pool.
struct Bench {
  const FewshotArgs& a;
  const Dataset& d;
  const Recipe& r;
  const Bundle& backbone;
  const std::string& model_id;
  const FeatureTable& train;
  const FeatureTable& val;
  pthreadpool_t pool;
  TeachOptions opt;  // the args' options, less the estimate with --no-estimate
  size_t C, D, nval;
};

// The tallies of one k (or one count of corrections) over its runs.
struct Sums {
  std::vector<double> recall, precision, old_before, old_after, overall, est_error, est_abs_error, est_in_range, est, old_est_error;
};

// The ceiling of one class: a model trained with the recipe on every class, all of the class's
// training photos included. What it gets for the class (recall, precision) and what the other
// classes' accuracy becomes beside it bounds what teaching from k photos can reach.
struct Ceiling {
  double recall, precision, old_before, old_after;
};

void print_json(const json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

int class_index(const Dataset& d, const std::string& name, const char* option) {
  auto it = std::find(d.class_names.begin(), d.class_names.end(), name);
  if (it == d.class_names.end()) throw Error(std::string(option) + ": '" + name + "' is not a class of " + d.root);
  return int(it - d.class_names.begin());
}

// The classes left out in turn: --classes, or the one of --dump-case, or each.
std::vector<int> target_classes(const FewshotArgs& a, const Dataset& d) {
  if (!a.dump.empty()) return {a.dump_class.empty() ? int(d.class_names.size()) - 1 : class_index(d, a.dump_class, "--dump-class")};
  std::vector<int> targets;
  if (a.classes.empty()) {
    for (size_t c = 0; c < d.class_names.size(); ++c) targets.push_back(int(c));
    return targets;
  }
  size_t start = 0;
  while (start <= a.classes.size()) {
    size_t end = a.classes.find(',', start);
    if (end == std::string::npos) end = a.classes.size();
    targets.push_back(class_index(d, a.classes.substr(start, end - start), "--classes"));
    start = end + 1;
  }
  return targets;
}

// --dump-study: every feature and each left-out class's base model (head + bank), then stop.
void write_study(const Bench& s, const std::vector<int>& targets) {
  const auto& train = s.train;
  const size_t ntr = train.files.size(), D = s.D;
  ensure_parent(s.a.study + "/features.safetensors");  // the folder is made when missing
  if (!s.a.study_holdout) {
    Bundle f;
    f.tensors["train.view0"] = tensor_of({ntr, D}, train.features, DType::F32);
    if (!train.flipped.empty()) f.tensors["train.mirror"] = tensor_of({ntr, D}, train.flipped, DType::F32);
    for (size_t e = 0; e < train.extra.size(); ++e) f.tensors["train.extra" + std::to_string(e)] = tensor_of({ntr, D}, train.extra[e], DType::F32);
    f.tensors["train.labels"] = labels_tensor(train.labels);
    f.tensors["val.features"] = tensor_of({s.nval, D}, s.val.features, DType::F32);
    f.tensors["val.labels"] = labels_tensor(s.val.labels);
    f.metadata["class_names"] = json(s.d.class_names).dump();
    save_bundle_file(f, s.a.study + "/features.safetensors", DType::F32);
  }
  for (int L : targets) {
    const std::vector<int> keep = classes_without(s.C, L);
    const Model m = base_model(train, s.r, keep, s.d.class_names, size_t(s.a.bank_per_class), s.pool, s.a.study_holdout);
    Bundle out;
    m.head.save(out);
    out.tensors["bank.features"] = tensor_of({m.bank_labels.size(), D}, m.bank, DType::F32);
    out.tensors["bank.labels"] = labels_tensor(m.bank_labels);
    out.metadata["keep"] = json(keep).dump();
    save_bundle_file(out, s.a.study + "/without-" + s.d.class_names[size_t(L)] + (s.a.study_holdout ? "-holdout" : "") + ".safetensors", DType::F32);
  }
}

// One left-out class: its base model, the validation photos under the taught class order, and the
// old classes' accuracy before teaching.
struct LeftOut {
  int L;
  std::vector<int> keep;
  Model m;
  std::vector<size_t> candidates;  // the class's training photos
  std::vector<int32_t> yval;       // validation labels in the taught order (the new class last)
  int32_t new_index;
  size_t old_n = 0, old_ok_before = 0;
};
LeftOut leave_out(const Bench& s, int L) {
  LeftOut o;
  o.L = L;
  o.keep = classes_without(s.C, L);
  o.m = base_model(s.train, s.r, o.keep, s.d.class_names, size_t(s.a.bank_per_class), s.pool);
  for (size_t i = 0; i < s.train.files.size(); ++i)
    if (s.train.labels[i] == L) o.candidates.push_back(i);
  o.yval.resize(s.nval);
  for (size_t i = 0; i < s.nval; ++i) {
    auto it = std::find(o.keep.begin(), o.keep.end(), s.val.labels[i]);
    o.yval[i] = it == o.keep.end() ? int32_t(o.keep.size()) : int32_t(it - o.keep.begin());
  }
  o.new_index = int32_t(o.keep.size());
  const auto before = predict_all(o.m.head, s.val.features, s.nval, s.pool);
  for (size_t i = 0; i < s.nval; ++i)
    if (o.yval[i] != o.new_index) {
      ++o.old_n;
      o.old_ok_before += before[i] == o.yval[i];
    }
  return o;
}

// The model on every class (its answers `full_pred`), for the left-out class and beside the same
// old photos.
Ceiling ceiling_of(const Bench& s, const LeftOut& o, const std::vector<int>& full_pred) {
  size_t tp = 0, fp = 0, pos = 0, ok_after = 0;
  for (size_t i = 0; i < s.nval; ++i) {
    const bool is_new = o.yval[i] == o.new_index, said_new = full_pred[i] == o.L;
    pos += is_new;
    tp += is_new && said_new;
    fp += !is_new && said_new;
    if (!is_new) ok_after += full_pred[i] == s.val.labels[i];
  }
  const Ceiling c{double(tp) / double(pos), tp + fp ? double(tp) / double(tp + fp) : 0.0, double(o.old_ok_before) / double(o.old_n),
                  double(ok_after) / double(o.old_n)};
  print_json({{"case", "ceiling"}, {"class", s.d.class_names[size_t(o.L)]}, {"recall", c.recall}, {"precision", c.precision},
              {"old_before", c.old_before}, {"old_after", c.old_after}});
  return c;
}

// teach()'s own estimate beside the real recall: the new class's, and the old classes' mean gap.
void score_estimate(const Bench& s, const LeftOut& o, const TeachResult& t, const std::vector<int>& after, json& j, Sums& sums) {
  if (t.estimates.empty() || t.estimates.back().recall < 0) return;
  const ClassEstimate& e_new = t.estimates.back();
  const double est = e_new.recall, real = double(j["recall"]);
  j["estimated_recall"] = est;
  j["estimated_low"] = e_new.low;
  j["estimated_high"] = e_new.high;
  sums.est.push_back(est);
  sums.est_error.push_back(est - real);
  sums.est_abs_error.push_back(std::fabs(est - real));
  sums.est_in_range.push_back(e_new.low <= real && real <= e_new.high ? 1.0 : 0.0);
  double gap = 0;
  int n_old = 0;
  for (size_t c = 0; c < o.keep.size(); ++c) {
    const ClassEstimate& e = t.estimates[c];
    if (e.recall < 0) continue;
    size_t n = 0, ok = 0;
    for (size_t i = 0; i < s.nval; ++i)
      if (o.yval[i] == int32_t(c)) {
        ++n;
        ok += after[i] == int32_t(c);
      }
    gap += std::fabs(e.recall - double(ok) / double(n));
    ++n_old;
  }
  if (n_old) {
    j["old_estimate_gap"] = gap / n_old;
    sums.old_est_error.push_back(gap / n_old);
  }
}

// --dump-case: the case as the page would hold it (the model bundle with head and bank, the photos,
// and the validation features with their labels), for tests/node/teach.test.mjs.
void write_case(const Bench& s, const LeftOut& o, const std::vector<float>& x, size_t k, const TeachResult& t, const json& j) {
  Bundle out = head_bundle(s.backbone, s.model_id, o.m.head, o.m.names, s.r.prep, s.r.name, "{}", o.m.bank, o.m.bank_labels);
  out.tensors["case.features"] = tensor_of({k, s.D}, x, DType::F32);
  out.tensors["case.val_features"] = tensor_of({s.nval, s.D}, std::vector<float>(s.val.features.begin(), s.val.features.begin() + s.nval * s.D), DType::F32);
  out.tensors["case.val_labels"] = labels_tensor(o.yval);
  out.metadata["case"] = j.dump();
  out.metadata["case_label"] = s.d.class_names[size_t(o.L)];
  json teach_json = json::array();
  for (auto& e : t.estimates) teach_json.push_back({{"name", e.name}, {"recall", e.recall}, {"low", e.low}, {"high", e.high}, {"tested", e.tested}});
  out.metadata["case_estimates"] = teach_json.dump();
  save_bundle_file(out, s.a.dump, DType::F32);
}

// One draw: teach the left-out class from k of its photos and score the validation photos.
void new_class_run(const Bench& s, const LeftOut& o, int k, int dr, Sums& sums) {
  const size_t D = s.D;
  const auto pick = draw(o.candidates, size_t(k), 1000003ull * uint64_t(o.L + 1) + 1009ull * uint64_t(k) + uint64_t(dr));
  std::vector<float> x, xm;
  for (size_t i : pick) {
    x.insert(x.end(), s.train.features.begin() + i * D, s.train.features.begin() + (i + 1) * D);
    if (s.a.mirror) xm.insert(xm.end(), s.train.flipped.begin() + i * D, s.train.flipped.begin() + (i + 1) * D);
  }
  const std::vector<std::string> labels(pick.size(), s.d.class_names[size_t(o.L)]);
  Lesson lesson{x.data(), s.a.mirror ? xm.data() : nullptr, &labels, pick.size(), D};
  const TeachResult t = teach(o.m.base(), lesson, s.opt, {}, {}, s.pool);
  const auto after = predict_all(t.head, s.val.features, s.nval, s.pool);
  size_t tp = 0, fp = 0, pos = 0, old_ok = 0, all_ok = 0;
  for (size_t i = 0; i < s.nval; ++i) {
    const bool is_new = o.yval[i] == o.new_index, said_new = after[i] == o.new_index;
    pos += is_new;
    tp += is_new && said_new;
    fp += !is_new && said_new;
    if (!is_new) old_ok += after[i] == o.yval[i];
    all_ok += after[i] == o.yval[i];
  }
  json j = {{"case", "new-class"}, {"class", s.d.class_names[size_t(o.L)]}, {"k", k}, {"draw", dr},
            {"recall", double(tp) / double(pos)}, {"precision", tp + fp ? double(tp) / double(tp + fp) : 0.0},
            {"old_before", double(o.old_ok_before) / double(o.old_n)}, {"old_after", double(old_ok) / double(o.old_n)},
            {"overall", double(all_ok) / double(s.nval)}};
  sums.recall.push_back(j["recall"]);
  sums.precision.push_back(j["precision"]);
  sums.old_before.push_back(j["old_before"]);
  sums.old_after.push_back(j["old_after"]);
  sums.overall.push_back(j["overall"]);
  score_estimate(s, o, t, after, j, sums);
  if (!s.a.dump.empty()) write_case(s, o, x, pick.size(), t, j);
  print_json(j);
}

// One draw of corrections: label `count` of the validation photos the full model gets wrong with
// their right class, teach, and score the other validation photos.
void corrections_run(const Bench& s, const Model& full, const std::vector<int>& before, const std::vector<size_t>& wrong, int count,
                     int dr, Sums& sums) {
  const size_t D = s.D;
  const auto pick = draw(wrong, size_t(count), 7919ull * uint64_t(count) + uint64_t(dr));
  std::vector<float> x;
  std::vector<std::string> labels;
  for (size_t i : pick) {
    x.insert(x.end(), s.val.features.begin() + i * D, s.val.features.begin() + (i + 1) * D);
    labels.push_back(s.d.class_names[size_t(s.val.labels[i])]);
  }
  Lesson lesson{x.data(), nullptr, &labels, pick.size(), D};
  const TeachResult t = teach(full.base(), lesson, s.opt, {}, {}, s.pool);
  const auto after = predict_all(t.head, s.val.features, s.nval, s.pool);
  size_t n = 0, ok_before = 0, ok_after = 0;
  for (size_t i = 0; i < s.nval; ++i) {
    if (std::find(pick.begin(), pick.end(), i) != pick.end()) continue;
    ++n;
    ok_before += before[i] == s.val.labels[i];
    ok_after += after[i] == s.val.labels[i];
  }
  json j = {{"case", "corrections"}, {"corrected", pick.size()}, {"draw", dr}, {"accuracy_before", double(ok_before) / double(n)},
            {"accuracy_after", double(ok_after) / double(n)}, {"scored", n}};
  sums.old_before.push_back(j["accuracy_before"]);
  sums.overall.push_back(j["accuracy_after"]);
  print_json(j);
}

std::string percent_or_dash(const std::vector<double>& v) {
  if (v.empty()) return "-";
  double sum = 0;
  for (double e : v) sum += e;
  return std::to_string(100 * sum / double(v.size())).substr(0, 5);
}

void print_tables(const Bench& s, size_t targets, const std::map<int, Sums>& by_k, const std::map<int, Ceiling>& ceiling,
                  const std::map<int, Sums>& by_m) {
  auto pct = [](double v) { return 100 * v; };
  if (!by_k.empty()) {
    std::printf("\nnew class from k photos (%zu classes left out in turn x %d draws; mean / worst decile, %%):\n", targets, s.a.draws);
    std::printf("%4s  %15s  %15s  %15s  %15s  %15s  %11s  %11s  %11s  %11s\n", "k", "new recall", "new precision", "old before",
                "old after", "overall", "est - real", "|est-real|", "in range", "old |est-real|");
    for (auto& [k, t] : by_k) {
      auto rc = mean_and_worst_decile(t.recall), pr = mean_and_worst_decile(t.precision), ob = mean_and_worst_decile(t.old_before),
           oa = mean_and_worst_decile(t.old_after), ov = mean_and_worst_decile(t.overall);
      std::printf("%4d  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %11s  %11s  %11s  %11s\n", k, pct(rc.first),
                  pct(rc.second), pct(pr.first), pct(pr.second), pct(ob.first), pct(ob.second), pct(oa.first), pct(oa.second), pct(ov.first),
                  pct(ov.second), percent_or_dash(t.est_error).c_str(), percent_or_dash(t.est_abs_error).c_str(),
                  percent_or_dash(t.est_in_range).c_str(), percent_or_dash(t.old_est_error).c_str());
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
    std::printf("\ncorrections (%d draws; accuracy on the other validation photos, %%):\n%9s  %8s  %15s  %6s\n", s.a.draws, "corrected", "before",
                "after (worst)", "worse");
    for (auto& [count, t] : by_m) {
      auto a = mean_and_worst_decile(t.overall);
      int worse = 0;
      for (size_t i = 0; i < t.overall.size(); ++i) worse += t.overall[i] < t.old_before[i];
      std::printf("%9d  %8.2f  %6.2f / %6.2f  %6d\n", count, pct(mean_and_worst_decile(t.old_before).first), pct(a.first), pct(a.second), worse);
    }
  }
}

// The runs: the new-class ones (each target, each k, each draw) and the corrections.
void run_cases(const Bench& s, const std::vector<int>& targets) {
  const FewshotArgs& a = s.a;
  const bool corrections = !a.no_corrections && a.dump.empty();
  const auto k_list = !a.dump.empty() ? std::vector<int>{a.dump_k} : parse_ints(a.ks, "--k");
  const auto m_list = corrections ? parse_ints(a.ms, "--corrections") : std::vector<int>{};
  Progress progress("fewshot", (a.no_new_class ? 0 : targets.size() * k_list.size() * size_t(a.draws)) + m_list.size() * size_t(a.draws), "run");
  size_t done = 0;
  // The model on every class: the ceiling's, and the one the corrections start from.
  const bool want_ceiling = !a.no_new_class && a.dump.empty();
  Model full;
  std::vector<int> full_pred;  // its answers for the validation photos
  if (want_ceiling || corrections) {
    full = base_model(s.train, s.r, classes_without(s.C, -1), s.d.class_names, size_t(a.bank_per_class), s.pool);
    full_pred = predict_all(full.head, s.val.features, s.nval, s.pool);
  }
  std::map<int, Sums> by_k, by_m;
  std::map<int, Ceiling> ceiling;
  if (!a.no_new_class)
    for (int L : targets) {
      const LeftOut o = leave_out(s, L);
      if (want_ceiling) ceiling[L] = ceiling_of(s, o, full_pred);
      for (int k : k_list)
        for (int dr = a.dump.empty() ? 0 : a.dump_draw; dr < (a.dump.empty() ? a.draws : a.dump_draw + 1); ++dr) {
          new_class_run(s, o, k, dr, by_k[k]);
          progress.update(++done);
        }
    }
  std::vector<size_t> wrong;  // the validation photos the full model gets wrong
  for (size_t i = 0; i < full_pred.size(); ++i)
    if (full_pred[i] != s.val.labels[i]) wrong.push_back(i);
  for (int count : m_list)
    for (int dr = 0; dr < a.draws; ++dr) {
      corrections_run(s, full, full_pred, wrong, count, dr, by_m[count]);
      progress.update(++done);
    }
  progress.finish();
  print_tables(s, targets.size(), by_k, ceiling, by_m);
}

void add_fewshot_options(CLI::App* cmd, FewshotArgs& a) {
  cmd->add_option("data", a.data, "folder with one sub-folder of photos per class (split 0.2, seed 123)")->required();
  cmd->add_option("--model", a.model, "backbone bundle (default: the imported ResNet-50)");
  cmd->add_option("--k", a.ks, "photos of the new class to teach from")->capture_default_str();
  cmd->add_option("--corrections", a.ms, "mistakes corrected per run")->capture_default_str();
  cmd->add_option("--draws", a.draws, "seeded draws per k (and per correction count)")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--classes", a.classes, "only these classes as the new one (comma-separated; default: each)");
  cmd->add_option("--bank-per-class", a.bank_per_class, "feature bank rows per class (petal export's default)")->capture_default_str()->check(CLI::Range(0, 100000));
  cmd->add_flag("--no-corrections", a.no_corrections, "skip the corrections runs");
  cmd->add_flag("--no-new-class", a.no_new_class, "skip the new-class runs");
  cmd->add_flag("--no-views", a.no_views, "train the base models on the photos alone, without the recipe's mirror and crop views (quicker; the wasm parity test uses it)");
  cmd->add_flag("--no-estimate", a.no_estimate, "skip teach()'s k-fold estimate (faster)");
  cmd->add_option("--threads", a.threads, "threads (default: all cores)");
  auto& o = a.opt;
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
  cmd->add_flag("--mirror", a.mirror, "teach with the photos' mirror images too");
  cmd->add_option("--dump-case", a.dump, "write one new-class case (model, photos, validation features) to this bundle for the wasm parity test, and run only it");
  cmd->add_option("--dump-class", a.dump_class, "the class of --dump-case (default: the last)");
  cmd->add_option("--dump-k", a.dump_k, "k of --dump-case")->capture_default_str();
  cmd->add_option("--dump-draw", a.dump_draw, "draw of --dump-case")->capture_default_str();
  cmd->add_flag("--study-holdout-bank", a.study_holdout, "with --dump-study: the base models train without their bank's photos");
  cmd->add_option("--dump-study", a.study, "for studying methods outside Petal: write every feature (training views, validation) and each left-out class's base model (head + bank) to this folder, then stop");
}

// The data, features and pool of the runs, then the runs (or the study dump).
void run_fewshot(const FewshotArgs& a) {
  Recipe r = recipe_by_name("petal");
  if (a.no_views) {
    r.flips = false;
    r.extra_views.clear();
  }
  Dataset d = open_dataset(a.data, 0.2, 123);
  if (d.class_names.size() < 3) throw Error("the benchmark leaves one class out and needs at least 3 classes; '" + d.root + "' has " + std::to_string(d.class_names.size()));
  const std::vector<int> targets = target_classes(a, d);
  Bundle b = load_backbone(a.model);
  FeatureSource src(b, r.prep, size_t(a.threads));
  FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
  ExtractOptions eo;
  eo.flips = r.flips || a.mirror;  // the recipe's views include the mirror image; --mirror teaches with it
  eo.extra_views = r.extra_views;
  const FeatureTable train = extract_features(d, subset_indices(d, Subset::Training), src, cache, eo);
  const FeatureTable val = extract_features(d, subset_indices(d, Subset::Validation), src, cache, ExtractOptions{});
  ComputePool pool{size_t(a.threads)};
  TeachOptions opt = a.opt;
  if (a.no_estimate) opt.estimate_folds = 0;
  const Bench s{a, d, r, b, src.model_id(), train, val, pool.get(), opt, d.class_names.size(), train.dim, val.files.size()};
  if (!a.study.empty()) return write_study(s, targets);
  run_cases(s, targets);
}

}  // namespace

void register_fewshot(CLI::App& app) {
  add_command(app, "fewshot", "Benchmark teaching: a left-out class from k photos, and corrections (JSON lines + table)", add_fewshot_options,
              run_fewshot);
}

}  // namespace petal::cli
