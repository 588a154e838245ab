// petal download: the two files an online user may want, fetched with curl.
//   flowers → the original flower_photos archive, unpacked into DIR/flower_photos/
//   notop   → Keras's ResNet-50 ImageNet weights without the top (HDF5), for `petal import --h5`
// Offline (or without curl) it fails with one line saying what to fetch by hand and where to put it.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "common.h"
#include "error.h"

extern char** environ;

namespace petal::cli {

namespace {

struct Fetchable {
  const char* name;
  const char* url;
  const char* file;
  const char* what;
};
const Fetchable kFiles[] = {
    {"flowers", "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz", "flower_photos.tgz",
     "the flower_photos data set (3,670 photos, 5 classes)"},
    {"notop", "https://storage.googleapis.com/tensorflow/keras-applications/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "Keras's ResNet-50 ImageNet weights without the classifier"},
};

std::string find_in_path(const std::string& prog) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    const size_t end = p.find(':', start);
    const std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const std::string cand = (dir.empty() ? "." : dir) + "/" + prog;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return "";
}

// Run a program (no shell), its stdout/stderr captured into `output`; returns the exit status.
int run(const std::vector<std::string>& argv, std::string& output) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(std::string("cannot start ") + argv[0] + ": " + std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw Error("cannot start " + argv[0] + ": " + std::strerror(rc));
  }
  char buf[4096];
  ssize_t k;
  while ((k = ::read(fds[0], buf, sizeof buf)) > 0 || (k < 0 && errno == EINTR))
    if (k > 0) output.append(buf, size_t(k));
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  const size_t nl = t.find_last_of('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

bool starts_with_bytes(const std::string& path, const void* magic, size_t n) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::vector<char> b(n);
  const bool ok = std::fread(b.data(), 1, n, f) == n && std::memcmp(b.data(), magic, n) == 0;
  std::fclose(f);
  return ok;
}

}  // namespace

void register_download(CLI::App& app) {
  auto* cmd = app.add_subcommand("download", "Fetch the flower photos (flowers) or Keras's ResNet-50 notop weights (notop); needs internet and curl");
  static std::string which, dir;
  cmd->add_option("what", which, "flowers or notop")->required();
  cmd->add_option("-o,--output", dir, "folder to put it in (default: $PETAL_CACHE/data for flowers, $PETAL_CACHE/models for notop)");
  cmd->callback([] {
    const Fetchable* f = nullptr;
    for (auto& k : kFiles)
      if (which == k.name) f = &k;
    if (!f) throw Error("unknown download '" + which + "'; use flowers or notop");
    const std::string out_dir = !dir.empty() ? dir : cache_dir() + (which == "flowers" ? "/data" : "/models");
    const std::string final_path = out_dir + "/" + f->file, part = out_dir + "/." + f->file + ".part";
    const std::string by_hand = "download " + std::string(f->url) + " on a machine that is online and copy it to " + final_path;
    const std::string curl = find_in_path("curl");
    if (curl.empty()) throw Error("curl is not installed (apt-get install curl); or " + by_hand);
    std::error_code ec;
    std::filesystem::create_directories(out_dir, ec);
    if (ec) throw Error("cannot create '" + out_dir + "': " + ec.message());
    std::fprintf(stderr, "petal: downloading %s from %s\n", f->what, f->url);
    std::string log;
    const int rc = run({curl, "-fL", "--connect-timeout", "20", "--retry", "2", "-sS", "-o", part, f->url}, log);
    if (rc != 0) {
      std::remove(part.c_str());
      const std::string why = last_line(log);
      const bool offline = rc == 6 || rc == 7 || rc == 28 || rc == 35;
      throw Error("could not download " + std::string(f->url) + " (" + (why.empty() ? "curl exit " + std::to_string(rc) : why) + ")" +
                  (offline ? ": this machine seems to be offline; " : "; ") + by_hand);
    }
    if (which == "flowers") {
      if (!starts_with_bytes(part, "\x1f\x8b", 2)) {
        std::remove(part.c_str());
        throw Error("the download is not a gzip archive (a proxy page?); " + by_hand);
      }
      const std::string tar = find_in_path("tar");
      if (tar.empty()) throw Error("tar is not installed; the archive is at " + part);
      std::string tlog;
      if (run({tar, "-xzf", part, "-C", out_dir}, tlog) != 0) {
        std::remove(part.c_str());
        throw Error("unpacking the archive failed (" + last_line(tlog) + "); " + by_hand);
      }
      std::rename(part.c_str(), final_path.c_str());
      std::printf("%s/flower_photos (archive kept at %s)\nnext: petal train %s/flower_photos -o model/flowers-head.safetensors\n",
                  out_dir.c_str(), final_path.c_str(), out_dir.c_str());
    } else {
      if (!starts_with_bytes(part, "\x89HDF\r\n\x1a\n", 8)) {
        std::remove(part.c_str());
        throw Error("the download is not an HDF5 file (a proxy page?); " + by_hand);
      }
      std::rename(part.c_str(), final_path.c_str());
      std::printf("%s\nnext: petal import --h5 %s\n", final_path.c_str(), final_path.c_str());
    }
  });
}

}  // namespace petal::cli
