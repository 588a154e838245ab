// petal bench: how fast the native backbone is. Prints numbers; asserts nothing.
//   1. ms/image of the backbone alone on preprocessed photos at the model's input size, for each
//      thread count × batch size, interleaved run by run so that load from other processes
//      falls on every configuration alike: median, quartiles, min and max.
//   2. images/s of feature extraction on real photos (read + decode + resize + backbone), for
//      each thread count.
//   --profile adds XNNPACK's per-operator times (one batch-1 run per thread count, summed by
//   operator type and listed for the slowest operators).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>

#include "common.h"
#include "error.h"
#include "image.h"

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
  return "/work/shared/data/flower_photos";
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure the native backbone: ms/image by threads and batch, and photos/s");
  static std::string model, threads_s = "1,2", batch_s = "1,8", photos;
  static int runs = 10, warmup = 2, sample = 64;
  static bool all = false, as_json = false, profile = false, skip_photos = false;
  cmd->add_option("-m,--model", model, "model bundle (default: the imported ResNet-50 backbone)");
  cmd->add_option("--threads", threads_s, "thread counts to compare, comma-separated")->capture_default_str();
  cmd->add_option("--batch", batch_s, "batch sizes to compare, comma-separated")->capture_default_str();
  cmd->add_option("--runs", runs, "timed runs per configuration (after warm-up)")->capture_default_str()->check(CLI::Range(3, 10000));
  cmd->add_option("--warmup", warmup, "untimed runs per configuration first")->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--photos", photos, "folder of photos (class sub-folders) for the inputs and the photos/s test "
                                      "(default $PETAL_PHOTOS or /work/shared/data/flower_photos)");
  cmd->add_option("--sample", sample, "photos in the photos/s test")->capture_default_str()->check(CLI::Range(1, 1000000));
  cmd->add_flag("--all", all, "use every photo in the photos/s test");
  cmd->add_flag("--no-photos", skip_photos, "skip the photos/s test");
  cmd->add_flag("--profile", profile, "print XNNPACK's per-operator times of a batch-1 run");
  cmd->add_flag("--json", as_json, "print one JSON line per measurement instead of tables");
  cmd->callback([] {
    const auto thread_list = parse_list(threads_s, "threads");
    const auto batch_list = parse_list(batch_s, "batch");
    const std::string photo_dir = photos.empty() ? default_photos() : photos;
    const std::string model_path = model.empty() ? default_backbone_path() : model;
    const Bundle bundle = load_model(model_path);
    const Graph graph = Graph::from_json(bundle.meta("graph"));
    const size_t in_size = size_t(graph.input_h) * graph.input_w * graph.input_c;
    const int max_batch = *std::max_element(batch_list.begin(), batch_list.end());

    // Inputs: the first `max_batch` photos of the sample, preprocessed as the engine does.
    const auto photo_files = list_photos(photo_dir, size_t(std::max(sample, max_batch)), all);
    std::vector<float> inputs(size_t(max_batch) * in_size);
    for (int i = 0; i < max_batch; ++i) {
      auto bytes = read_file(photo_files[size_t(i) % photo_files.size()]);
      auto x = image_to_input(bytes.data(), bytes.size(), graph.input_h, graph.input_w);
      std::copy(x.begin(), x.end(), inputs.begin() + size_t(i) * in_size);
    }

    std::vector<std::unique_ptr<Backbone>> nets;
    for (int t : thread_list) {
      BackboneOptions o;
      o.profile = profile;
      nets.push_back(std::make_unique<Backbone>(graph, bundle, size_t(t), o));
    }
    std::vector<float> feats(size_t(max_batch) * graph.feature_dim), logits(size_t(max_batch) * std::max(1, graph.num_logits));
    float* logits_p = graph.num_logits ? logits.data() : nullptr;

    const json machine = {{"cores", std::thread::hardware_concurrency()}};
    if (!as_json) {
      std::printf("petal bench: %s, %dx%d input, %zu hardware threads, %d runs per configuration after %d warm-up\n",
                  fs::path(model_path).filename().c_str(), graph.input_h, graph.input_w,
                  size_t(std::thread::hardware_concurrency()), runs, warmup);
    }

    // 1. Latency, configurations interleaved.
    struct Config { size_t net; int threads, batch; std::vector<double> ms; };
    std::vector<Config> configs;
    for (size_t n = 0; n < nets.size(); ++n)
      for (int b : batch_list) configs.push_back({n, thread_list[n], b, {}});
    for (auto& c : configs)
      for (int w = 0; w < warmup; ++w) nets[c.net]->run(inputs.data(), size_t(c.batch), feats.data(), logits_p);
    for (int r = 0; r < runs; ++r) {
      for (auto& c : configs) {
        const double t0 = now_ms();
        nets[c.net]->run(inputs.data(), size_t(c.batch), feats.data(), logits_p);
        c.ms.push_back((now_ms() - t0) / c.batch);
      }
    }
    if (!as_json) {
      std::printf("\nbackbone only (preprocessed photos in memory), ms per image:\n");
      std::printf("%8s %6s %9s %9s %9s %9s %9s %8s\n", "threads", "batch", "median", "q1", "q3", "min", "max", "img/s");
    }
    for (auto& c : configs) {
      const Stats s = stats_of(c.ms);
      if (as_json) {
        std::printf("%s\n", json({{"bench", "native-backbone"}, {"engine", "petal-native"}, {"threads", c.threads},
                                  {"batch", c.batch}, {"size", graph.input_h}, {"runs", runs},
                                  {"ms_per_image", {{"median", s.median}, {"q1", s.q1}, {"q3", s.q3}, {"min", s.min}, {"max", s.max}}},
                                  {"images_per_s", 1000.0 / s.median}, {"machine", machine}})
                                .dump()
                                .c_str());
      } else {
        std::printf("%8d %6d %9.2f %9.2f %9.2f %9.2f %9.2f %8.2f\n", c.threads, c.batch, s.median, s.q1, s.q3, s.min, s.max,
                    1000.0 / s.median);
      }
    }

    // 2. Per-operator profile of one batch-1 run per thread count.
    if (profile) {
      for (size_t n = 0; n < nets.size(); ++n) {
        // Median of a few runs per operator, so one preempted run does not skew it.
        std::vector<std::vector<OpTime>> prof;
        for (int r = 0; r < 5; ++r) {
          nets[n]->run(inputs.data(), 1, feats.data(), logits_p);
          prof.push_back(nets[n]->profile());
        }
        std::vector<OpTime> med = prof[0];
        for (size_t i = 0; i < med.size(); ++i) {
          std::vector<double> v;
          for (auto& p : prof) v.push_back(p[i].ms);
          med[i].ms = stats_of(v).median;
        }
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
        if (as_json) {
          json ops = json::array();
          for (auto& o : med) ops.push_back({{"op", o.name}, {"ms", o.ms}});
          std::printf("%s\n", json({{"bench", "native-profile"}, {"threads", thread_list[n]}, {"batch", 1},
                                    {"total_ms", total}, {"operators", ops}})
                                  .dump()
                                  .c_str());
          continue;
        }
        std::printf("\nper-operator profile, %d thread(s), batch 1 (median of 5 runs): %.2f ms in %zu operators\n",
                    thread_list[n], total, med.size());
        for (auto& [name, v] : by_type)
          std::printf("  %-52s %4d ops %8.2f ms %5.1f%%\n", name.c_str(), v.second, v.first, 100 * v.first / total);
        std::printf("  slowest operators (execution index):\n");
        for (size_t i = 0; i < std::min<size_t>(12, order.size()); ++i)
          std::printf("    #%-4zu %-48s %7.2f ms\n", order[i], med[order[i]].name.c_str(), med[order[i]].ms);
      }
    }

    // 3. Feature extraction on real photos: read + decode + resize + backbone, one at a time.
    if (!skip_photos) {
      if (!as_json)
        std::printf("\nfeature extraction on %zu photos of %s (read+decode+resize+backbone, batch 1):\n", photo_files.size(),
                    photo_dir.c_str());
      for (size_t n = 0; n < nets.size(); ++n) {
        double decode_ms = 0, net_ms = 0;
        const double t0 = now_ms();
        size_t failed = 0;
        for (auto& f : photo_files) {
          const double a = now_ms();
          std::vector<float> x;
          try {
            auto bytes = read_file(f);
            x = image_to_input(bytes.data(), bytes.size(), graph.input_h, graph.input_w);
          } catch (const Error& e) {
            std::fprintf(stderr, "petal: %s: %s (skipped)\n", f.c_str(), e.what());
            ++failed;
            continue;
          }
          const double b = now_ms();
          nets[n]->run(x.data(), 1, feats.data(), logits_p);
          net_ms += now_ms() - b;
          decode_ms += b - a;
        }
        const double total_s = (now_ms() - t0) / 1000.0;
        const size_t done = photo_files.size() - failed;
        if (as_json) {
          std::printf("%s\n", json({{"bench", "native-photos"}, {"engine", "petal-native"}, {"threads", thread_list[n]},
                                    {"photos", done}, {"seconds", total_s}, {"images_per_s", double(done) / total_s},
                                    {"decode_resize_ms_per_image", decode_ms / double(done)},
                                    {"backbone_ms_per_image", net_ms / double(done)}, {"machine", machine}})
                                  .dump()
                                  .c_str());
        } else {
          std::printf("  %d thread(s): %.2f images/s (%zu photos in %.1f s; decode+resize %.1f ms, backbone %.1f ms per image)\n",
                      thread_list[n], double(done) / total_s, done, total_s, decode_ms / double(done), net_ms / double(done));
        }
      }
    }
  });
}

}  // namespace petal::cli
