#include "dataset.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "error.h"
#include "petal_limits.h"

namespace petal::cli {

namespace {

std::string join(const std::string& a, const std::string& b) {
  if (a.empty() || a.back() == '/') return a + b;
  return a + "/" + b;
}

bool has_image_extension(const std::string& name) {
  static const char* kExt[] = {".bmp", ".gif", ".jpeg", ".jpg", ".png"};
  std::string lower = name;
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const char* e : kExt) {
    const size_t n = std::strlen(e);
    if (lower.size() >= n && lower.compare(lower.size() - n, n, e) == 0) return true;
  }
  return false;
}

// stat() follows symlinks: true for a directory or a symlink to one (Python's entry.is_dir()).
bool is_dir_follow(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_symlink(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

// Entry names of a folder (without . and ..); false when it cannot be read.
bool list_dir(const std::string& dir, std::vector<std::string>& names, std::string* why = nullptr) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (why) *why = std::strerror(errno);
    return false;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return true;
}

// os.walk(top, followlinks=False), each root's files sorted, roots sorted by path.
struct WalkRoot {
  std::string root;
  std::vector<std::string> files;
};
void walk(const std::string& top, std::vector<WalkRoot>& out, std::vector<Skipped>& problems, int depth = 0) {
  std::vector<std::string> names;
  std::string why;
  if (!list_dir(top, names, &why)) {  // os.walk ignores such folders; we say so
    problems.push_back({top, "folder unreadable: " + why});
    return;
  }
  WalkRoot r{top, {}};
  std::vector<std::string> dirs;
  for (auto& n : names) {
    const std::string p = join(top, n);
    if (is_dir_follow(p)) dirs.push_back(n);
    else r.files.push_back(n);
  }
  std::sort(r.files.begin(), r.files.end());
  out.push_back(std::move(r));
  if (depth > 64) return;
  for (auto& d : dirs) {
    const std::string p = join(top, d);
    if (is_symlink(p)) continue;  // followlinks=False
    walk(p, out, problems, depth + 1);
  }
}

}  // namespace

Subset parse_subset(const std::string& s) {
  if (s == "training" || s == "train") return Subset::Training;
  if (s == "validation" || s == "val") return Subset::Validation;
  if (s == "all" || s == "both") return Subset::All;
  throw Error("unknown subset '" + s + "'; use training, validation or all");
}

const char* subset_name(Subset s) {
  switch (s) {
    case Subset::Training: return "training";
    case Subset::Validation: return "validation";
    default: return "all";
  }
}

std::vector<size_t> numpy_shuffle_permutation(size_t n, uint32_t seed) {
  // RandomState(seed) seeds MT19937 with init_genrand(seed), exactly what std::mt19937(seed) does;
  // the standard fixes mt19937's output sequence, so this is the same on every platform.
  std::mt19937 mt(seed);
  std::vector<size_t> perm(n);
  for (size_t i = 0; i < n; ++i) perm[i] = i;
  for (size_t i = n; i-- > 1;) {
    // numpy random_interval(max = i): smallest all-ones mask ≥ max, redraw until ≤ max.
    uint64_t mask = i;
    mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
    uint64_t v;
    if (i <= 0xffffffffull) {
      do v = uint64_t(uint32_t(mt())) & mask; while (v > i);
    } else {
      do v = ((uint64_t(uint32_t(mt())) << 32) | uint32_t(mt())) & mask; while (v > i);
    }
    std::swap(perm[i], perm[size_t(v)]);
  }
  return perm;
}

Dataset index_directory(const std::string& dir_in, const DatasetOptions& opt) {
  if (!(opt.validation_split >= 0 && opt.validation_split < 1))
    throw Error("--validation-split must be at least 0 and below 1 (got " + std::to_string(opt.validation_split) + ")");
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    throw Error("data folder '" + dir + "' " + (errno == ENOENT ? std::string("does not exist") : std::strerror(errno)) +
                "; give the folder that holds one sub-folder of photos per class");
  if (!S_ISDIR(st.st_mode))
    throw Error("'" + dir + "' is not a folder; give the folder that holds one sub-folder of photos per class");
  std::vector<std::string> names;
  std::string why;
  if (!list_dir(dir, names, &why)) throw Error("cannot read the data folder '" + dir + "': " + why);
  std::sort(names.begin(), names.end());

  Dataset d;
  d.root = dir;
  d.options = opt;
  size_t loose_images = 0;
  for (auto& n : names) {
    const std::string p = join(dir, n);
    if (!is_dir_follow(p)) {
      loose_images += has_image_extension(n);
      continue;
    }
    if (n[0] == '.') {
      std::fprintf(stderr, "petal: warning: ignoring hidden folder '%s' (not a class)\n", p.c_str());
      continue;
    }
    d.class_names.push_back(n);
  }
  if (d.class_names.empty())
    throw Error("'" + dir + "' has no class folders: put each class's photos in its own sub-folder (" + dir +
                "/<class>/photo.jpg)" +
                (loose_images ? "; its " + std::to_string(loose_images) + " images directly inside are not used" : ""));

  std::vector<DataFile> files;
  d.per_class.assign(d.class_names.size(), 0);
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    const std::string top = join(dir, d.class_names[c]);
    std::vector<WalkRoot> roots;
    walk(top, roots, d.not_images);
    std::sort(roots.begin(), roots.end(), [](const WalkRoot& a, const WalkRoot& b) { return a.root < b.root; });
    for (auto& r : roots)
      for (auto& f : r.files) {
        const std::string p = join(r.root, f);
        if (!has_image_extension(f)) {
          d.not_images.push_back({p, "not an image file (only .jpg .jpeg .png .gif .bmp are read)"});
          continue;
        }
        files.push_back({p, d.class_names[c] + p.substr(top.size()), int(c)});
        d.per_class[c]++;
      }
    if (d.per_class[c] == 0)
      throw Error("class folder '" + top + "' has no images (.jpg .jpeg .png .gif .bmp); add photos or remove the folder");
  }

  if (opt.shuffle) {
    const auto perm = numpy_shuffle_permutation(files.size(), opt.seed);
    d.files.reserve(files.size());
    for (size_t i : perm) d.files.push_back(files[i]);
  } else {
    d.files = std::move(files);
  }
  // Keras: num_val_samples = int(validation_split * len(samples)) (float64 product, truncated).
  d.num_validation = size_t(opt.validation_split * double(d.files.size()));
  if (opt.validation_split > 0 && d.num_validation == 0)
    std::fprintf(stderr, "petal: warning: %zu photos are too few for a %.0f%% validation subset; all are for training\n",
                 d.files.size(), 100 * opt.validation_split);
  return d;
}

std::vector<size_t> subset_indices(const Dataset& d, Subset s) {
  const size_t n = d.files.size(), nv = d.num_validation;
  size_t b = 0, e = n;
  if (s == Subset::Training) e = n - nv;
  else if (s == Subset::Validation) b = n - nv;
  std::vector<size_t> idx;
  for (size_t i = b; i < e; ++i) idx.push_back(i);
  return idx;
}

LoadedFile load_data_file(const std::string& path) {
  LoadedFile r;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ELOOP) r.error = "symlink loop (the link points back at itself)";
    else if (err == ENOENT && is_symlink(path)) r.error = "broken symlink (its target does not exist)";
    else r.error = std::string("unreadable: ") + std::strerror(err);
    return r;
  }
  if (!S_ISREG(st.st_mode)) {
    r.error = "not a regular file";
    return r;
  }
  r.error = limits::image_bytes_problem(uint64_t(st.st_size));
  if (!r.error.empty()) return r;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.error = std::string("unreadable: ") + std::strerror(errno);
    return r;
  }
  r.bytes.resize(size_t(st.st_size));
  size_t got = 0;
  while (got < r.bytes.size()) {
    const ssize_t k = ::read(fd, r.bytes.data() + got, r.bytes.size() - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      r.error = k < 0 ? std::string("unreadable: ") + std::strerror(errno) : "the file shrank while being read";
      break;
    }
    got += size_t(k);
  }
  ::close(fd);
  if (!r.error.empty()) r.bytes.clear();
  return r;
}

std::string Preprocessing::key() const { return mode + std::to_string(size); }

const std::vector<View>& all_views() {
  static const std::vector<View> v = {
      {"full", 1.f, .5f, .5f, false},         {"flip", 1.f, .5f, .5f, true},
      {"crop85", .85f, .5f, .5f, false},      {"crop85-flip", .85f, .5f, .5f, true},
      {"crop85-tl", .85f, 0.f, 0.f, false},   {"crop85-tr", .85f, 1.f, 0.f, false},
      {"crop85-bl", .85f, 0.f, 1.f, false},   {"crop85-br", .85f, 1.f, 1.f, false},
      {"crop70", .7f, .5f, .5f, false},       {"crop70-flip", .7f, .5f, .5f, true},
      {"crop85-tl-flip", .85f, 0.f, 0.f, true}, {"crop85-tr-flip", .85f, 1.f, 0.f, true},
      {"crop85-bl-flip", .85f, 0.f, 1.f, true}, {"crop85-br-flip", .85f, 1.f, 1.f, true},
  };
  return v;
}

int view_id(const std::string& name) {
  std::string names;
  for (size_t i = 0; i < all_views().size(); ++i) {
    if (name == all_views()[i].name) return int(i);
    names += std::string(i ? ", " : "") + all_views()[i].name;
  }
  throw Error("unknown view '" + name + "'; the views are " + names);
}

namespace {
void preprocess(const Image& img, const std::string& mode, bool flip, float* out) {
  if (mode == "caffe") {
    preprocess_caffe(img, out, flip);
    return;
  }
  const int W = img.width;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < W; ++x) {
      const uint8_t* s = &img.rgb[(size_t(y) * W + (flip ? W - 1 - x : x)) * 3];
      float* q = out + (size_t(y) * W + x) * 3;
      q[0] = s[0];
      q[1] = s[1];
      q[2] = s[2];
    }
}
}  // namespace

void photo_to_views(const uint8_t* data, size_t n, const Preprocessing& p, const std::vector<int>& views,
                    const std::vector<float*>& outs) {
  if (p.mode != "caffe" && p.mode != "raw") throw Error("unknown preprocessing '" + p.mode + "' (caffe or raw)");
  if (outs.size() != views.size()) throw Error("internal: photo_to_views needs one output per view");
  const Image img = decode_image(data, n);
  Image full;  // the whole photo resized, shared by views 0 and 1
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i] < 0 || size_t(views[i]) >= all_views().size()) throw Error("internal: unknown view id");
    const View& v = all_views()[size_t(views[i])];
    if (v.crop >= 1.f) {
      if (full.rgb.empty()) full = resize_image(img, p.size, p.size);
      preprocess(full, p.mode, v.flip, outs[i]);
      continue;
    }
    const int cw = std::max(1, int(float(img.width) * v.crop)), ch = std::max(1, int(float(img.height) * v.crop));
    const int x0 = int(float(img.width - cw) * v.x), y0 = int(float(img.height - ch) * v.y);
    Image c;
    c.width = cw;
    c.height = ch;
    c.rgb.resize(size_t(cw) * ch * 3);
    for (int y = 0; y < ch; ++y)
      std::memcpy(&c.rgb[size_t(y) * cw * 3], &img.rgb[(size_t(y + y0) * img.width + x0) * 3], size_t(cw) * 3);
    preprocess(resize_image(c, p.size, p.size), p.mode, v.flip, outs[i]);
  }
}

void photo_to_input(const uint8_t* data, size_t n, const Preprocessing& p, float* out, float* flipped_out) {
  if (flipped_out) photo_to_views(data, n, p, {0, 1}, {out, flipped_out});
  else photo_to_views(data, n, p, {0}, {out});
}

}  // namespace petal::cli
