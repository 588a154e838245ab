#include "teach.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "engine.h"
#include "error.h"
#include "petal_limits.h"

namespace petal {

std::vector<std::string> taught_class_names(const std::vector<std::string>& known, const std::vector<std::string>& labels) {
  std::vector<std::string> names = known;
  for (auto& l : labels)
    if (std::find(names.begin(), names.end(), l) == names.end()) names.push_back(l);
  return names;
}

namespace {

constexpr int kHidden = 512;  // a new head's hidden units (the tutorial's Dense(512))

struct Rows {
  std::vector<float> x;
  std::vector<int32_t> y;
  size_t bank = 0, user = 0;
  size_t typical = 0;                     // the median count of a bank class's rows (0: no bank)
  std::map<int32_t, size_t> photos, user_rows;  // per class: the user's photos, and their rows (repeats)
};

// Which rows a training run may use (the estimate leaves one fold out).
struct Subset {
  std::vector<bool> user, bank;  // true: used for training
};

// The training rows of one run: the bank's rows, then the user's photos, each user class repeated
// to weigh about as much as a bank class.
Rows training_rows(const TeachBase& base, const Lesson& lesson, const std::vector<std::string>& names, const Subset& use,
                   const TeachOptions& opt) {
  const size_t D = lesson.dim;
  std::map<int32_t, size_t> bank_count, user_count;
  for (size_t i = 0; i < base.bank_rows; ++i)
    if (use.bank[i]) bank_count[base.bank_labels[i]]++;
  std::vector<int32_t> user_label(lesson.n);
  for (size_t i = 0; i < lesson.n; ++i) {
    user_label[i] = int32_t(std::find(names.begin(), names.end(), (*lesson.labels)[i]) - names.begin());
    if (use.user[i]) user_count[user_label[i]]++;
  }
  Rows r;
  std::vector<size_t> counts;
  for (auto& [c, n] : bank_count) counts.push_back(n);
  std::sort(counts.begin(), counts.end());
  r.typical = counts.empty() ? 0 : counts[counts.size() / 2];
  // A class the bank already has is not repeated: its few photos (often the model's mistakes)
  // should nudge it, not outweigh what the bank shows of it.
  auto repeats = [&](int32_t c) {
    if (bank_count.count(c)) return size_t(1);
    const size_t n = user_count[c];
    const size_t want = (std::max<size_t>(r.typical, 1) + n - 1) / n;
    return std::max<size_t>(lesson.mirrored ? 2 : 1, std::min<size_t>(size_t(opt.max_repeat), want));
  };
  auto push = [&](const float* x, int32_t y) {
    r.x.insert(r.x.end(), x, x + D);
    r.y.push_back(y);
  };
  for (size_t i = 0; i < base.bank_rows; ++i)
    if (use.bank[i]) {
      push(base.bank_features + i * D, base.bank_labels[i]);
      ++r.bank;
    }
  for (size_t i = 0; i < lesson.n; ++i) {
    if (!use.user[i]) continue;
    const size_t k = repeats(user_label[i]);
    r.photos[user_label[i]]++;
    r.user_rows[user_label[i]] += k;
    for (size_t v = 0; v < k; ++v) {
      const bool mirror = lesson.mirrored && v % 2 == 1;
      push((mirror ? lesson.mirrored : lesson.features) + i * D, user_label[i]);
      ++r.user;
    }
  }
  if (r.y.size() > limits::kMaxTrainExamples)
    throw Error("too many training examples (" + std::to_string(r.y.size()) + "); the limit is " +
                std::to_string(limits::kMaxTrainExamples));
  return r;
}

// A new head of its own for a model without one (or when asked not to start from the model's).
Head fresh_head(size_t dim, size_t classes, uint64_t seed) { return Head(int(dim), kHidden, int(classes), seed); }

TrainOptions train_options(const TeachOptions& opt) {
  TrainOptions t;
  t.epochs = opt.epochs;
  t.batch_size = opt.batch_size;
  t.learning_rate = opt.fresh_learning_rate;
  t.dropout = opt.dropout;
  t.label_smoothing = opt.label_smoothing;
  t.seed = opt.seed;
  return t;
}

// Residual teaching. The model's head stays exactly as it was; each class the user labelled gets
// a residual unit (wasm/head.h): a linear score of the photo's centred, unit-length features
// (the form few-shot learning works best in), added to that class's score. A new class's score is
// that unit alone. Only the new units learn, on the bank's rows and the user's photos together,
// through the softmax over all classes — so a new class must beat the model's own answer on its
// photos and stay below it on the bank's, and what the model knew cannot be trained away.
Head residual_head(const Head& h0, const Rows& rows, size_t C, size_t D, const TeachOptions& opt,
                   const std::function<bool(const EpochStats&)>& on_epoch, const std::function<void(size_t, size_t)>& on_step,
                   std::vector<EpochStats>& history, bool& stopped, pthreadpool_t pool) {
  const size_t N = rows.y.size(), C0 = size_t(h0.classes());
  // The classes taught: those among the user's rows (after the bank's), in order of appearance.
  std::vector<bool> is_taught(C, false);
  std::vector<size_t> taught;
  for (size_t i = rows.bank; i < N; ++i)
    if (!is_taught[size_t(rows.y[i])]) {
      is_taught[size_t(rows.y[i])] = true;
      taught.push_back(size_t(rows.y[i]));
    }
  const size_t U = taught.size();
  // The center: the model's own (when taught before), else the mean of the bank's rows.
  std::vector<float> center = h0.residual_center();
  if (center.empty()) {
    center.assign(D, 0.f);
    const size_t n = rows.bank ? rows.bank : N;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < D; ++j) center[j] += rows.x[i * D + j] / float(n);
  }
  PaddedBuffer x, w, score, g, gw;
  x.resize(N * D);
  Head::residual_input(rows.x.data(), N, D, center.data(), x.data());
  // A class is new to the bank when the bank has no rows of it (a class taught before, too).
  std::vector<bool> in_bank(C, false);
  for (size_t i = 0; i < rows.bank; ++i) in_bank[size_t(rows.y[i])] = true;
  // The units of the classes taught now replace any they had: their photos are all here again.
  Head h = h0.without_units_of(is_taught);
  // With a new class, the model's scores are softened first: trained on its bank, it is surer of
  // itself there than on new photos, and a new class would otherwise lose to it too often.
  const bool any_new = std::any_of(taught.begin(), taught.end(), [&](size_t c) { return !in_bank[c]; });
  // Row weights: a new class with more photos than a bank class has rows weighs as much as one,
  // not more (200 photos against 50 rows would take the old classes' photos).
  std::vector<float> weight(N, 1.f);
  size_t k_new = 0;  // the fewest photos of a new class
  for (auto& [c, n] : rows.photos)
    if (!in_bank[size_t(c)]) k_new = k_new ? std::min(k_new, n) : n;
  for (size_t i = rows.bank; i < N; ++i) {
    const int32_t c = rows.y[i];
    const size_t n = rows.user_rows.at(c);
    if (!in_bank[size_t(c)] && rows.typical && n > rows.typical) weight[i] = float(rows.typical) / float(n);
  }
  double weight_sum = 0;
  for (float v : weight) weight_sum += v;
  // The softening shrinks as the new class gets more photos (÷ 3 at 10 photos, none from 90).
  if (any_new) h.set_base_scale(1.f / std::max(1.f, opt.temperature * std::sqrt(10.f / float(std::max<size_t>(k_new, 1)))));
  const auto base = h.logits(rows.x.data(), N, pool);  // the model's scores, N × C0
  w.resize(U * D);
  std::fill(w.v.begin(), w.v.end(), 0.f);
  std::vector<float> b(U, 0.f), mw(U * D, 0.f), vw(U * D, 0.f), mb(U, 0.f), vb(U, 0.f);
  score.resize(N * U);
  g.resize(U * N);
  gw.resize(U * D);
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-7f;
  const int steps_per_epoch = std::max(1, opt.steps / std::max(1, opt.epochs));
  const size_t total = size_t(steps_per_epoch) * size_t(opt.epochs);
  std::vector<float> z(C);
  size_t step = 0;
  for (int epoch = 1; epoch <= opt.epochs && !stopped; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    double loss = 0, correct = 0;
    for (int s = 0; s < steps_per_epoch; ++s, ++step) {
      matmul(x.data(), w.data(), score.data(), N, D, U, true, pool);
      loss = 0, correct = 0;
      for (size_t i = 0; i < N; ++i) {
        for (size_t c = 0; c < C; ++c) z[c] = c < C0 ? base[i * C0 + c] : 0.f;
        for (size_t u = 0; u < U; ++u) z[taught[u]] += score.data()[i * U + u] + b[u];
        const size_t y = size_t(rows.y[i]);
        correct += weight[i] * (size_t(std::max_element(z.begin(), z.end()) - z.begin()) == y);
        softmax_rows(z.data(), 1, C);
        loss -= weight[i] * std::log(std::max(z[y], 1e-12f));
        const float wi = float(weight[i] / weight_sum);
        for (size_t u = 0; u < U; ++u) g.data()[u * N + i] = (z[taught[u]] - (taught[u] == y ? 1.f : 0.f)) * wi;
      }
      matmul(g.data(), x.data(), gw.data(), U, N, D, false, pool);
      const float lr_t = opt.learning_rate * std::sqrt(1.f - std::pow(beta2, float(step + 1))) / (1.f - std::pow(beta1, float(step + 1)));
      auto adam = [&](float& p, float grad, float& m, float& v) {
        m = beta1 * m + (1 - beta1) * grad;
        v = beta2 * v + (1 - beta2) * grad * grad;
        p -= lr_t * m / (std::sqrt(v) + eps);
      };
      for (size_t u = 0; u < U; ++u) {
        const float l2 = in_bank[taught[u]] ? opt.l2_known : opt.l2;
        for (size_t k = u * D; k < (u + 1) * D; ++k) adam(w.data()[k], gw.data()[k] + l2 * w.data()[k], mw[k], vw[k]);
      }
      for (size_t u = 0; u < U; ++u) {
        float gb = 0;
        for (size_t i = 0; i < N; ++i) gb += g.data()[u * N + i];
        if (!in_bank[taught[u]]) adam(b[u], gb, mb[u], vb[u]);  // a class in the bank keeps its prior
      }
      if (on_step) on_step(step + 1, total);
    }
    EpochStats st;
    st.epoch = epoch;
    st.loss = loss / weight_sum;
    st.accuracy = correct / weight_sum;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back(st);
    if (on_epoch && !on_epoch(st)) stopped = true;
  }
  // Into the head: new classes first get an output row of their own, then the units.
  std::vector<float> zeros(size_t(h.hidden()), 0.f), out(C * U, 0.f);
  for (size_t c = C0; c < C; ++c) h.add_class(zeros.data(), 0.f);
  for (size_t u = 0; u < U; ++u) out[taught[u] * U + u] = 1.f;
  h.add_residual_units(U, w.data(), b.data(), out.data(), center);
  return h;
}

}  // namespace

TeachResult teach(const TeachBase& model, const Lesson& lesson, const TeachOptions& opt,
                  const std::function<bool(const EpochStats&)>& on_epoch, const std::function<void(size_t, size_t)>& on_progress,
                  pthreadpool_t pool) {
  if (lesson.n == 0) throw Error("label at least one photo to teach the model");
  if (!lesson.labels || lesson.labels->size() != lesson.n) throw Error("every photo needs a label");
  // A model without a head learns the labelled classes from scratch.
  const bool trained = model.head && model.head->classes() > 0 && model.class_names;
  const bool fresh = !trained || !opt.from_model;
  const std::vector<std::string> known = trained ? *model.class_names : std::vector<std::string>{};
  if (trained && lesson.dim != size_t(model.head->in()))
    throw Error("the photos have " + std::to_string(lesson.dim) + " features; the model expects " + std::to_string(model.head->in()));
  const auto names = taught_class_names(known, *lesson.labels);
  validate_class_names(names);
  const size_t C = names.size(), C0 = known.size(), D = lesson.dim;
  TeachBase base = model;
  if (C0 == 0) base.bank_rows = 0;  // a model without a head has no classes for its bank
  for (size_t i = 0; i < base.bank_rows; ++i)
    if (base.bank_labels[i] < 0 || size_t(base.bank_labels[i]) >= C0) throw Error("the model's feature bank has a label outside its classes");

  // The estimate's folds: the user's photos of each class (a class needs 2 photos to hold one
  // out) and the bank's rows of each class, dealt round-robin after a seeded shuffle.
  int folds = opt.estimate_folds;
  std::vector<int> user_fold(lesson.n, -1), bank_fold(base.bank_rows, -1);
  std::map<std::string, std::vector<size_t>> by_class;
  for (size_t i = 0; i < lesson.n; ++i) by_class[(*lesson.labels)[i]].push_back(i);
  size_t most = 0;
  for (auto& [name, idx] : by_class) most = std::max(most, idx.size());
  if (folds > 0) folds = int(std::min<size_t>(size_t(folds), std::max<size_t>(most, 2)));
  Rng deal(opt.seed ^ 0x5EEDF01Dull);
  auto shuffle_deal = [&](std::vector<size_t> idx, std::vector<int>& fold) {
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[deal.below(i)]);
    for (size_t j = 0; j < idx.size(); ++j) fold[idx[j]] = int(j % size_t(folds));
  };
  if (folds > 1) {
    for (auto& [name, idx] : by_class)
      if (idx.size() >= 2) shuffle_deal(idx, user_fold);
    std::map<int32_t, std::vector<size_t>> bank_by;
    for (size_t i = 0; i < base.bank_rows; ++i) bank_by[base.bank_labels[i]].push_back(i);
    for (auto& [c, idx] : bank_by) shuffle_deal(idx, bank_fold);
  }
  const size_t runs = folds > 1 ? size_t(folds) + 1 : 1;
  const TrainOptions topt = train_options(opt);

  size_t run = 0;
  auto train_run = [&](const Subset& use, bool report) {
    Rows rows = training_rows(base, lesson, names, use, opt);
    bool stopped = false;
    auto epoch_cb = [&](const EpochStats& s) {
      if (report && on_epoch && !on_epoch(s)) stopped = true;
      return !stopped;
    };
    auto step_cb = [&](size_t step, size_t total) {
      if (on_progress) on_progress(run * 1000 + step * 1000 / total, runs * 1000);
    };
    Head h;
    std::vector<EpochStats> hist;
    if (fresh) {
      h = fresh_head(D, C, opt.seed);
      FeatureSet tr{rows.x.data(), rows.y.data(), rows.y.size(), D};
      hist = h.train(tr, nullptr, topt, epoch_cb, step_cb, pool);
    } else {
      h = residual_head(*base.head, rows, C, D, opt, epoch_cb, step_cb, hist, stopped, pool);
    }
    ++run;
    return std::make_tuple(std::move(h), std::move(hist), std::move(rows), stopped);
  };

  TeachResult result;
  result.class_names = names;
  {
    Subset all{std::vector<bool>(lesson.n, true), std::vector<bool>(base.bank_rows, true)};
    auto [h, hist, rows, stopped] = train_run(all, true);
    result.head = std::move(h);
    result.history = std::move(hist);
    result.bank_rows = rows.bank;
    result.user_rows = rows.user;
    result.stopped = stopped;
  }
  if (runs == 1 || result.stopped) return result;

  // k-fold: each fold's photos and bank rows are scored by a model taught without them.
  std::vector<std::vector<int>> confusion(C, std::vector<int>(C, 0));
  for (int f = 0; f < folds; ++f) {
    Subset use{std::vector<bool>(lesson.n), std::vector<bool>(base.bank_rows)};
    std::vector<const float*> held;
    std::vector<int32_t> held_label;
    for (size_t i = 0; i < lesson.n; ++i) {
      use.user[i] = user_fold[i] != f;
      if (!use.user[i]) {
        held.push_back(lesson.features + i * D);
        held_label.push_back(int32_t(std::find(names.begin(), names.end(), (*lesson.labels)[i]) - names.begin()));
      }
    }
    for (size_t i = 0; i < base.bank_rows; ++i) {
      use.bank[i] = bank_fold[i] != f;
      if (!use.bank[i]) {
        held.push_back(base.bank_features + i * D);
        held_label.push_back(base.bank_labels[i]);
      }
    }
    auto [h, hist, rows, stopped] = train_run(use, false);
    std::vector<float> x;
    for (auto* p : held) x.insert(x.end(), p, p + D);
    const auto p = h.predict(x.data(), held.size(), pool);
    for (size_t i = 0; i < held.size(); ++i) {
      const float* row = &p[i * C];
      confusion[size_t(held_label[i])][size_t(std::max_element(row, row + C) - row)]++;
    }
  }
  for (size_t c = 0; c < C; ++c) {
    ClassEstimate e;
    e.name = names[c];
    e.is_new = c >= C0;
    e.photos = int(by_class.count(names[c]) ? by_class[names[c]].size() : 0);
    int right = 0, worst = -1;
    for (size_t k = 0; k < C; ++k) {
      e.tested += confusion[c][k];
      if (k == c) right = confusion[c][k];
      else if (confusion[c][k] > 0 && (worst < 0 || confusion[c][k] > confusion[c][size_t(worst)])) worst = int(k);
    }
    if (e.tested > 0) e.recall = double(right) / double(e.tested);
    if (worst >= 0) {
      e.confused_with = names[size_t(worst)];
      e.confused_count = confusion[c][size_t(worst)];
    }
    result.estimates.push_back(e);
  }
  return result;
}

std::string estimate_hint(const ClassEstimate& e) {
  const bool labelled = e.photos > 0;
  if (labelled && e.photos < 5)
    return "add more photos of " + e.name + ": with " + std::to_string(e.photos) + " it cannot be learned or checked well";
  if (e.recall >= 0 && e.recall < 0.8) {
    std::string s = "add more photos of " + e.name;
    if (!e.confused_with.empty()) s += "; they are often taken for " + e.confused_with;
    return s;
  }
  return "";
}

}  // namespace petal
