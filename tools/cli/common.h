// Shared pieces of the `petal` CLI: file reading, the default model paths, a progress bar on
// stderr, and the registration hook each command file provides.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bundle.h"
#include "engine.h"

namespace petal::cli {

// Each command file defines one of these; main.cpp calls them all.
void register_import(CLI::App& app);
void register_features(CLI::App& app);
void register_predict(CLI::App& app);
void register_dataset_commands(CLI::App& app);  // grid, extract, train, eval, plot, summary
void register_export(CLI::App& app);
void register_bench(CLI::App& app);
void register_onnx(CLI::App& app);     // onnx, preprocess (cmd_onnx.cpp)
void register_teach(CLI::App& app);    // cmd_teach.cpp
void register_fewshot(CLI::App& app);  // cmd_fewshot.cpp

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);  // atomic (tmp + rename)

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
