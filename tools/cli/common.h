// Shared pieces of the `petal` CLI: file reading, the default model paths, a progress bar on
// stderr, and the registration hook each command file provides.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "bundle.h"
#include "dataset.h"
#include "engine.h"

namespace petal::cli {

// Each command file (cmd_<command>.cpp) defines one of these; main.cpp calls them all, in this order
// (the order of `petal --help`).
void register_import(CLI::App& app);
void register_features(CLI::App& app);
void register_predict(CLI::App& app);
void register_grid(CLI::App& app);
void register_extract(CLI::App& app);
void register_summary(CLI::App& app);
void register_train(CLI::App& app);
void register_plot(CLI::App& app);
void register_eval(CLI::App& app);
void register_download(CLI::App& app);
void register_export(CLI::App& app);
void register_bench(CLI::App& app);
void register_onnx(CLI::App& app);
void register_quantize(CLI::App& app);
void register_preprocess(CLI::App& app);
void register_teach(CLI::App& app);
void register_fewshot(CLI::App& app);

// A command whose options fill an `Args` struct (`options`) and that then runs `run` on it (petal
// train, bench, fewshot); the struct lives as long as the app.
template <class Args>
void add_command(CLI::App& app, const char* name, const char* about, void (*options)(CLI::App*, Args&), void (*run)(const Args&)) {
  auto* cmd = app.add_subcommand(name, about);
  auto args = std::make_shared<Args>();
  options(cmd, *args);
  cmd->callback([args, run] { run(*args); });
}

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);  // atomic (tmp + rename)
// Create the folder that will hold `path` (throws petal::Error saying why it cannot).
void ensure_parent(const std::string& path);
// `p` made absolute and normal (as the JSON reports record data set folders); `p` when that fails.
std::string abs_path(const std::string& p);
// Skipped files as the --json reports list them: [{"file": …, "reason": …}].
nlohmann::json skipped_json(const std::vector<Skipped>& s);

// $PETAL_CACHE (default /var/cache/petal, or ~/.cache/petal when that is not writable).
std::string cache_dir();
// The ImageNet backbone bundle that `petal import` writes by default.
std::string default_backbone_path();
// The model `petal predict` uses without --model: $PETAL_MODEL, else the shipped flowers head
// (model/flowers-head.safetensors of the checkout this petal was built in, looked for from the
// executable's folder upwards); empty when there is none (then the caller says so and uses the
// ImageNet backbone).
std::string default_model_path();
// The checkout this petal was built in (the folder holding model/flowers-head.safetensors), or "".
std::string checkout_dir();
// Load a model: a full bundle, or a head-only bundle combined with the default backbone.
Bundle load_model(const std::string& path);

// A one-line progress bar on stderr: "label [#####.....] 123/456 12.3 img/s ETA 0:42".
class Progress {
 public:
  Progress(std::string label, size_t total, const char* unit = "img");
  void update(size_t done);
  void finish();

 private:
  std::string label_;
  const char* unit_;
  size_t total_, last_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace petal::cli
