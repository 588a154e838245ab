// petal bench: how fast the native backbone is. Prints numbers; asserts nothing.
//   1. ms/image of the backbone alone on preprocessed photos at the model's input size, for each
//      thread count × batch size, interleaved run by run so that load from other processes
//      falls on every configuration alike: median, quartiles, min and max.
//   2. images/s of feature extraction on real photos (read + decode + resize + backbone), for
//      each thread count.
//   --profile adds XNNPACK's per-operator times (runs at the first --batch size, per thread count,
//   summed by operator type and listed for the slowest operators; ms per image).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>

#include "calibrate.h"
#include "common.h"
#include "dataset.h"
#include "error.h"
#include "feature_cache.h"
#include "head.h"
#include "image.h"
#include "recipes.h"

namespace petal::cli {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<int> parse_list(const std::string& text, const char* what) {
  std::vector<int> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int x = std::stoi(item, &used);
      if (used != item.size() || x < 1 || x > 256) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      throw Error(std::string("--") + what + " takes a comma-separated list of numbers from 1 to 256, e.g. 1,2; got '" +
                  text + "'");
    }
  }
  if (v.empty()) throw Error(std::string("--") + what + " is empty");
  return v;
}

struct Stats {
  double median, q1, q3, min, max;
};

Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    const double i = p * double(v.size() - 1);
    const size_t lo = size_t(std::floor(i)), hi = std::min(v.size() - 1, lo + 1);
    return v[lo] + (v[hi] - v[lo]) * (i - double(lo));
  };
  return {q(0.5), q(0.25), q(0.75), v.front(), v.back()};
}

// The photos under `dir` (class folders of JPEG/PNG), sorted; a sample of `n` evenly spread
// over the sorted list unless `all`.
std::vector<std::string> list_photos(const std::string& dir, size_t n, bool all) {
  if (!fs::is_directory(dir)) throw Error("photo folder '" + dir + "' does not exist; pass --photos DIR");
  std::vector<std::string> files;
  for (auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error("no .jpg/.png photos under '" + dir + "'");
  if (all || n >= files.size()) return files;
  std::vector<std::string> pick;
  for (size_t i = 0; i < n; ++i) pick.push_back(files[i * files.size() / n]);
  return pick;
}

std::string default_photos() {
  if (const char* p = std::getenv("PETAL_PHOTOS"); p && *p) return p;
  if (const char* d = std::getenv("PETAL_DATA"); d && *d) return std::string(d) + "/flower_photos";
  const std::string dir = checkout_dir();  // ../shared beside the checkout
  if (dir.empty()) throw Error("no photos folder: give --photos DIR (or set PETAL_PHOTOS or PETAL_DATA)");
  return dir + "/../shared/data/flower_photos";
}

// Features of data set files for one backbone variant: from the feature cache when there, else
// computed (batches of 8) and added to it. int8 features are cached under their own model id.
struct VariantFeatures {
  std::vector<float> orig, flip;  // by data set index (flip only for `with_flip` files)
};
VariantFeatures variant_features(const Dataset& d, const Bundle& bundle, const Graph& graph, const BackboneOptions& o,
                                 const std::string& label, const std::vector<bool>& with_flip, size_t threads) {
  const Preprocessing prep = preprocessing_of(bundle);
  // int8 features are cached under the id of the bundle `petal quantize` would write (marker, and
  // calibrated ranges for static int8), so that `petal extract/train --model <that bundle>` finds
  // them (int8-all has no such bundle: own id).
  std::string id = backbone_id(bundle, o.int8, o.int8 && !o.int8_dynamic);
  if (o.int8_first_conv) {
    const std::string tagged = id + ":int8-qd8-all";
    id = hex(sha256(tagged.data(), tagged.size()));
  }
  const size_t dim = size_t(graph.feature_dim), in_size = size_t(prep.size) * prep.size * 3;
  FeatureCache cache(feature_cache_dir(), id, preprocessing_key(prep), dim);
  VariantFeatures out;
  out.orig.assign(d.files.size() * dim, 0.f);
  out.flip.assign(d.files.size() * dim, 0.f);
  std::unique_ptr<Backbone> net;
  struct Job { size_t file; bool flip; Digest digest; };
  std::vector<Job> pending;
  std::vector<float> batch_in;
  Progress bar("features (" + label + ")", d.files.size());
  auto flush = [&] {
    if (pending.empty()) return;
    if (!net) net = std::make_unique<Backbone>(graph, bundle, threads, o);
    std::vector<float> f(pending.size() * dim);
    net->run(batch_in.data(), pending.size(), f.data(), nullptr);
    std::vector<FeatureCache::Entry> entries;
    for (size_t i = 0; i < pending.size(); ++i) {
      float* dst = (pending[i].flip ? out.flip : out.orig).data() + pending[i].file * dim;
      std::copy(f.begin() + i * dim, f.begin() + (i + 1) * dim, dst);
      entries.push_back({pending[i].digest, pending[i].flip, f.data() + i * dim});
    }
    cache.append(entries);
    pending.clear();
    batch_in.clear();
  };
  for (size_t i = 0; i < d.files.size(); ++i) {
    bar.update(i);
    auto lf = load_data_file(d.files[i].path);
    if (!lf.error.empty()) throw Error("'" + d.files[i].path + "': " + lf.error);
    const Digest dg = sha256(lf.bytes.data(), lf.bytes.size());
    const float* c0 = cache.find(dg, false);
    const float* c1 = with_flip[i] ? cache.find(dg, true) : nullptr;
    if (c0) std::copy(c0, c0 + dim, out.orig.begin() + i * dim);
    if (c1) std::copy(c1, c1 + dim, out.flip.begin() + i * dim);
    if (c0 && (c1 || !with_flip[i])) continue;
    std::vector<float> x(in_size), xf(in_size);
    photo_to_input(lf.bytes.data(), lf.bytes.size(), prep, x.data(), xf.data());
    if (!c0) {
      pending.push_back({i, false, dg});
      batch_in.insert(batch_in.end(), x.begin(), x.end());
    }
    if (with_flip[i] && !c1) {
      pending.push_back({i, true, dg});
      batch_in.insert(batch_in.end(), xf.begin(), xf.end());
    }
    if (pending.size() >= 8) flush();
  }
  flush();
  bar.finish();
  return out;
}

// The backbone variants int8_accuracy compares: fp32 and the three int8 ones.
struct Variant {
  std::string name;
  BackboneOptions o;
  VariantFeatures f;
};
std::vector<Variant> int8_variants() {
  std::vector<Variant> vs(4);
  vs[0].name = "fp32";
  vs[1].name = "int8";  // QD8, what `petal quantize` and the page's int8 engine run
  vs[1].o.int8 = vs[1].o.int8_dynamic = true;
  vs[2].name = "int8-static";  // QS8, calibrated
  vs[2].o.int8 = true;
  vs[3].name = "int8-all";  // QD8, the 7x7 stem convolution too
  vs[3].o.int8 = vs[3].o.int8_dynamic = vs[3].o.int8_first_conv = true;
  return vs;
}

// The features of the photos `idx` (and then of their mirror images when `flips`) with their labels.
void gather(const Dataset& d, const VariantFeatures& f, const std::vector<size_t>& idx, bool flips, size_t dim, std::vector<float>& x,
            std::vector<int32_t>& y) {
  x.clear();
  y.clear();
  for (size_t i : idx) {
    x.insert(x.end(), f.orig.begin() + i * dim, f.orig.begin() + (i + 1) * dim);
    y.push_back(d.files[i].label);
  }
  if (flips)
    for (size_t i : idx) {
      x.insert(x.end(), f.flip.begin() + i * dim, f.flip.begin() + (i + 1) * dim);
      y.push_back(d.files[i].label);
    }
}

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

// The held-out accuracy table: heads trained on each variant's features, scored on the others'.
void print_accuracy(const std::vector<Variant>& vs, const std::vector<std::vector<std::vector<double>>>& acc, const std::string& dir,
                    size_t train_photos, size_t val_photos, int seeds, bool as_json) {
  const int nv = int(vs.size());
  if (!as_json)
    std::printf("\nheld-out accuracy (recipe petal, Keras split of %s: %zu training photos + flips, %zu validation), "
                "%d training seeds:\n  %-22s %-22s %9s %9s %9s\n",
                dir.c_str(), train_photos, val_photos, seeds, "head trained on", "evaluated on", "mean %", "min %", "max %");
  for (int t = 0; t < nv; ++t)
    for (int e = 0; e < nv; ++e) {
      if (t != e && t != 0) continue;  // heads trained on int8 features are only scored on their own kind
      const auto& v = acc[t][e];
      const double m = mean_of(v), lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
      if (as_json)
        std::printf("%s\n", json({{"bench", "int8-accuracy"}, {"trained_on", vs[t].name}, {"evaluated_on", vs[e].name},
                                  {"seeds", seeds}, {"validation_photos", val_photos}, {"accuracy", v},
                                  {"mean", m}})
                                .dump()
                                .c_str());
      else
        std::printf("  %-22s %-22s %9.2f %9.2f %9.2f\n", (vs[t].name + " features").c_str(), (vs[e].name + " features").c_str(),
                    100 * m, 100 * lo, 100 * hi);
    }
}

// How far each variant's features are from fp32's (vx[0]) on the validation photos: ||f - f32|| / ||f32||,
// and each variant's end-to-end accuracy minus fp32's.
void print_feature_error(const std::vector<Variant>& vs, const std::vector<std::vector<float>>& vx, size_t rows, size_t dim,
                         const std::vector<std::vector<std::vector<double>>>& acc, bool as_json) {
  const int nv = int(vs.size());
  std::vector<double> rel_err(nv, 0.0);
  for (int v = 1; v < nv; ++v) {
    for (size_t r = 0; r < rows; ++r) {
      double num = 0, den = 0;
      for (size_t k = 0; k < dim; ++k) {
        const double a = vx[0][r * dim + k], b = vx[v][r * dim + k];
        num += (b - a) * (b - a);
        den += a * a;
      }
      rel_err[v] += std::sqrt(num / std::max(den, 1e-30));
    }
    rel_err[v] /= double(std::max<size_t>(1, rows));
    if (as_json)
      std::printf("%s\n", json({{"bench", "int8-feature-error"}, {"variant", vs[v].name}, {"relative_l2", rel_err[v]}}).dump().c_str());
  }
  if (!as_json)
    for (int v = 1; v < nv; ++v)
      std::printf("  %s features differ from fp32 by %.2f %% (relative L2, mean over validation photos)\n", vs[v].name.c_str(),
                  100 * rel_err[v]);
  if (!as_json)
    for (int v = 1; v < nv; ++v)
      std::printf("  %s end to end minus fp32 end to end: %+.2f points (mean over seeds)\n", vs[v].name.c_str(),
                  100 * (mean_of(acc[v][v]) - mean_of(acc[0][0])));
}

// Held-out accuracy of heads trained (recipe "petal") on fp32 features and on int8 features of the
// Keras training split, evaluated on the validation split, over several training seeds.
void int8_accuracy(const std::string& dir, const Bundle& bundle, const Graph& graph, size_t threads, int seeds,
                   bool as_json) {
  const Recipe recipe = recipe_by_name("petal");
  DatasetOptions dopt;  // Keras split: 20 % validation, seed 123
  const Dataset d = index_directory(dir, dopt);
  const auto train_idx = subset_indices(d, Subset::Training), val_idx = subset_indices(d, Subset::Validation);
  std::vector<bool> with_flip(d.files.size(), false);
  if (recipe.flips)
    for (size_t i : train_idx) with_flip[i] = true;
  const size_t dim = size_t(graph.feature_dim);
  std::vector<Variant> vs = int8_variants();
  const int nv = int(vs.size());
  for (auto& v : vs) v.f = variant_features(d, bundle, graph, v.o, v.name, with_flip, threads);
  // acc[trained on][evaluated on][seed]
  std::vector<std::vector<std::vector<double>>> acc(nv, std::vector<std::vector<double>>(nv));
  std::vector<std::vector<float>> vx(nv);
  std::vector<int32_t> vy;
  for (int e = 0; e < nv; ++e) gather(d, vs[e].f, val_idx, false, dim, vx[e], vy);
  for (int t = 0; t < nv; ++t) {
    std::vector<float> tx;
    std::vector<int32_t> ty;
    gather(d, vs[t].f, train_idx, recipe.flips, dim, tx, ty);
    for (int s = 0; s < seeds; ++s) {
      TrainOptions opt = recipe.train;
      opt.seed = uint64_t(recipe.train.seed + s);
      Head h(int(dim), recipe.hidden, int(d.class_names.size()), opt.seed);
      FeatureSet tr{tx.data(), ty.data(), ty.size(), dim};
      h.train(tr, nullptr, opt);
      for (int e = 0; e < nv; ++e) {
        FeatureSet va{vx[e].data(), vy.data(), vy.size(), dim};
        acc[t][e].push_back(h.evaluate(va).accuracy);
      }
    }
  }
  print_accuracy(vs, acc, dir, train_idx.size(), val_idx.size(), seeds, as_json);
  print_feature_error(vs, vx, vy.size(), dim, acc, as_json);
}

// ---------------------------------------------------------------- the command

// The command line.
struct BenchArgs {
  std::string model, threads_s = "1,2", batch_s = "1,8", photos;
  int runs = 10, warmup = 2, sample = 64;
  bool all = false, as_json = false, profile = false, skip_photos = false;
  std::vector<std::string> variants;
  std::string accuracy_dir, inputs_file;
  int seeds = 5;
};

// "" when every '+'-joined part of a --variant is known, else why not.
std::string check_variant(const std::string& v) {
  std::stringstream ss(v);
  std::string part;
  while (std::getline(ss, part, '+'))
    if (part != "fp32" && part != "int8" && part != "int8-all" && part != "int8-static" && part != "transient" &&
        part != "cache" && part != "unfused" && part != "direct" && part != "xnnorder" && part != "nomap")
      return "unknown variant part '" + part +
             "' (fp32, int8, int8-all, int8-static, transient, cache, unfused, direct, xnnorder, nomap)";
  return "";
}

void add_bench_options(CLI::App* cmd, BenchArgs& a) {
  cmd->add_option("-m,--model", a.model, "model bundle (default: the imported ResNet-50 backbone)");
  cmd->add_option("--threads", a.threads_s, "thread counts to compare, comma-separated")->capture_default_str();
  cmd->add_option("--batch", a.batch_s, "batch sizes to compare, comma-separated")->capture_default_str();
  cmd->add_option("--runs", a.runs, "timed runs per configuration (after warm-up)")->capture_default_str()->check(CLI::Range(3, 10000));
  cmd->add_option("--warmup", a.warmup, "untimed runs per configuration first")->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--photos", a.photos, "folder of photos (class sub-folders) for the inputs and the photos/s test "
                                      "(default $PETAL_PHOTOS, $PETAL_DATA/flower_photos or ../shared/data/flower_photos beside the checkout)");
  cmd->add_option("--sample", a.sample, "photos in the photos/s test")->capture_default_str()->check(CLI::Range(1, 1000000));
  cmd->add_flag("--all", a.all, "use every photo in the photos/s test");
  cmd->add_flag("--no-photos", a.skip_photos, "skip the photos/s test");
  cmd->add_flag("--profile", a.profile, "print XNNPACK's per-operator times (ms per image) at the first --batch size");
  cmd->add_flag("--json", a.as_json, "print one JSON line per measurement instead of tables");
  cmd->add_option("--int8-accuracy", a.accuracy_dir,
                  "instead of timing: held-out accuracy of int8 vs fp32 features on a photo folder (class sub-folders; "
                  "recipe petal, Keras 80/20 split)");
  cmd->add_option("--inputs", a.inputs_file,
                  "instead of the latency table: time the backbone over every image of this input tensor file (as "
                  "petal preprocess writes it), in batches of the first --batch on the first --threads, after one "
                  "untimed batch; prints images/s")
      ->check(CLI::ExistingFile);
  cmd->add_option("--seeds", a.seeds, "training seeds for --int8-accuracy")->capture_default_str()->check(CLI::Range(1, 100));
  cmd->add_option("--variant", a.variants,
                  "backbone variants to compare, interleaved (repeatable): fp32 (default), int8 (QD8 convolutions), "
                  "int8-all (QD8, stem conv too), int8-static (QS8: the model's calibrated ranges, or ranges calibrated "
                  "on 64 photos of --photos), transient (XNN_FLAG_TRANSIENT_INDIRECTION_BUFFER), cache (weights "
                  "cache), unfused (residual adds as operators of their own), nomap (no feature map output for heatmaps), direct (3x3 convolutions without "
                  "Winograd), xnnorder (XNNPACK's loop order, not weights-outer); combine with '+', e.g. int8+transient")
      ->check(check_variant);
}

// The backbone the variants are compared on: a `petal quantize` mark is ignored (each variant says
// how it runs); static int8 needs calibrated ranges, measured here when the model has none.
Bundle load_bench_model(const BenchArgs& a, const std::string& model_path, const std::string& photo_dir) {
  Bundle bundle = load_model(model_path);
  bundle.tensors.erase(kInt8Marker);
  const bool wants_static = !a.accuracy_dir.empty() || std::any_of(a.variants.begin(), a.variants.end(), [](const std::string& v) {
    return v.find("int8-static") != std::string::npos;
  });
  if (wants_static && !bundle.has(kInt8RangesTensor)) {
    calibrate_on_photos(bundle, a.accuracy_dir.empty() ? photo_dir : a.accuracy_dir, 64);
    bundle.tensors.erase(kInt8Marker);
  }
  return bundle;
}

// --inputs: the backbone over every image of an input tensor file, in batches of `batch`, after one
// untimed batch.
void time_inputs_file(const std::string& inputs_file, const Bundle& bundle, const Graph& graph, int threads, size_t batch,
                      bool as_json) {
  const size_t in_size = size_t(graph.input_h) * graph.input_w * graph.input_c;
  const auto bytes = read_file(inputs_file);
  if (bytes.empty() || bytes.size() % (in_size * sizeof(float)) != 0)
    throw Error("'" + inputs_file + "' is not a whole number of " + std::to_string(graph.input_h) + "x" +
                std::to_string(graph.input_w) + "x3 float32 images; write it with petal preprocess --size " +
                std::to_string(graph.input_h));
  const size_t n = bytes.size() / (in_size * sizeof(float));
  std::vector<float> x(n * in_size), f(batch * size_t(graph.feature_dim));
  std::memcpy(x.data(), bytes.data(), bytes.size());
  Backbone net(graph, bundle, size_t(threads));
  net.run(x.data(), std::min(batch, n), f.data());  // warm-up: first touches, caches
  double ms = 0;
  for (size_t i = 0; i < n; i += batch) {
    const size_t b = std::min(batch, n - i);
    const double t0 = now_ms();
    net.run(x.data() + i * in_size, b, f.data());
    ms += now_ms() - t0;
  }
  if (as_json)
    std::printf("%s\n", json({{"bench", "native-inputs"}, {"images", n}, {"threads", threads}, {"batch", batch},
                              {"seconds", ms / 1000}, {"images_per_s", n / (ms / 1000)}})
                            .dump()
                            .c_str());
  else
    std::printf("%zu images, %d thread(s), batches of %zu: %.2f s in the backbone, %.2f images/s\n", n,
                threads, batch, ms / 1000, n / (ms / 1000));
}

// What a --variant asks of the backbone.
BackboneOptions variant_options(const std::string& v, bool profile) {
  BackboneOptions o;
  o.profile = profile;
  std::stringstream ss(v);
  std::string part;
  while (std::getline(ss, part, '+')) {
    if (part == "int8") o.int8 = o.int8_dynamic = true;
    if (part == "int8-all") o.int8 = o.int8_dynamic = o.int8_first_conv = true;
    if (part == "int8-static") o.int8 = true;
    if (part == "transient") o.transient_indirection = true;
    if (part == "cache") o.weights_cache = true;
    if (part == "unfused") o.fuse_residual = false;
    if (part == "nomap") o.feature_map = false;
    if (part == "direct") o.winograd = false;
    if (part == "xnnorder") o.loop_order = BackboneOptions::LoopOrder::Xnnpack;
  }
  return o;
}

// One network per variant × thread count, and how to make another like it.
struct Networks {
  std::vector<std::unique_ptr<Backbone>> nets;
  std::vector<int> threads;
  std::vector<std::string> variant;
  std::vector<std::function<std::unique_ptr<Backbone>()>> maker;  // another network like nets[n]
};

Networks make_networks(const std::vector<std::string>& variant_list, const std::vector<int>& thread_list, const Graph& graph,
                       const Bundle& bundle, bool profile) {
  Networks n;
  for (auto& v : variant_list) {
    for (int t : thread_list) {
      const BackboneOptions o = variant_options(v, profile);
      n.maker.push_back([&graph, &bundle, t, o] { return std::make_unique<Backbone>(graph, bundle, size_t(t), o); });
      n.nets.push_back(n.maker.back()());
      n.threads.push_back(t);
      n.variant.push_back(v);
    }
  }
  return n;
}

// What the timing steps share: the networks, the preprocessed inputs and the output buffers.
struct Bench {
  const BenchArgs& a;
  const Graph& graph;
  std::vector<int> batch_list;
  int max_batch;
  Networks n;
  std::vector<float> inputs, feats, logits;
  float* logits_p;
  json machine;
};

// 1. Latency, configurations interleaved. Each batch size gets a network of its own: one network
// alternating between batch sizes would be reshaped (buffers reallocated, indirection rebuilt) on
// every run, which costs milliseconds that a fixed batch never pays.
void latency(Bench& B) {
  struct Config { size_t net; int threads, batch; std::vector<double> ms; Backbone* runner; };
  std::vector<Config> configs;
  std::vector<std::unique_ptr<Backbone>> extra_nets;
  for (size_t n = 0; n < B.n.nets.size(); ++n)
    for (int b : B.batch_list) {
      Backbone* runner = B.n.nets[n].get();
      if (b != B.batch_list.front()) {
        extra_nets.push_back(B.n.maker[n]());
        runner = extra_nets.back().get();
      }
      configs.push_back({n, B.n.threads[n], b, {}, runner});
    }
  for (auto& c : configs)
    for (int w = 0; w < B.a.warmup; ++w) c.runner->run(B.inputs.data(), size_t(c.batch), B.feats.data(), B.logits_p);
  for (int r = 0; r < B.a.runs; ++r) {
    for (auto& c : configs) {
      const double t0 = now_ms();
      c.runner->run(B.inputs.data(), size_t(c.batch), B.feats.data(), B.logits_p);
      c.ms.push_back((now_ms() - t0) / c.batch);
    }
  }
  if (!B.a.as_json) {
    std::printf("\nbackbone only (preprocessed photos in memory), ms per image:\n");
    std::printf("%-16s %8s %6s %9s %9s %9s %9s %9s %8s\n", "variant", "threads", "batch", "median", "q1", "q3", "min", "max", "img/s");
  }
  for (auto& c : configs) {
    const Stats s = stats_of(c.ms);
    if (B.a.as_json) {
      std::printf("%s\n", json({{"bench", "native-backbone"}, {"engine", "petal-native"}, {"variant", B.n.variant[c.net]}, {"threads", c.threads},
                                {"batch", c.batch}, {"size", B.graph.input_h}, {"runs", B.a.runs},
                                {"ms_per_image", {{"median", s.median}, {"q1", s.q1}, {"q3", s.q3}, {"min", s.min}, {"max", s.max}}},
                                {"images_per_s", 1000.0 / s.median}, {"machine", B.machine}})
                              .dump()
                              .c_str());
    } else {
      std::printf("%-16s %8d %6d %9.2f %9.2f %9.2f %9.2f %9.2f %8.2f\n", B.n.variant[c.net].c_str(), c.threads, c.batch, s.median,
                  s.q1, s.q3, s.min, s.max, 1000.0 / s.median);
    }
  }
}

// Agreement of each variant with the first one on the largest batch: max |diff| / max |f|, and the
// lowest cosine similarity of an image's features.
void agreement(Bench& B) {
  if (B.n.nets.size() <= 1) return;
  const int fd = B.graph.feature_dim;
  std::vector<float> ref(size_t(B.max_batch) * fd), got(ref.size());
  B.n.nets[0]->run(B.inputs.data(), size_t(B.max_batch), ref.data(), B.logits_p);
  if (!B.a.as_json) std::printf("\nfeatures compared with %s on %d photos:\n", B.n.variant[0].c_str(), B.max_batch);
  for (size_t n = 1; n < B.n.nets.size(); ++n) {
    B.n.nets[n]->run(B.inputs.data(), size_t(B.max_batch), got.data(), B.logits_p);
    double md = 0, mx = 0, min_cos = 1;
    for (int i = 0; i < B.max_batch; ++i) {
      double dot = 0, na = 0, nb = 0;
      for (int j = 0; j < fd; ++j) {
        const size_t k = size_t(i) * fd + j;
        md = std::max(md, double(std::fabs(ref[k] - got[k])));
        mx = std::max(mx, double(std::fabs(ref[k])));
        dot += double(ref[k]) * got[k], na += double(ref[k]) * ref[k], nb += double(got[k]) * got[k];
      }
      min_cos = std::min(min_cos, dot / std::sqrt(na * nb));
    }
    if (B.a.as_json)
      std::printf("%s\n", json({{"bench", "native-agreement"}, {"variant", B.n.variant[n]}, {"threads", B.n.threads[n]},
                                {"reference", B.n.variant[0]}, {"max_rel_diff", md / mx}, {"min_cosine", min_cos}})
                              .dump()
                              .c_str());
    else
      std::printf("  %-16s %d thread(s): max |diff| %.3g of max %.3g (%.2g), lowest cosine %.6f\n", B.n.variant[n].c_str(),
                  B.n.threads[n], md, mx, md / mx, min_cos);
  }
}

// Per-operator times of network n at batch pb, ms per image: the median of 5 runs per operator, so
// one preempted run does not skew it.
std::vector<OpTime> median_profile(Bench& B, size_t n, int pb) {
  std::vector<std::vector<OpTime>> prof;
  for (int r = 0; r < 5; ++r) {
    B.n.nets[n]->run(B.inputs.data(), size_t(pb), B.feats.data(), B.logits_p);
    prof.push_back(B.n.nets[n]->profile());
    for (auto& o : prof.back()) o.ms /= pb;
  }
  std::vector<OpTime> med = prof[0];
  for (size_t i = 0; i < med.size(); ++i) {
    std::vector<double> v;
    for (auto& p : prof) v.push_back(p[i].ms);
    med[i].ms = stats_of(v).median;
  }
  return med;
}

// 2. Per-operator profile at the first batch size, per thread count, in ms per image.
void operator_profile(Bench& B) {
  const int pb = B.batch_list.front();
  for (size_t n = 0; n < B.n.nets.size(); ++n) {
    const std::vector<OpTime> med = median_profile(B, n, pb);
    std::map<std::string, std::pair<double, int>> by_type;
    double total = 0;
    for (auto& o : med) {
      by_type[o.name].first += o.ms;
      by_type[o.name].second++;
      total += o.ms;
    }
    std::vector<size_t> order(med.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return med[a].ms > med[b].ms; });
    if (B.a.as_json) {
      json ops = json::array();
      for (auto& o : med) ops.push_back({{"op", o.name}, {"ms", o.ms}});
      std::printf("%s\n", json({{"bench", "native-profile"}, {"variant", B.n.variant[n]}, {"threads", B.n.threads[n]}, {"batch", pb},
                                {"total_ms", total}, {"operators", ops}})
                              .dump()
                              .c_str());
      continue;
    }
    std::printf("\nper-operator profile, %s, %d thread(s), batch %d (median of 5 runs): %.2f ms per image in %zu operators\n",
                B.n.variant[n].c_str(), B.n.threads[n], pb, total, med.size());
    for (auto& [name, v] : by_type)
      std::printf("  %-52s %4d ops %8.2f ms %5.1f%%\n", name.c_str(), v.second, v.first, 100 * v.first / total);
    std::printf("  slowest operators (execution index):\n");
    for (size_t i = 0; i < std::min<size_t>(12, order.size()); ++i)
      std::printf("    #%-4zu %-48s %7.2f ms\n", order[i], med[order[i]].name.c_str(), med[order[i]].ms);
  }
}

// 3. Feature extraction on real photos: read + decode + resize + backbone, one at a time.
void photos_per_second(Bench& B, const std::vector<std::string>& photo_files, const std::string& photo_dir) {
  if (!B.a.as_json)
    std::printf("\nfeature extraction on %zu photos of %s (read+decode+resize+backbone, batch 1):\n", photo_files.size(),
                photo_dir.c_str());
  for (size_t n = 0; n < B.n.nets.size(); ++n) {
    double decode_ms = 0, net_ms = 0;
    const double t0 = now_ms();
    size_t failed = 0;
    for (auto& f : photo_files) {
      const double a = now_ms();
      std::vector<float> x;
      try {
        auto bytes = read_file(f);
        x = image_to_input(bytes.data(), bytes.size(), B.graph.input_h, B.graph.input_w);
      } catch (const Error& e) {
        std::fprintf(stderr, "petal: %s: %s (skipped)\n", f.c_str(), e.what());
        ++failed;
        continue;
      }
      const double b = now_ms();
      B.n.nets[n]->run(x.data(), 1, B.feats.data(), B.logits_p);
      net_ms += now_ms() - b;
      decode_ms += b - a;
    }
    const double total_s = (now_ms() - t0) / 1000.0;
    const size_t done = photo_files.size() - failed;
    if (B.a.as_json) {
      std::printf("%s\n", json({{"bench", "native-photos"}, {"engine", "petal-native"}, {"variant", B.n.variant[n]}, {"threads", B.n.threads[n]},
                                {"photos", done}, {"seconds", total_s}, {"images_per_s", double(done) / total_s},
                                {"decode_resize_ms_per_image", decode_ms / double(done)},
                                {"backbone_ms_per_image", net_ms / double(done)}, {"machine", B.machine}})
                              .dump()
                              .c_str());
    } else {
      std::printf("  %s, %d thread(s): %.2f images/s (%zu photos in %.1f s; decode+resize %.1f ms, backbone %.1f ms per image)\n",
                  B.n.variant[n].c_str(), B.n.threads[n], double(done) / total_s, done, total_s, decode_ms / double(done), net_ms / double(done));
    }
  }
}

// The first `count` photos of the sample (cycled), preprocessed as the engine does.
std::vector<float> bench_inputs(const std::vector<std::string>& photo_files, int count, const Graph& graph) {
  const size_t in_size = size_t(graph.input_h) * graph.input_w * graph.input_c;
  std::vector<float> inputs(size_t(count) * in_size);
  for (int i = 0; i < count; ++i) {
    auto bytes = read_file(photo_files[size_t(i) % photo_files.size()]);
    auto x = image_to_input(bytes.data(), bytes.size(), graph.input_h, graph.input_w);
    std::copy(x.begin(), x.end(), inputs.begin() + size_t(i) * in_size);
  }
  return inputs;
}

void run_bench(const BenchArgs& a) {
  const auto thread_list = parse_list(a.threads_s, "threads");
  const auto batch_list = parse_list(a.batch_s, "batch");
  const std::string photo_dir = a.photos.empty() ? default_photos() : a.photos;
  const std::string model_path = a.model.empty() ? default_backbone_path() : a.model;
  const Bundle bundle = load_bench_model(a, model_path, photo_dir);
  const Graph graph = Graph::from_json(bundle.meta("graph"));
  const int max_batch = *std::max_element(batch_list.begin(), batch_list.end());
  if (!a.accuracy_dir.empty()) return int8_accuracy(a.accuracy_dir, bundle, graph, size_t(thread_list[0]), a.seeds, a.as_json);
  if (!a.inputs_file.empty())
    return time_inputs_file(a.inputs_file, bundle, graph, thread_list.front(), size_t(batch_list.front()), a.as_json);

  const auto photo_files = list_photos(photo_dir, size_t(std::max(a.sample, max_batch)), a.all);
  Bench B{a, graph, batch_list, max_batch, {}, bench_inputs(photo_files, max_batch, graph), {}, {}, nullptr, {}};
  B.n = make_networks(a.variants.empty() ? std::vector<std::string>{"fp32"} : a.variants, thread_list, graph, bundle, a.profile);
  B.feats.resize(size_t(max_batch) * graph.feature_dim);
  B.logits.resize(size_t(max_batch) * std::max(1, graph.num_logits));
  B.logits_p = graph.num_logits ? B.logits.data() : nullptr;
  B.machine = {{"cores", std::thread::hardware_concurrency()}};
  if (!a.as_json) {
    std::printf("petal bench: %s, %dx%d input, %zu hardware threads, %d runs per configuration after %d warm-up\n",
                fs::path(model_path).filename().c_str(), graph.input_h, graph.input_w,
                size_t(std::thread::hardware_concurrency()), a.runs, a.warmup);
  }
  latency(B);
  agreement(B);
  if (a.profile) operator_profile(B);
  if (!a.skip_photos) photos_per_second(B, photo_files, photo_dir);
}

}  // namespace

void register_bench(CLI::App& app) {
  add_command(app, "bench", "Measure the native backbone: ms/image by threads and batch, and photos/s", add_bench_options, run_bench);
}

}  // namespace petal::cli
