// The data set commands, the Keras transfer-learning tutorial as a tool:
//   petal grid DATA -o grid.png         3×3 sample of the training photos with their labels
//   petal extract DATA                  backbone features of every photo into the feature cache
//   petal summary MODEL                 layers, output shapes, parameter counts
//   petal train DATA -o MODEL           Dense(512, ReLU) → Dense(N, softmax) on cached features
//   petal plot HISTORY -o accuracy.png  training vs validation accuracy and loss per epoch
//   petal eval MODEL DATA               accuracy, per-class precision/recall, confusion matrix
#include <algorithm>
#include <array>
#include <map>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"
#include "graph.h"
#include "head.h"
#include "plot.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;

namespace {

std::string abs_path(const std::string& p) {
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

void ensure_parent(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw Error("cannot create the folder '" + parent.string() + "': " + ec.message());
}

std::string stem_of(const std::string& path) {
  const std::string ext = ".safetensors";
  if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
    return path.substr(0, path.size() - ext.size());
  return path;
}

json skipped_json(const std::vector<Skipped>& s) {
  json a = json::array();
  for (auto& x : s) a.push_back({{"file", x.path}, {"reason", x.reason}});
  return a;
}

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

// ---------------------------------------------------------------- grid

void register_grid(CLI::App& app) {
  auto* cmd = app.add_subcommand("grid", "Draw a 3x3 grid of training photos with their class labels (PNG)");
  static std::string data, out, subset = "training";
  static double split = 0.2;
  static int64_t seed = 123;
  static int size = 180;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("-o,--output", out, "PNG file to write")->required();
  cmd->add_option("--subset", subset, "training, validation or all")->capture_default_str();
  cmd->add_option("--validation-split", split, "fraction held out for validation")->capture_default_str();
  cmd->add_option("--seed", seed, "shuffle seed (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--image-size", size, "cell size in pixels (photos are squashed to it, as the model sees them)")
      ->capture_default_str()->check(CLI::Range(32, 512));
  cmd->callback([] {
    Dataset d = open_dataset(data, split, checked_seed(seed));
    const auto idx = subset_indices(d, parse_subset(subset));
    const int gap = 10, label_h = 26, cols = 3;
    Canvas c(cols * (size + gap) + gap, cols * (size + label_h + gap) + gap);
    int shown = 0;
    for (size_t i = 0; i < idx.size() && shown < 9; ++i) {
      const DataFile& f = d.files[idx[i]];
      LoadedFile lf = load_data_file(f.path);
      Image img;
      try {
        if (!lf.error.empty()) throw Error(lf.error);
        img = resize_image(decode_image(lf.bytes.data(), lf.bytes.size()), size, size);
      } catch (const Error& e) {
        std::fprintf(stderr, "petal: warning: skipped %s: %s\n", f.path.c_str(), e.what());
        continue;
      }
      const int x = gap + (shown % cols) * (size + gap), y = gap + (shown / cols) * (size + label_h + gap);
      c.blit(img, x, y);
      const std::string& name = d.class_names[f.label];
      c.text(x + (size - Canvas::text_width(name, 2)) / 2, y + size + 6, name, Color{30, 30, 30}, 2);
      ++shown;
    }
    if (shown == 0) throw Error("no photo of the " + subset + " subset could be read");
    ensure_parent(out);
    c.save_png(out);
    std::printf("%s: %d photos of the %s subset, %dx%d\n", out.c_str(), shown, subset.c_str(), c.width(), c.height());
  });
}

// ---------------------------------------------------------------- extract

void register_extract(CLI::App& app) {
  auto* cmd = app.add_subcommand("extract", "Compute the backbone features of every photo once, into the feature cache");
  static std::string data, model, recipe = "petal", prep_mode, subset = "all";
  static double split = 0.2;
  static int64_t seed = 123;
  static int size = 0, threads = 0;
  static std::string views;
  static bool flips = false, no_flips = false, no_augment = false, as_json = false;
  static CLI::Option* o_views;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("--model", model, "backbone bundle (default: the imported ResNet-50)");
  cmd->add_option("--recipe", recipe, "take preprocessing and augmented views from this recipe (petal, tutorial)")->capture_default_str();
  cmd->add_option("--preprocessing", prep_mode, "caffe or raw (default: the recipe's)");
  cmd->add_option("--image-size", size, "input size (default: the recipe's; 224 or 180)")->check(CLI::Range(32, 1024));
  cmd->add_flag("--flips", flips, "also the training photos mirrored left-right");
  cmd->add_flag("--no-flips", no_flips, "not the mirrored photos");
  o_views = cmd->add_option("--views", views, "crop views of the training photos, e.g. crop85,crop85-flip, or none (default: the recipe's)");
  cmd->add_flag("--no-augment", no_augment, "the photos only: no mirror images, no crops");
  cmd->add_option("--subset", subset, "training, validation or all (augmented views: training photos only)")->capture_default_str();
  cmd->add_option("--validation-split", split, "fraction held out for validation")->capture_default_str();
  cmd->add_option("--seed", seed, "shuffle seed (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--threads", threads, "threads for the backbone (default: all cores)");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    Recipe r = recipe_by_name(recipe);
    if (!prep_mode.empty()) r.prep.mode = prep_mode;
    if (size) r.prep.size = size;
    if (flips) r.flips = true;
    if (no_flips) r.flips = false;
    if (o_views->count()) r.extra_views = parse_views(views);
    if (no_augment) {
      r.flips = false;
      r.extra_views.clear();
    }
    Dataset d = open_dataset(data, split, checked_seed(seed));
    Bundle b = load_backbone(model);
    FeatureSource src(b, r.prep, size_t(threads));
    FeatureCache cache(feature_cache_dir(), src.model_id(), preprocessing_key(r.prep), src.dim());
    const SplitFeatures sf = split_features(d, r, src, cache, parse_subset(subset));
    size_t with = 0, computed = 0, from_cache = 0;
    double seconds = 0;
    std::vector<Skipped> skipped;
    for (const FeatureTable* part : {&sf.train, &sf.val}) {
      const FeatureTable& t = *part;
      with += t.files.size();
      computed += t.computed;
      from_cache += t.from_cache;
      seconds += t.seconds;
      skipped.insert(skipped.end(), t.skipped.begin(), t.skipped.end());
    }
    const double rate = seconds > 0 ? double(computed) / seconds : 0;
    const std::string views_desc = std::string(r.flips ? "flip" : "") + (r.flips && !r.extra_views.empty() ? "," : "") +
                                   (r.extra_views.empty() ? "" : views_string(r.extra_views));
    if (as_json) {
      json j = {{"photos", with + skipped.size()}, {"with_features", with}, {"flips", r.flips},
                {"views", views_string(r.extra_views)}, {"preprocessing", r.prep.key()}, {"computed", computed},
                {"from_cache", from_cache}, {"skipped", skipped_json(skipped)}, {"seconds", seconds},
                {"inputs_per_second", rate}, {"cache", cache.path()}, {"cache_entries", cache.size()}};
      std::printf("%s\n", j.dump(1).c_str());
    } else {
      std::printf("features of %zu photos%s (%s): %zu computed (%.1f inputs/s), %zu from the cache, %zu skipped, %.1f s\n", with,
                  views_desc.empty() ? "" : (" + training views " + views_desc).c_str(), r.prep.key().c_str(), computed, rate,
                  from_cache, skipped.size(), seconds);
      std::printf("cache: %s (%zu entries)\n", cache.path().c_str(), cache.size());
    }
  });
}

// ---------------------------------------------------------------- summary

struct Row {
  std::string name, type, shape;
  size_t params = 0;
};

void register_summary(CLI::App& app) {
  auto* cmd = app.add_subcommand("summary", "Layers of a model with output shapes and parameter counts (like Keras model.summary())");
  static std::string model;
  static bool layers = false, as_json = false;
  cmd->add_option("model", model, "model bundle (full, or head-only with the default backbone)")->required();
  cmd->add_flag("--layers", layers, "list every backbone layer, not just the backbone as one row");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    Bundle b = load_model(model);
    const Graph g = Graph::from_json(b.meta("graph"));
    Preprocessing prep = preprocessing_of(b);
    std::map<std::string, std::array<int, 3>> shapes;  // h, w, c
    shapes["input"] = {prep.size, prep.size, 3};
    std::vector<Row> backbone_rows;
    size_t backbone_params = 0, fc_params = 0, conv_channels = 0;
    auto out_size = [](int in, int k, int s, int a, int bb, bool same) { return same ? (in + s - 1) / s : (in + a + bb - k) / s + 1; };
    for (const Op& op : g.ops) {
      const auto in = shapes.at(op.inputs.at(0));
      std::array<int, 3> o = in;
      Row r;
      r.name = op.name;
      switch (op.kind) {
        case Op::Conv:
          o = {out_size(in[0], op.kh, op.sh, op.pad[0], op.pad[2], op.same), out_size(in[1], op.kw, op.sw, op.pad[3], op.pad[1], op.same), op.cout};
          r.params = size_t(op.cout) * op.kh * op.kw * op.cin + op.cout;
          r.type = "Conv2D " + std::to_string(op.kh) + "x" + std::to_string(op.kw) + (op.sh > 1 ? "/" + std::to_string(op.sh) : "") + "+BN" + (op.relu ? "+ReLU" : "");
          conv_channels += size_t(op.cout);
          break;
        case Op::MaxPool:
          o = {out_size(in[0], op.kh, op.sh, op.pad[0], op.pad[2], op.same), out_size(in[1], op.kw, op.sw, op.pad[3], op.pad[1], op.same), in[2]};
          r.type = "MaxPooling2D";
          break;
        case Op::Add: r.type = op.relu ? "Add+ReLU" : "Add"; break;
        case Op::GlobalAvgPool: o = {1, 1, in[2]}; r.type = "GlobalAveragePooling2D"; break;
        case Op::Dense:
          o = {1, 1, op.cout};
          r.params = size_t(op.cout) * op.cin + op.cout;
          r.type = "Dense";
          break;
      }
      shapes[op.name] = o;
      r.shape = o[0] == 1 && o[1] == 1 && (op.kind == Op::GlobalAvgPool || op.kind == Op::Dense)
                    ? "(None, " + std::to_string(o[2]) + ")"
                    : "(None, " + std::to_string(o[0]) + ", " + std::to_string(o[1]) + ", " + std::to_string(o[2]) + ")";
      if (op.name == g.logits) fc_params = r.params;
      else {
        backbone_params += r.params;
        backbone_rows.push_back(r);
      }
    }
    std::vector<Row> rows;
    if (layers) rows = backbone_rows;
    else rows.push_back({b.metadata.count("architecture") ? b.meta("architecture") : "backbone", "frozen backbone",
                         "(None, " + std::to_string(g.feature_dim) + ")", backbone_params});
    size_t trainable = 0;
    std::vector<std::string> names;
    if (b.has("head.dense1.weight")) {
      Head h = Head::load(b);
      names = parse_class_names(b.meta("class_names"));
      rows.push_back({"dense", "Dense+ReLU (trainable)", "(None, " + std::to_string(h.hidden()) + ")", size_t(h.hidden()) * h.in() + h.hidden()});
      rows.push_back({"dense_1", "Dense+softmax (trainable)", "(None, " + std::to_string(h.classes()) + ")", size_t(h.classes()) * h.hidden() + h.classes()});
      trainable = h.param_count();
    }
    const size_t total = backbone_params + trainable;
    if (as_json) {
      json a = json::array();
      for (auto& r : rows) a.push_back({{"name", r.name}, {"type", r.type}, {"output_shape", r.shape}, {"params", r.params}});
      json j = {{"model", model}, {"input", {prep.size, prep.size, 3}}, {"preprocessing", prep.mode}, {"layers", a},
                {"total_params", total}, {"trainable_params", trainable}, {"non_trainable_params", backbone_params},
                {"imagenet_classifier_params", fc_params}, {"class_names", names}};
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    auto commas = [](size_t v) {
      std::string s = std::to_string(v);
      for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
      return s;
    };
    std::printf("Model: \"%s\"  input (None, %d, %d, 3), %s preprocessing\n", model.c_str(), prep.size, prep.size, prep.mode.c_str());
    const std::string rule(88, '_'), rule2(88, '=');
    std::printf("%s\n%-30s %-26s %-20s %10s\n%s\n", rule.c_str(), "Layer", "Type", "Output Shape", "Param #", rule2.c_str());
    for (auto& r : rows) std::printf("%-30s %-26s %-20s %10s\n", r.name.c_str(), r.type.c_str(), r.shape.c_str(), commas(r.params).c_str());
    std::printf("%s\nTotal params: %s\nTrainable params: %s\nNon-trainable params: %s\n%s\n", rule2.c_str(), commas(total).c_str(),
                commas(trainable).c_str(), commas(backbone_params).c_str(), rule.c_str());
    if (!names.empty()) {
      std::printf("Classes (%zu):", names.size());
      for (auto& n : names) std::printf(" %s", n.c_str());
      std::printf("\n");
    } else {
      std::printf("No classifier head yet (train one with petal train).\n");
    }
    if (fc_params) std::printf("The bundle also holds the ImageNet classifier (fc1000, %s params), which is not part of this model.\n", commas(fc_params).c_str());
    std::printf("BatchNormalization is folded into the convolutions: Keras's model.summary() counts 4 more values per\n"
                "channel (%s here, 2 of them trainable) for the same network.\n", commas(4 * conv_channels).c_str());
  });
}

// ---------------------------------------------------------------- train

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

// ---------------------------------------------------------------- plot

void register_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Draw training vs validation accuracy and loss per epoch from a history JSON (PNG)");
  static std::string history, out, title;
  cmd->add_option("history", history, "history JSON written by petal train")->required();
  cmd->add_option("-o,--output", out, "PNG file to write")->required();
  cmd->add_option("--title", title, "text above the charts");
  cmd->callback([] {
    auto bytes = read_file(history);
    json j;
    try {
      j = json::parse(bytes.begin(), bytes.end());
    } catch (const std::exception& e) {
      throw Error("'" + history + "' is not JSON: " + e.what());
    }
    const json& h = j.contains("history") ? j["history"] : j;  // Petal's file, or a bare Keras history dict
    auto series = [&](const char* k) {
      std::vector<double> v;
      if (h.contains(k) && h[k].is_array())
        for (auto& x : h[k])
          if (x.is_number()) v.push_back(x.get<double>());
      return v;
    };
    const auto acc = series("accuracy"), val_acc = series("val_accuracy"), loss = series("loss"), val_loss = series("val_loss");
    if (acc.empty() && loss.empty()) throw Error("'" + history + "' has no accuracy or loss per epoch (not a petal train history?)");
    const Color blue{31, 119, 180}, orange{255, 127, 14};
    double lo = 1;
    for (auto* v : {&acc, &val_acc})
      for (double x : *v) lo = std::min(lo, x);
    lo = std::max(0.0, std::floor((lo - 0.02) * 20) / 20);
    double hi = 0;
    for (auto* v : {&loss, &val_loss})
      for (double x : *v) hi = std::max(hi, x);
    const int top = title.empty() ? 0 : 30;
    Canvas c(1000, 420 + top);
    if (!title.empty()) c.text((1000 - Canvas::text_width(title, 2)) / 2, 10, title, Color{40, 40, 40}, 2);
    draw_line_chart(c, 0, top, 500, 420, "Training and Validation Accuracy", "epoch",
                    {{"Training Accuracy", acc, blue, false}, {"Validation Accuracy", val_acc, orange, false}}, lo, 1.0);
    draw_line_chart(c, 500, top, 500, 420, "Training and Validation Loss", "epoch",
                    {{"Training Loss", loss, blue, false}, {"Validation Loss", val_loss, orange, false}}, 0, hi > 0 ? hi * 1.1 : 1);
    ensure_parent(out);
    c.save_png(out);
    std::printf("%s: %zu epochs, %dx%d\n", out.c_str(), std::max(acc.size(), loss.size()), c.width(), c.height());
  });
}

// ---------------------------------------------------------------- eval

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
    if (b.metadata.count("training")) {
      try {
        json tr = json::parse(b.meta("training"));
        sp = tr.value("validation_split", sp);
        sd = tr.value("seed", sd);
      } catch (const std::exception&) {
      }
    }
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
    auto p = head.predict(t.features.data(), n, pool.get());
    std::vector<std::vector<int>> conf(C, std::vector<int>(C, 0));
    size_t correct = 0;
    double loss = 0;
    json preds = json::array();
    for (size_t i = 0; i < n; ++i) {
      const float* row = &p[i * C];
      const int pred = int(std::max_element(row, row + C) - row), y = t.labels[i];
      conf[size_t(y)][size_t(pred)]++;
      correct += pred == y;
      loss -= std::log(std::max(double(row[y]), 1e-12));
      if (as_json)
        preds.push_back({{"file", d.files[t.files[i]].path}, {"label", names[size_t(y)]}, {"predicted", names[size_t(pred)]},
                         {"probability", row[pred]}});
    }
    const double acc = double(correct) / double(n);
    loss /= double(n);
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
                {"photos", n}, {"correct", correct}, {"accuracy", acc}, {"loss", loss}, {"classes", classes},
                {"confusion", conf}, {"skipped", skipped_json(t.skipped)}, {"predictions", preds}};
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    std::printf("%s subset of %s (split %g, seed %lld): %zu photos, %zu skipped\n", subset_name(sub), d.root.c_str(), sp,
                (long long)sd, n, t.skipped.size());
    std::printf("accuracy: %.4f (%zu/%zu)  loss: %.4f\n", acc, correct, n, loss);
    size_t w = 5;
    for (auto& s : names) w = std::max(w, s.size());
    std::printf("%-*s  precision  recall      f1  support\n", int(w), "class");
    for (size_t c = 0; c < C; ++c)
      std::printf("%-*s  %9.4f  %6.4f  %6.4f  %7d\n", int(w), names[c].c_str(), m[c][0], m[c][1], m[c][2], int(m[c][3]));
    print_confusion(conf, names);
  });
}

}  // namespace

void register_download(CLI::App& app);  // cmd_download.cpp

void register_dataset_commands(CLI::App& app) {
  register_grid(app);
  register_extract(app);
  register_summary(app);
  register_train(app);
  register_plot(app);
  register_eval(app);
  register_download(app);
}

}  // namespace petal::cli
