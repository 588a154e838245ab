#include "teach.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <tuple>

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

// What residual teaching learns from: the rows centred and scaled to unit length, the classes
// taught, which classes the bank has rows of, and each row's weight.
struct UnitProblem {
  std::vector<size_t> taught;   // the classes taught, in order of appearance among the user's rows
  std::vector<bool> is_taught;  // by class
  std::vector<bool> in_bank;    // by class: the bank has rows of it
  std::vector<float> center;
  PaddedBuffer x;               // N × D unit-length inputs
  std::vector<float> weight;    // by row
  double weight_sum = 0;
  size_t k_new = 0;             // the fewest photos of a new class
};

UnitProblem unit_problem(const Head& h0, const Rows& rows, size_t C, size_t D) {
  const size_t N = rows.y.size();
  UnitProblem p;
  p.is_taught.assign(C, false);
  for (size_t i = rows.bank; i < N; ++i)
    if (!p.is_taught[size_t(rows.y[i])]) {
      p.is_taught[size_t(rows.y[i])] = true;
      p.taught.push_back(size_t(rows.y[i]));
    }
  // The center: the model's own (when taught before), else the mean of the bank's rows.
  p.center = h0.residual_center();
  if (p.center.empty()) {
    p.center.assign(D, 0.f);
    const size_t n = rows.bank ? rows.bank : N;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < D; ++j) p.center[j] += rows.x[i * D + j] / float(n);
  }
  p.x.resize(N * D);
  Head::residual_input(rows.x.data(), N, D, p.center.data(), p.x.data());
  // A class is new to the bank when the bank has no rows of it (a class taught before, too).
  p.in_bank.assign(C, false);
  for (size_t i = 0; i < rows.bank; ++i) p.in_bank[size_t(rows.y[i])] = true;
  // Row weights: a new class with more photos than a bank class has rows weighs as much as one,
  // not more (200 photos against 50 rows would take the old classes' photos).
  p.weight.assign(N, 1.f);
  for (auto& [c, n] : rows.photos)
    if (!p.in_bank[size_t(c)]) p.k_new = p.k_new ? std::min(p.k_new, n) : n;
  for (size_t i = rows.bank; i < N; ++i) {
    const int32_t c = rows.y[i];
    const size_t n = rows.user_rows.at(c);
    if (!p.in_bank[size_t(c)] && rows.typical && n > rows.typical) p.weight[i] = float(rows.typical) / float(n);
  }
  for (float v : p.weight) p.weight_sum += v;
  return p;
}

// The units' weights and biases, learned by full-batch Adam steps through the softmax over all
// classes, on top of the model's own scores `base` (N × C0).
class UnitTrainer {
 public:
  UnitTrainer(const UnitProblem& p, const Rows& rows, const std::vector<float>& base, size_t C0, size_t C, size_t D,
              const TeachOptions& opt, pthreadpool_t pool)
      : p_(p), rows_(rows), base_(base), N(rows.y.size()), C0(C0), C(C), D(D), U(p.taught.size()), opt_(opt), pool_(pool),
        mw(U * D, 0.f), vw(U * D, 0.f), mb(U, 0.f), vb(U, 0.f), z(C) {
    b.assign(U, 0.f);
    w.resize(U * D);
    std::fill(w.v.begin(), w.v.end(), 0.f);
    score.resize(N * U);
    g.resize(U * N);
    gw.resize(U * D);
  }
  // Step `step` (0-based); `loss` and `correct` are the weighted sums over the rows before it.
  void step(size_t step, double& loss, double& correct);
  PaddedBuffer w;
  std::vector<float> b;

 private:
  const UnitProblem& p_;
  const Rows& rows_;
  const std::vector<float>& base_;
  const size_t N, C0, C, D, U;
  const TeachOptions& opt_;
  pthreadpool_t pool_;
  std::vector<float> mw, vw, mb, vb;
  PaddedBuffer score, g, gw;
  std::vector<float> z;
};

void UnitTrainer::step(size_t step, double& loss, double& correct) {
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-7f;
  matmul(p_.x.data(), w.data(), score.data(), N, D, U, true, pool_);
  loss = 0, correct = 0;
  for (size_t i = 0; i < N; ++i) {
    for (size_t c = 0; c < C; ++c) z[c] = c < C0 ? base_[i * C0 + c] : 0.f;
    for (size_t u = 0; u < U; ++u) z[p_.taught[u]] += score.data()[i * U + u] + b[u];
    const size_t y = size_t(rows_.y[i]);
    correct += p_.weight[i] * (size_t(std::max_element(z.begin(), z.end()) - z.begin()) == y);
    softmax_rows(z.data(), 1, C);
    loss -= p_.weight[i] * std::log(std::max(z[y], 1e-12f));
    const float wi = float(p_.weight[i] / p_.weight_sum);
    for (size_t u = 0; u < U; ++u) g.data()[u * N + i] = (z[p_.taught[u]] - (p_.taught[u] == y ? 1.f : 0.f)) * wi;
  }
  matmul(g.data(), p_.x.data(), gw.data(), U, N, D, false, pool_);
  const float lr_t = opt_.learning_rate * std::sqrt(1.f - std::pow(beta2, float(step + 1))) / (1.f - std::pow(beta1, float(step + 1)));
  auto adam = [&](float& p, float grad, float& m, float& v) {
    m = beta1 * m + (1 - beta1) * grad;
    v = beta2 * v + (1 - beta2) * grad * grad;
    p -= lr_t * m / (std::sqrt(v) + eps);
  };
  for (size_t u = 0; u < U; ++u) {
    const float l2 = p_.in_bank[p_.taught[u]] ? opt_.l2_known : opt_.l2;
    for (size_t k = u * D; k < (u + 1) * D; ++k) adam(w.data()[k], gw.data()[k] + l2 * w.data()[k], mw[k], vw[k]);
  }
  for (size_t u = 0; u < U; ++u) {
    float gb = 0;
    for (size_t i = 0; i < N; ++i) gb += g.data()[u * N + i];
    if (!p_.in_bank[p_.taught[u]]) adam(b[u], gb, mb[u], vb[u]);  // a class in the bank keeps its prior
  }
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
  const UnitProblem p = unit_problem(h0, rows, C, D);
  const size_t U = p.taught.size();
  // The units of the classes taught now replace any they had: their photos are all here again.
  Head h = h0.without_units_of(p.is_taught);
  // With a new class, the model's scores are softened: trained on its bank, it is surer of itself
  // there than on new photos, and a new class would otherwise lose to it too often. In use, the
  // softening shrinks as the new class gets more photos (÷ 3 at 10 photos, none from 90); the
  // unit still learns against scores softened at least ÷ 3, so with many photos it does not learn
  // to beat the model's over-confident bank by a margin that then takes the old classes' photos.
  const bool any_new = std::any_of(p.taught.begin(), p.taught.end(), [&](size_t c) { return !p.in_bank[c]; });
  const float soften = opt.temperature * std::sqrt(10.f / float(std::max<size_t>(p.k_new, 1)));
  if (any_new) h.set_base_scale(1.f / std::max(opt.temperature, soften));
  const auto base = h.logits(rows.x.data(), N, pool);  // the model's scores, N × C0
  if (any_new) h.set_base_scale(1.f / std::max(1.f, soften));
  UnitTrainer units(p, rows, base, C0, C, D, opt, pool);
  const int steps_per_epoch = std::max(1, opt.steps / std::max(1, opt.epochs));
  const size_t total = size_t(steps_per_epoch) * size_t(opt.epochs);
  size_t step = 0;
  for (int epoch = 1; epoch <= opt.epochs && !stopped; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    double loss = 0, correct = 0;
    for (int s = 0; s < steps_per_epoch; ++s, ++step) {
      units.step(step, loss, correct);
      if (on_step) on_step(step + 1, total);
    }
    EpochStats st;
    st.epoch = epoch;
    st.loss = loss / p.weight_sum;
    st.accuracy = correct / p.weight_sum;
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.push_back(st);
    if (on_epoch && !on_epoch(st)) stopped = true;
  }
  // Into the head: new classes first get an output row of their own, then the units.
  std::vector<float> zeros(size_t(h.hidden()), 0.f), out(C * U, 0.f);
  for (size_t c = C0; c < C; ++c) h.add_class(zeros.data(), 0.f);
  for (size_t u = 0; u < U; ++u) out[p.taught[u] * U + u] = 1.f;
  h.add_residual_units(U, units.w.data(), units.b.data(), out.data(), p.center);
  return h;
}

// The estimate's folds: the user's photos of each class (a class needs 2 photos to hold one
// out) and the bank's rows of each class, dealt round-robin after a seeded shuffle.
struct Folds {
  int count = 0;  // 0 or 1: no estimate
  std::vector<int> user, bank;  // each photo's and bank row's fold (-1: in none)
};

Folds deal_folds(const TeachBase& base, const Lesson& lesson, const std::map<std::string, std::vector<size_t>>& by_class,
                 const TeachOptions& opt) {
  Folds f{opt.estimate_folds, std::vector<int>(lesson.n, -1), std::vector<int>(base.bank_rows, -1)};
  size_t most = 0;
  for (auto& [name, idx] : by_class) most = std::max(most, idx.size());
  if (f.count > 0) f.count = int(std::min<size_t>(size_t(f.count), std::max<size_t>(most, 2)));
  Rng deal(opt.seed ^ 0x5EEDF01Dull);
  auto shuffle_deal = [&](std::vector<size_t> idx, std::vector<int>& fold) {
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[deal.below(i)]);
    for (size_t j = 0; j < idx.size(); ++j) fold[idx[j]] = int(j % size_t(f.count));
  };
  if (f.count > 1) {
    for (auto& [name, idx] : by_class)
      if (idx.size() >= 2) shuffle_deal(idx, f.user);
    std::map<int32_t, std::vector<size_t>> bank_by;
    for (size_t i = 0; i < base.bank_rows; ++i) bank_by[base.bank_labels[i]].push_back(i);
    for (auto& [c, idx] : bank_by) shuffle_deal(idx, f.bank);
  }
  return f;
}

// The training runs of one teach(): the model's, then one per fold of the estimate.
class Teacher {
 public:
  struct Run {
    Head head;
    std::vector<EpochStats> history;
    Rows rows;
    bool stopped = false;
  };
  Teacher(const TeachBase& base, const Lesson& lesson, const std::vector<std::string>& names, bool fresh, size_t runs,
          const TeachOptions& opt, const std::function<bool(const EpochStats&)>& on_epoch,
          const std::function<void(size_t, size_t)>& on_progress, pthreadpool_t pool)
      : base_(base), lesson_(lesson), names_(names), fresh_(fresh), runs_(runs), opt_(opt), on_epoch_(on_epoch),
        on_progress_(on_progress), pool_(pool) {}
  // A run on the rows `use` leaves in; `report`: on_epoch sees its epochs (the model's run).
  Run train(const Subset& use, bool report);
  // The estimate: each fold's photos and bank rows scored by a model taught without them.
  std::vector<ClassEstimate> estimate(const Folds& folds, const std::map<std::string, std::vector<size_t>>& by_class, size_t C0);

 private:
  const TeachBase& base_;
  const Lesson& lesson_;
  const std::vector<std::string>& names_;
  const bool fresh_;
  const size_t runs_;
  const TeachOptions& opt_;
  const std::function<bool(const EpochStats&)>& on_epoch_;
  const std::function<void(size_t, size_t)>& on_progress_;
  pthreadpool_t pool_;
  size_t run_ = 0;
};

Teacher::Run Teacher::train(const Subset& use, bool report) {
  Run r;
  r.rows = training_rows(base_, lesson_, names_, use, opt_);
  auto epoch_cb = [&](const EpochStats& s) {
    if (report && on_epoch_ && !on_epoch_(s)) r.stopped = true;
    return !r.stopped;
  };
  auto step_cb = [&](size_t step, size_t total) {
    if (on_progress_) on_progress_(run_ * 1000 + step * 1000 / total, runs_ * 1000);
  };
  const size_t C = names_.size(), D = lesson_.dim;
  if (fresh_) {
    r.head = fresh_head(D, C, opt_.seed);
    FeatureSet tr{r.rows.x.data(), r.rows.y.data(), r.rows.y.size(), D};
    r.history = r.head.train(tr, nullptr, train_options(opt_), epoch_cb, step_cb, pool_);
  } else {
    r.head = residual_head(*base_.head, r.rows, C, D, opt_, epoch_cb, step_cb, r.history, r.stopped, pool_);
  }
  ++run_;
  return r;
}

// The recall seen on `tested` held-out photos, and where the real one likely lies: the 90 % Wilson
// score interval, which stays inside [0, 1] and is honest at 0 or all right (10 of 10: 79–100 %).
std::tuple<double, double, double> recall_with_interval(int right, int tested) {
  const double z = 1.6449, n = double(tested), p = double(right) / n;
  const double center = (p + z * z / (2 * n)) / (1 + z * z / n);
  const double half = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n);
  // (at none or all right one end is exactly 0 or 1; rounding would leave it a hair inside)
  return {p, right == 0 ? 0.0 : std::max(0.0, center - half), right == tested ? 1.0 : std::min(1.0, center + half)};
}

std::vector<ClassEstimate> Teacher::estimate(const Folds& folds, const std::map<std::string, std::vector<size_t>>& by_class,
                                             size_t C0) {
  const size_t C = names_.size(), D = lesson_.dim;
  std::vector<std::vector<int>> confusion(C, std::vector<int>(C, 0));
  for (int f = 0; f < folds.count; ++f) {
    Subset use{std::vector<bool>(lesson_.n), std::vector<bool>(base_.bank_rows)};
    std::vector<float> x;  // the held-out rows
    std::vector<int32_t> held_label;
    for (size_t i = 0; i < lesson_.n; ++i) {
      use.user[i] = folds.user[i] != f;
      if (use.user[i]) continue;
      x.insert(x.end(), lesson_.features + i * D, lesson_.features + (i + 1) * D);
      held_label.push_back(int32_t(std::find(names_.begin(), names_.end(), (*lesson_.labels)[i]) - names_.begin()));
    }
    for (size_t i = 0; i < base_.bank_rows; ++i) {
      use.bank[i] = folds.bank[i] != f;
      if (use.bank[i]) continue;
      x.insert(x.end(), base_.bank_features + i * D, base_.bank_features + (i + 1) * D);
      held_label.push_back(base_.bank_labels[i]);
    }
    const Run r = train(use, false);
    const auto p = r.head.predict(x.data(), held_label.size(), pool_);
    for (size_t i = 0; i < held_label.size(); ++i) {
      const float* row = &p[i * C];
      confusion[size_t(held_label[i])][size_t(std::max_element(row, row + C) - row)]++;
    }
  }
  std::vector<ClassEstimate> estimates;
  for (size_t c = 0; c < C; ++c) {
    ClassEstimate e;
    e.name = names_[c];
    e.is_new = c >= C0;
    e.photos = int(by_class.count(names_[c]) ? by_class.at(names_[c]).size() : 0);
    int right = 0, worst = -1;
    for (size_t k = 0; k < C; ++k) {
      e.tested += confusion[c][k];
      if (k == c) right = confusion[c][k];
      else if (confusion[c][k] > 0 && (worst < 0 || confusion[c][k] > confusion[c][size_t(worst)])) worst = int(k);
    }
    if (e.tested > 0) std::tie(e.recall, e.low, e.high) = recall_with_interval(right, e.tested);
    if (worst >= 0) {
      e.confused_with = names_[size_t(worst)];
      e.confused_count = confusion[c][size_t(worst)];
    }
    estimates.push_back(e);
  }
  return estimates;
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
  const size_t C0 = known.size();
  TeachBase base = model;
  if (C0 == 0) base.bank_rows = 0;  // a model without a head has no classes for its bank
  for (size_t i = 0; i < base.bank_rows; ++i)
    if (base.bank_labels[i] < 0 || size_t(base.bank_labels[i]) >= C0) throw Error("the model's feature bank has a label outside its classes");
  std::map<std::string, std::vector<size_t>> by_class;
  for (size_t i = 0; i < lesson.n; ++i) by_class[(*lesson.labels)[i]].push_back(i);
  const Folds folds = deal_folds(base, lesson, by_class, opt);
  const size_t runs = folds.count > 1 ? size_t(folds.count) + 1 : 1;
  Teacher teacher(base, lesson, names, fresh, runs, opt, on_epoch, on_progress, pool);

  TeachResult result;
  result.class_names = names;
  Teacher::Run all = teacher.train({std::vector<bool>(lesson.n, true), std::vector<bool>(base.bank_rows, true)}, true);
  result.head = std::move(all.head);
  result.history = std::move(all.history);
  result.bank_rows = all.rows.bank;
  result.user_rows = all.rows.user;
  result.stopped = all.stopped;
  if (runs == 1 || result.stopped) return result;
  result.estimates = teacher.estimate(folds, by_class, C0);
  return result;
}

bool estimate_is_weak(const ClassEstimate& e) { return e.recall >= 0 && e.recall < 0.8; }

std::string estimate_hint(const ClassEstimate& e) {
  const bool labelled = e.photos > 0;
  if (labelled && e.photos < 5)
    return "add more photos of " + e.name + ": with " + std::to_string(e.photos) + " it cannot be learned or checked well";
  if (estimate_is_weak(e)) {
    std::string s = "add more photos of " + e.name;
    if (!e.confused_with.empty()) s += "; they are often taken for " + e.confused_with;
    return s;
  }
  // A good score from few photos is still unsure: say how unsure (the user's photos of one thing
  // are often alike, and then they find it easier than new photos will).
  if (labelled && e.low >= 0 && e.low < 0.7) {
    auto pct = [](double v) { return std::to_string(int(100 * v + 0.5)); };
    return "add more photos of " + e.name + " to be sure of it: " + std::to_string(e.tested) + " photos put it anywhere from " + pct(e.low) +
           " to " + pct(e.high) + " %";
  }
  return "";
}

}  // namespace petal
