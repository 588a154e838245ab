// petal train DATA -o MODEL: the classifier head (Dense 512 ReLU → Dense N softmax) trained on the
// cached features of a photo folder, by a recipe (recipes.h); writes a head-only bundle and the
// training history. The steps: the recipe with the command line's overrides, the examples from the
// feature cache, the head trained, then the bundle, history and report written.
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compute_pool.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"
#include "head.h"
#include "petal_limits.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

namespace {

// The command line. An override left unset (a negative value, or an option not given) keeps the
// recipe's value.
struct TrainArgs {
  std::string data, out, model, recipe = "petal", history_path, labels_path;
  double split = 0.2;
  int64_t seed = 123, train_seed = -1;
  int epochs = 10, batch = 32, hidden = 512, size = 0, threads = 0, average_last = -1;
  bool cosine = false, no_cosine = false;
  float lr = 1e-3f, dropout = -1, weight_decay = -1, smoothing = -1, mixup = -1;
  std::string views;
  bool flips = false, no_flips = false, no_augment = false, keep_best = false, last_epoch = false, fp16 = false, as_json = false;
  CLI::Option *o_epochs = nullptr, *o_batch = nullptr, *o_lr = nullptr, *o_hidden = nullptr, *o_views = nullptr;
};

void add_train_options(CLI::App* cmd, TrainArgs& a) {
  cmd->add_option("data", a.data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("-o,--output", a.out, "head-only model bundle to write (.safetensors)")->required();
  cmd->add_option("--recipe", a.recipe, "petal (default: what measured best) or tutorial (the Keras tutorial as written)")->capture_default_str();
  cmd->add_option("--model", a.model, "backbone bundle (default: the imported ResNet-50)");
  a.o_epochs = cmd->add_option("--epochs", a.epochs, "epochs")->capture_default_str()->check(CLI::Range(1, 10000));
  a.o_batch = cmd->add_option("--batch-size", a.batch, "examples per step")->capture_default_str()->check(CLI::Range(1, 65536));
  a.o_lr = cmd->add_option("--learning-rate", a.lr, "Adam learning rate")->capture_default_str()->check(CLI::Range(1e-7, 1.0));
  a.o_hidden = cmd->add_option("--hidden", a.hidden, "units of the hidden Dense layer")->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--validation-split", a.split, "fraction held out for validation (Keras split)")->capture_default_str();
  cmd->add_option("--seed", a.seed, "shuffle seed for the split (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--train-seed", a.train_seed, "seed of the weight init, batch order and dropout (default: --seed)");
  cmd->add_option("--image-size", a.size, "input size (default: the recipe's)")->check(CLI::Range(petal::limits::kMinInputSide, petal::limits::kMaxInputSide));
  cmd->add_option("--dropout", a.dropout, "dropout rate on the hidden layer (default: the recipe's)")->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--weight-decay", a.weight_decay, "decoupled weight decay (AdamW) (default: the recipe's)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--label-smoothing", a.smoothing, "label smoothing (default: the recipe's)")->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--mixup", a.mixup, "mixup strength: each example blended with its batch neighbour, weight from [1 - m/2, 1] "
                                    "(0: off; default: the recipe's)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--flips", a.flips, "mirrored photos as extra training examples");
  cmd->add_flag("--no-flips", a.no_flips, "no mirrored photos");
  a.o_views = cmd->add_option("--views", a.views, "crop views of the training photos as extra examples, e.g. crop85,crop85-flip, or none (default: the recipe's)");
  cmd->add_flag("--no-augment", a.no_augment, "train on the photos only: no mirror images, no crops");
  cmd->add_flag("--keep-best", a.keep_best, "keep the epoch with the best validation accuracy");
  cmd->add_flag("--last-epoch", a.last_epoch, "keep the last epoch's weights, no averaging");
  cmd->add_option("--average-last", a.average_last, "end with the mean weights of the last N epochs (SWA; default: the recipe's)")
      ->check(CLI::Range(0, 10000));
  cmd->add_flag("--cosine", a.cosine, "learning rate decays to 0 along a cosine over the run");
  cmd->add_flag("--no-cosine", a.no_cosine, "constant learning rate (Keras' default)");
  cmd->add_flag("--fp16", a.fp16, "store the head's weights as fp16 (half the size)");
  cmd->add_option("--history", a.history_path, "history JSON to write (default: MODEL without .safetensors + .history.json)");
  cmd->add_option("--labels", a.labels_path, "also write the class names as a JSON list here");
  cmd->add_option("--threads", a.threads, "threads (default: all cores)");
  cmd->add_flag("--json", a.as_json, "print one JSON document (epoch lines go to stderr)");
}

// The recipe named by --recipe with the command line's overrides; the training seed is --train-seed,
// else the split's --seed.
Recipe recipe_of(const TrainArgs& a) {
  Recipe r = recipe_by_name(a.recipe);
  if (a.o_epochs->count()) r.train.epochs = a.epochs;
  if (a.o_batch->count()) r.train.batch_size = a.batch;
  if (a.o_lr->count()) r.train.learning_rate = a.lr;
  if (a.o_hidden->count()) r.hidden = a.hidden;
  if (a.size) r.prep.size = a.size;
  if (a.dropout >= 0) r.train.dropout = a.dropout;
  if (a.weight_decay >= 0) r.train.weight_decay = a.weight_decay;
  if (a.smoothing >= 0) r.train.label_smoothing = a.smoothing;
  if (a.mixup >= 0) r.train.mixup = a.mixup;
  if (a.flips) r.flips = true;
  if (a.no_flips) r.flips = false;
  if (a.o_views->count()) r.extra_views = parse_views(a.views);
  if (a.no_augment) {
    r.flips = false;
    r.extra_views.clear();
  }
  if (a.average_last >= 0) r.train.average_last = a.average_last;
  if (a.keep_best) {
    r.train.keep_best = true;
    r.train.average_last = 0;
  }
  if (a.last_epoch) {
    r.train.keep_best = false;
    r.train.average_last = 0;
  }
  if (a.cosine) r.train.cosine_decay = true;
  if (a.no_cosine) r.train.cosine_decay = false;
  if (r.train.average_last > r.train.epochs) r.train.average_last = r.train.epochs;
  r.train.seed = a.train_seed >= 0 ? uint64_t(a.train_seed) : checked_seed(a.seed);
  return r;
}

// What the head trains and is validated on: the training photos, then each augmented view of them;
// the validation photos as they are.
struct Examples {
  size_t dim = 0;
  std::vector<float> xtr, xval;
  std::vector<int32_t> ytr, yval;
  size_t train_photos = 0, computed = 0, from_cache = 0;
  std::vector<Skipped> skipped;
};

Examples gather_examples(const Dataset& d, const Recipe& r, const SplitFeatures& sf) {
  const FeatureTable &ft = sf.train, &fv = sf.val;
  Examples ex;
  ex.dim = ft.dim;
  ex.computed = ft.computed + fv.computed;
  ex.from_cache = ft.from_cache + fv.from_cache;
  if (ex.computed)
    std::fprintf(stderr, "computed %zu features in %.1f s (%zu from the cache)\n", ex.computed, ft.seconds + fv.seconds, ex.from_cache);
  ex.skipped = ft.skipped;
  ex.skipped.insert(ex.skipped.end(), fv.skipped.begin(), fv.skipped.end());
  ex.xtr = ft.features;
  ex.xval = fv.features;
  ex.ytr = ft.labels;
  ex.yval = fv.labels;
  std::vector<size_t> train_per_class(d.class_names.size(), 0);
  for (int32_t y : ft.labels) train_per_class[size_t(y)]++;
  ex.train_photos = ex.ytr.size();
  std::vector<const std::vector<float>*> more;
  if (r.flips) more.push_back(&ft.flipped);
  for (auto& e : ft.extra) more.push_back(&e);
  for (auto* m : more) {
    ex.xtr.insert(ex.xtr.end(), m->begin(), m->end());
    ex.ytr.insert(ex.ytr.end(), ft.labels.begin(), ft.labels.end());
  }
  if (ex.ytr.empty()) throw Error("no training photo could be read");
  for (size_t c = 0; c < train_per_class.size(); ++c)
    if (!train_per_class[c])
      std::fprintf(stderr, "petal: warning: class '%s' has no training photo (all of its photos are in the validation subset or unreadable)\n",
                   d.class_names[c].c_str());
  return ex;
}

// The trained head, its history per epoch, which weights were kept, and what they score on the
// validation photos (-1 without any).
struct TrainedHead {
  Head head;
  std::vector<EpochStats> hist;
  double seconds = 0, val_accuracy = -1, val_loss = -1;
  std::string kept;
};

// Trains the head, printing the recipe's line and one line per epoch to `lines`.
TrainedHead train_head(const Examples& ex, const Recipe& r, size_t classes, int threads, FILE* lines) {
  FeatureSet trs{ex.xtr.data(), ex.ytr.data(), ex.ytr.size(), ex.dim}, vals{ex.xval.data(), ex.yval.data(), ex.yval.size(), ex.dim};
  TrainedHead t;
  t.head = Head(int(ex.dim), r.hidden, int(classes), r.train.seed);
  ComputePool pool{size_t(threads)};
  std::fprintf(lines, "recipe %s: %s %d px%s%s, %zu training examples, %zu validation photos\n", r.name.c_str(), r.prep.mode.c_str(),
               r.prep.size, r.flips ? " + mirrored copies" : "", r.extra_views.empty() ? "" : (" + views " + views_string(r.extra_views)).c_str(),
               ex.ytr.size(), ex.yval.size());
  const auto t_train = std::chrono::steady_clock::now();
  t.hist = t.head.train(trs, ex.yval.empty() ? nullptr : &vals, r.train, [&](const EpochStats& s) {
    std::fprintf(lines, "Epoch %d/%d - loss: %.4f - accuracy: %.4f", s.epoch, r.train.epochs, s.loss, s.accuracy);
    if (s.has_val) std::fprintf(lines, " - val_loss: %.4f - val_accuracy: %.4f", s.val_loss, s.val_accuracy);
    std::fprintf(lines, " (%.2f s)\n", s.seconds);
    std::fflush(lines);
    return true;
  }, {}, pool.get());
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
  int best = int(t.hist.size());
  if (r.train.keep_best) {
    double bv = -1;
    for (auto& s : t.hist)
      if (s.val_accuracy > bv) { bv = s.val_accuracy; best = s.epoch; }
  }
  // What the written head scores (the last epoch, the best one, or the averaged weights).
  if (!ex.yval.empty()) {
    Evaluation fe = t.head.evaluate(vals, pool.get());
    t.val_accuracy = fe.accuracy;
    t.val_loss = fe.loss;
  }
  t.kept = "epoch " + std::to_string(best);
  if (r.train.average_last > 0)
    t.kept = "mean of epochs " + std::to_string(int(t.hist.size()) - r.train.average_last + 1) + "-" + std::to_string(t.hist.size());
  else if (r.train.keep_best)
    t.kept += " (best validation accuracy)";
  return t;
}

json options_json(const Recipe& r) {
  return {{"epochs", r.train.epochs}, {"batch_size", r.train.batch_size}, {"learning_rate", r.train.learning_rate},
          {"hidden", r.hidden}, {"dropout", r.train.dropout}, {"weight_decay", r.train.weight_decay},
          {"label_smoothing", r.train.label_smoothing}, {"mixup", r.train.mixup}, {"keep_best", r.train.keep_best},
          {"average_last", r.train.average_last}, {"cosine_decay", r.train.cosine_decay}, {"flips", r.flips},
          {"views", views_string(r.extra_views)},
          {"preprocessing", r.prep.mode}, {"image_size", r.prep.size}, {"train_seed", r.train.seed}};
}

json history_json(const std::vector<EpochStats>& hist) {
  json h = {{"loss", json::array()}, {"accuracy", json::array()}, {"val_loss", json::array()}, {"val_accuracy", json::array()}, {"seconds", json::array()}};
  for (auto& s : hist) {
    h["loss"].push_back(s.loss);
    h["accuracy"].push_back(s.accuracy);
    if (s.has_val) {
      h["val_loss"].push_back(s.val_loss);
      h["val_accuracy"].push_back(s.val_accuracy);
    }
    h["seconds"].push_back(s.seconds);
  }
  return h;
}

std::string stem_of(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return path.substr(0, path.size() - ext.size());
  return path;
}

// Writes the history JSON (--history, else beside the model) and returns its path.
std::string write_history(const TrainArgs& a, const Recipe& r, const Dataset& d, const Examples& ex, const TrainedHead& t) {
  json dataset = {{"path", abs_path(d.root)}, {"class_names", d.class_names}, {"validation_split", a.split}, {"seed", checked_seed(a.seed)},
                  {"training_photos", ex.train_photos}, {"validation_photos", ex.yval.size()}, {"training_examples", ex.ytr.size()},
                  {"skipped", skipped_json(ex.skipped)}, {"not_images", skipped_json(d.not_images)}};
  const std::string hp = a.history_path.empty() ? stem_of(a.out) + ".history.json" : a.history_path;
  json doc = {{"format", "petal-history"}, {"model", a.out}, {"recipe", r.name}, {"options", options_json(r)}, {"dataset", dataset},
              {"history", history_json(t.hist)}, {"kept", t.kept}, {"train_seconds", t.seconds}};
  if (t.val_accuracy >= 0) {
    doc["val_accuracy"] = t.val_accuracy;
    doc["val_loss"] = t.val_loss;
  }
  ensure_parent(hp);
  write_file(hp, doc.dump(1) + "\n");
  return hp;
}

// The report on stdout: one JSON document with --json, else a line (and a note for raw inputs).
void print_report(const TrainArgs& a, const Recipe& r, const Examples& ex, const TrainedHead& t, const std::string& history,
                  double total_seconds) {
  if (a.as_json) {
    json j = {{"model", a.out}, {"history", history}, {"recipe", r.name}, {"kept", t.kept}, {"train_seconds", t.seconds},
              {"seconds", total_seconds}, {"training_examples", ex.ytr.size()}, {"validation_photos", ex.yval.size()},
              {"computed", ex.computed}, {"from_cache", ex.from_cache}, {"skipped", skipped_json(ex.skipped)}};
    if (t.val_accuracy >= 0) j["val_accuracy"] = t.val_accuracy;
    std::printf("%s\n", j.dump(1).c_str());
    return;
  }
  std::printf("wrote %s (%s", a.out.c_str(), t.kept.c_str());
  if (t.val_accuracy >= 0) std::printf(", val_accuracy %.4f", t.val_accuracy);
  std::printf(") and %s; head training %.2f s, %.1f s in all\n", history.c_str(), t.seconds, total_seconds);
  if (r.prep.mode != "caffe")
    std::printf("note: this head expects the tutorial's raw %d px inputs: petal eval reads it; petal predict and the page need --recipe petal\n",
                r.prep.size);
}

void run_train(const TrainArgs& a) {
  const auto t_start = std::chrono::steady_clock::now();
  Recipe r = recipe_of(a);
  const uint32_t split_seed = checked_seed(a.seed);
  Dataset d = open_dataset(a.data, a.split, split_seed);
  if (d.class_names.size() < 2) throw Error("a classifier needs at least 2 classes; '" + d.root + "' has only " + d.class_names[0]);
  Bundle b = load_backbone(a.model);
  FeatureSource src(b, r.prep, size_t(a.threads));
  FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
  const Examples ex = gather_examples(d, r, split_features(d, r, src, cache));
  if (r.train.keep_best && ex.yval.empty()) {
    std::fprintf(stderr, "petal: warning: no validation photos, so the last epoch is kept\n");
    r.train.keep_best = false;
  }
  const TrainedHead t = train_head(ex, r, d.class_names.size(), a.threads, a.as_json ? stderr : stdout);

  json training = {{"recipe", r.name}, {"data", abs_path(d.root)}, {"validation_split", a.split}, {"seed", split_seed},
                   {"kept", t.kept}, {"options", options_json(r)}};
  if (t.val_accuracy >= 0) training["val_accuracy"] = t.val_accuracy;
  ensure_parent(a.out);
  Bundle hb = head_bundle(b, src.model_id(), t.head, d.class_names, r.prep, r.name, training.dump());
  save_bundle_file(hb, a.out, a.fp16 ? DType::F16 : DType::F32);
  const std::string history = write_history(a, r, d, ex, t);
  if (!a.labels_path.empty()) {
    ensure_parent(a.labels_path);
    write_file(a.labels_path, json(d.class_names).dump(1) + "\n");
  }
  print_report(a, r, ex, t, history, std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
}

}  // namespace

void register_train(CLI::App& app) {
  add_command(app, "train", "Train the classifier head (Dense 512 ReLU -> Dense N softmax) on a photo folder", add_train_options, run_train);
}

}  // namespace petal::cli
