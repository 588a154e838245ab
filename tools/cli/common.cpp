#include "common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "error.h"
#include "head_bundle.h"

namespace petal::cli {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error("cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    throw Error("writing '" + path + "' failed (disk full?); nothing was replaced");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot replace '" + path + "': " + std::strerror(errno));
}

void ensure_parent(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw Error("cannot create the folder '" + parent.string() + "': " + ec.message());
}

std::string abs_path(const std::string& p) {
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

nlohmann::json skipped_json(const std::vector<Skipped>& s) {
  nlohmann::json a = nlohmann::json::array();
  for (auto& x : s) a.push_back({{"file", x.path}, {"reason", x.reason}});
  return a;
}

std::string cache_dir() {
  if (const char* c = std::getenv("PETAL_CACHE"); c && *c) return c;
  if (access("/var/cache/petal", W_OK) == 0) return "/var/cache/petal";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/petal";
}

std::string default_backbone_path() {
  if (const char* p = std::getenv("PETAL_BACKBONE"); p && *p) return p;
  return cache_dir() + "/models/resnet50-imagenet.safetensors";
}

std::string checkout_dir() {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  // build/native/tools/petal → the checkout is three folders up; a copy elsewhere finds none.
  fs::path dir = exe.parent_path();
  for (int up = 0; up <= 3 && !dir.empty(); ++up, dir = dir.parent_path()) {
    if (fs::is_regular_file(dir / "model" / "flowers-head.safetensors", ec)) return dir.lexically_normal().string();
    if (dir == dir.parent_path()) break;
  }
  return "";
}

std::string default_model_path() {
  if (const char* p = std::getenv("PETAL_MODEL"); p && *p) return p;
  const std::string dir = checkout_dir();
  return dir.empty() ? "" : dir + "/model/flowers-head.safetensors";
}

Bundle load_model(const std::string& path) {
  Bundle b = load_bundle_file(path);
  if (!is_head_only(b)) return b;
  const std::string bp = default_backbone_path();
  Bundle full;
  try {
    full = load_bundle_file(bp);
  } catch (const Error& e) {
    throw Error("'" + path + "' holds only a classifier head and the backbone could not be loaded (" + e.what() +
                "); run `petal import` or set PETAL_BACKBONE");
  }
  return merge_head_bundle(std::move(full), b);
}

Progress::Progress(std::string label, size_t total, const char* unit)
    : label_(std::move(label)), unit_(unit), total_(total), tty_(isatty(2)),
      start_(std::chrono::steady_clock::now()), last_print_(start_ - std::chrono::seconds(10)) {}

void Progress::update(size_t done) {
  last_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (done < total_ && since < (tty_ ? 0.1 : 5.0)) return;
  last_print_ = now;
  const double el = std::chrono::duration<double>(now - start_).count();
  const double rate = el > 0 ? double(done) / el : 0;
  const int eta = rate > 0 ? int(double(total_ - done) / rate) : 0;
  const int width = 30, fill = total_ ? int(width * done / total_) : width;
  std::fprintf(stderr, "%s%s [%s%s] %zu/%zu %.1f %s/s ETA %d:%02d%s", tty_ ? "\r" : "", label_.c_str(),
               std::string(fill, '#').c_str(), std::string(width - fill, '.').c_str(), done, total_, rate, unit_,
               eta / 60, eta % 60, tty_ ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  update(total_);
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace petal::cli
