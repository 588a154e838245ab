// petal train DATA -o MODEL: the classifier head (Dense 512 ReLU → Dense N softmax) trained on the
// cached features of a photo folder, by a recipe (recipes.h); writes a head-only bundle and the
// training history.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "compute_pool.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"
#include "head.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

namespace {

std::string stem_of(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return path.substr(0, path.size() - ext.size());
  return path;
}

}  // namespace

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train the classifier head (Dense 512 ReLU -> Dense N softmax) on a photo folder");
  static std::string data, out, model, recipe = "petal", history_path, labels_path;
  static double split = 0.2;
  static int64_t seed = 123, train_seed = -1;
  static int epochs = 10, batch = 32, hidden = 512, size = 0, threads = 0, average_last = -1;
  static bool cosine = false, no_cosine = false;
  static float lr = 1e-3f, dropout = -1, weight_decay = -1, smoothing = -1, mixup = -1;
  static std::string views;
  static bool flips = false, no_flips = false, no_augment = false, keep_best = false, last_epoch = false, fp16 = false, as_json = false;
  static CLI::Option *o_epochs, *o_batch, *o_lr, *o_hidden, *o_views;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("-o,--output", out, "head-only model bundle to write (.safetensors)")->required();
  cmd->add_option("--recipe", recipe, "petal (default: what measured best) or tutorial (the Keras tutorial as written)")->capture_default_str();
  cmd->add_option("--model", model, "backbone bundle (default: the imported ResNet-50)");
  o_epochs = cmd->add_option("--epochs", epochs, "epochs")->capture_default_str()->check(CLI::Range(1, 10000));
  o_batch = cmd->add_option("--batch-size", batch, "examples per step")->capture_default_str()->check(CLI::Range(1, 65536));
  o_lr = cmd->add_option("--learning-rate", lr, "Adam learning rate")->capture_default_str()->check(CLI::Range(1e-7, 1.0));
  o_hidden = cmd->add_option("--hidden", hidden, "units of the hidden Dense layer")->capture_default_str()->check(CLI::Range(1, 8192));
  cmd->add_option("--validation-split", split, "fraction held out for validation (Keras split)")->capture_default_str();
  cmd->add_option("--seed", seed, "shuffle seed for the split (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--train-seed", train_seed, "seed of the weight init, batch order and dropout (default: --seed)");
  cmd->add_option("--image-size", size, "input size (default: the recipe's)")->check(CLI::Range(32, 1024));
  cmd->add_option("--dropout", dropout, "dropout rate on the hidden layer (default: the recipe's)")->check(CLI::Range(0.0, 0.95));
  cmd->add_option("--weight-decay", weight_decay, "decoupled weight decay (AdamW) (default: the recipe's)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--label-smoothing", smoothing, "label smoothing (default: the recipe's)")->check(CLI::Range(0.0, 0.5));
  cmd->add_option("--mixup", mixup, "mixup strength: each example blended with its batch neighbour, weight from [1 - m/2, 1] "
                                    "(0: off; default: the recipe's)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--flips", flips, "mirrored photos as extra training examples");
  cmd->add_flag("--no-flips", no_flips, "no mirrored photos");
  o_views = cmd->add_option("--views", views, "crop views of the training photos as extra examples, e.g. crop85,crop85-flip, or none (default: the recipe's)");
  cmd->add_flag("--no-augment", no_augment, "train on the photos only: no mirror images, no crops");
  cmd->add_flag("--keep-best", keep_best, "keep the epoch with the best validation accuracy");
  cmd->add_flag("--last-epoch", last_epoch, "keep the last epoch's weights, no averaging");
  cmd->add_option("--average-last", average_last, "end with the mean weights of the last N epochs (SWA; default: the recipe's)")
      ->check(CLI::Range(0, 10000));
  cmd->add_flag("--cosine", cosine, "learning rate decays to 0 along a cosine over the run");
  cmd->add_flag("--no-cosine", no_cosine, "constant learning rate (Keras' default)");
  cmd->add_flag("--fp16", fp16, "store the head's weights as fp16 (half the size)");
  cmd->add_option("--history", history_path, "history JSON to write (default: MODEL without .safetensors + .history.json)");
  cmd->add_option("--labels", labels_path, "also write the class names as a JSON list here");
  cmd->add_option("--threads", threads, "threads (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document (epoch lines go to stderr)");
  cmd->callback([] {
    const auto t_start = std::chrono::steady_clock::now();
    Recipe r = recipe_by_name(recipe);
    if (o_epochs->count()) r.train.epochs = epochs;
    if (o_batch->count()) r.train.batch_size = batch;
    if (o_lr->count()) r.train.learning_rate = lr;
    if (o_hidden->count()) r.hidden = hidden;
    if (size) r.prep.size = size;
    if (dropout >= 0) r.train.dropout = dropout;
    if (weight_decay >= 0) r.train.weight_decay = weight_decay;
    if (smoothing >= 0) r.train.label_smoothing = smoothing;
    if (mixup >= 0) r.train.mixup = mixup;
    if (flips) r.flips = true;
    if (no_flips) r.flips = false;
    if (o_views->count()) r.extra_views = parse_views(views);
    if (no_augment) {
      r.flips = false;
      r.extra_views.clear();
    }
    if (average_last >= 0) r.train.average_last = average_last;
    if (keep_best) {
      r.train.keep_best = true;
      r.train.average_last = 0;
    }
    if (last_epoch) {
      r.train.keep_best = false;
      r.train.average_last = 0;
    }
    if (cosine) r.train.cosine_decay = true;
    if (no_cosine) r.train.cosine_decay = false;
    if (r.train.average_last > r.train.epochs) r.train.average_last = r.train.epochs;
    const uint32_t split_seed = checked_seed(seed);
    r.train.seed = train_seed >= 0 ? uint64_t(train_seed) : split_seed;

    Dataset d = open_dataset(data, split, split_seed);
    if (d.class_names.size() < 2) throw Error("a classifier needs at least 2 classes; '" + d.root + "' has only " + d.class_names[0]);
    Bundle b = load_backbone(model);
    FeatureSource src(b, r.prep, size_t(threads));
    FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
    SplitFeatures sf = split_features(d, r, src, cache);
    const FeatureTable &ft = sf.train, &fv = sf.val;
    const size_t computed = ft.computed + fv.computed, from_cache = ft.from_cache + fv.from_cache;
    if (computed)
      std::fprintf(stderr, "computed %zu features in %.1f s (%zu from the cache)\n", computed, ft.seconds + fv.seconds, from_cache);
    std::vector<Skipped> skipped = ft.skipped;
    skipped.insert(skipped.end(), fv.skipped.begin(), fv.skipped.end());

    // training examples: the photos, then each augmented view of them; validation: the photos
    std::vector<float> xtr = ft.features, xval = fv.features;
    std::vector<int32_t> ytr = ft.labels, yval = fv.labels;
    std::vector<size_t> train_per_class(d.class_names.size(), 0);
    for (int32_t y : ft.labels) train_per_class[size_t(y)]++;
    const size_t n_train_photos = ytr.size();
    std::vector<const std::vector<float>*> more;
    if (r.flips) more.push_back(&ft.flipped);
    for (auto& e : ft.extra) more.push_back(&e);
    for (auto* m : more) {
      xtr.insert(xtr.end(), m->begin(), m->end());
      ytr.insert(ytr.end(), ft.labels.begin(), ft.labels.end());
    }
    if (ytr.empty()) throw Error("no training photo could be read");
    for (size_t c = 0; c < train_per_class.size(); ++c)
      if (!train_per_class[c])
        std::fprintf(stderr, "petal: warning: class '%s' has no training photo (all of its photos are in the validation subset or unreadable)\n",
                     d.class_names[c].c_str());
    if (r.train.keep_best && yval.empty()) {
      std::fprintf(stderr, "petal: warning: no validation photos, so the last epoch is kept\n");
      r.train.keep_best = false;
    }
    FeatureSet trs{xtr.data(), ytr.data(), ytr.size(), ft.dim}, vals{xval.data(), yval.data(), yval.size(), ft.dim};

    Head head(int(ft.dim), r.hidden, int(d.class_names.size()), r.train.seed);
    ComputePool pool{size_t(threads)};
    FILE* lines = as_json ? stderr : stdout;
    std::fprintf(lines, "recipe %s: %s %d px%s%s, %zu training examples, %zu validation photos\n", r.name.c_str(), r.prep.mode.c_str(),
                 r.prep.size, r.flips ? " + mirrored copies" : "", r.extra_views.empty() ? "" : (" + views " + views_string(r.extra_views)).c_str(),
                 ytr.size(), yval.size());
    const auto t_train = std::chrono::steady_clock::now();
    auto hist = head.train(trs, yval.empty() ? nullptr : &vals, r.train, [&](const EpochStats& s) {
      std::fprintf(lines, "Epoch %d/%d - loss: %.4f - accuracy: %.4f", s.epoch, r.train.epochs, s.loss, s.accuracy);
      if (s.has_val) std::fprintf(lines, " - val_loss: %.4f - val_accuracy: %.4f", s.val_loss, s.val_accuracy);
      std::fprintf(lines, " (%.2f s)\n", s.seconds);
      std::fflush(lines);
      return true;
    }, {}, pool.get());
    const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
    int best = int(hist.size());
    if (r.train.keep_best) {
      double bv = -1;
      for (auto& s : hist)
        if (s.val_accuracy > bv) { bv = s.val_accuracy; best = s.epoch; }
    }
    // What the written head scores (the last epoch, the best one, or the averaged weights).
    double final_val = -1, final_val_loss = -1;
    if (!yval.empty()) {
      Evaluation fe = head.evaluate(vals, pool.get());
      final_val = fe.accuracy;
      final_val_loss = fe.loss;
    }
    std::string kept = "epoch " + std::to_string(best);
    if (r.train.average_last > 0)
      kept = "mean of epochs " + std::to_string(int(hist.size()) - r.train.average_last + 1) + "-" + std::to_string(hist.size());
    else if (r.train.keep_best)
      kept += " (best validation accuracy)";

    json options = {{"epochs", r.train.epochs}, {"batch_size", r.train.batch_size}, {"learning_rate", r.train.learning_rate},
                    {"hidden", r.hidden}, {"dropout", r.train.dropout}, {"weight_decay", r.train.weight_decay},
                    {"label_smoothing", r.train.label_smoothing}, {"mixup", r.train.mixup}, {"keep_best", r.train.keep_best},
                    {"average_last", r.train.average_last}, {"cosine_decay", r.train.cosine_decay}, {"flips", r.flips},
                    {"views", views_string(r.extra_views)},
                    {"preprocessing", r.prep.mode}, {"image_size", r.prep.size}, {"train_seed", r.train.seed}};
    json dataset = {{"path", abs_path(d.root)}, {"class_names", d.class_names}, {"validation_split", split}, {"seed", split_seed},
                    {"training_photos", n_train_photos}, {"validation_photos", yval.size()}, {"training_examples", ytr.size()},
                    {"skipped", skipped_json(skipped)}, {"not_images", skipped_json(d.not_images)}};
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
    json training = {{"recipe", r.name}, {"data", abs_path(d.root)}, {"validation_split", split}, {"seed", split_seed},
                     {"kept", kept}, {"options", options}};
    if (final_val >= 0) training["val_accuracy"] = final_val;

    ensure_parent(out);
    Bundle hb = head_bundle(b, src.model_id(), head, d.class_names, r.prep, r.name, training.dump());
    save_bundle_file(hb, out, fp16 ? DType::F16 : DType::F32);
    const std::string hp = history_path.empty() ? stem_of(out) + ".history.json" : history_path;
    json doc = {{"format", "petal-history"}, {"model", out}, {"recipe", r.name}, {"options", options}, {"dataset", dataset},
                {"history", h}, {"kept", kept}, {"train_seconds", train_seconds}};
    if (final_val >= 0) {
      doc["val_accuracy"] = final_val;
      doc["val_loss"] = final_val_loss;
    }
    ensure_parent(hp);
    write_file(hp, doc.dump(1) + "\n");
    if (!labels_path.empty()) {
      ensure_parent(labels_path);
      write_file(labels_path, json(d.class_names).dump(1) + "\n");
    }
    const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    if (as_json) {
      json j = {{"model", out}, {"history", hp}, {"recipe", r.name}, {"kept", kept}, {"train_seconds", train_seconds},
                {"seconds", total_seconds}, {"training_examples", ytr.size()}, {"validation_photos", yval.size()},
                {"computed", computed}, {"from_cache", from_cache}, {"skipped", skipped_json(skipped)}};
      if (final_val >= 0) j["val_accuracy"] = final_val;
      std::printf("%s\n", j.dump(1).c_str());
    } else {
      std::printf("wrote %s (%s", out.c_str(), kept.c_str());
      if (final_val >= 0) std::printf(", val_accuracy %.4f", final_val);
      std::printf(") and %s; head training %.2f s, %.1f s in all\n", hp.c_str(), train_seconds, total_seconds);
      if (r.prep.mode != "caffe")
        std::printf("note: this head expects the tutorial's raw %d px inputs: petal eval reads it; petal predict and the page need --recipe petal\n",
                    r.prep.size);
    }
  });
}

}  // namespace petal::cli
