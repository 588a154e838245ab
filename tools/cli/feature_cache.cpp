#include "feature_cache.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "backbone.h"
#include "common.h"
#include "engine.h"
#include "error.h"
#include "fp16.h"
#include "graph.h"
#include "plot.h"

namespace petal::cli {

namespace {
// The graph up to the pooled features, as JSON: not the input size (part of the preprocessing
// key), not the ImageNet classifier after the pool (export --no-imagenet drops it). Sets `fc` to
// the classifier's name ("" when none).
std::string feature_graph_json(const Bundle& model, std::string& fc) {
  Graph graph = Graph::from_json(model.meta("graph"));
  graph.input_h = graph.input_w = 224;
  fc = graph.logits;
  if (!fc.empty()) {
    graph.ops.erase(std::remove_if(graph.ops.begin(), graph.ops.end(), [&](const Op& op) { return op.name == fc; }), graph.ops.end());
    graph.logits.clear();
    graph.num_logits = 0;
  }
  return graph.to_json();
}

// SHA-256 of the feature graph and its weights (not the ImageNet classifier, head or bank). With
// `fp16`, the weights as fp16 storage would round them (what `petal export --fp16` writes), so a
// backbone and its fp16 copy hash alike; I32 tensors are hashed as they are.
std::string backbone_id_of(const Bundle& model, const std::map<std::string, const Tensor*>& tensors, bool fp16 = false) {
  Sha256 s;
  std::string fc;
  const std::string g = feature_graph_json(model, fc);
  s.update(g.data(), g.size() + 1);
  std::vector<float> rounded;
  for (auto& [name, t] : tensors) {  // std::map: sorted by name
    if (name.rfind("head.", 0) == 0 || name.rfind("bank.", 0) == 0) continue;
    if (!fc.empty() && (name == fc + ".weight" || name == fc + ".bias")) continue;
    s.update(name.data(), name.size() + 1);
    for (size_t d : t->shape) {
      const uint64_t v = d;
      s.update(&v, 8);
    }
    if (fp16 && t->stored != DType::I32) {
      rounded.resize(t->data.size());
      for (size_t i = 0; i < rounded.size(); ++i) rounded[i] = half_to_float(float_to_half(t->data[i]));
      s.update(rounded.data(), rounded.size() * sizeof(float));
    } else {
      s.update(t->data.data(), t->data.size() * sizeof(float));
    }
  }
  return hex(s.finish());
}

std::string backbone_id_fp16(const Bundle& model) {
  std::map<std::string, const Tensor*> tensors;
  for (auto& [name, t] : model.tensors) tensors[name] = &t;
  return backbone_id_of(model, tensors, true);
}
}  // namespace

std::string backbone_id(const Bundle& model) {
  std::map<std::string, const Tensor*> tensors;
  for (auto& [name, t] : model.tensors) tensors[name] = &t;
  return backbone_id_of(model, tensors);
}

std::string backbone_id(const Bundle& model, bool int8, bool with_ranges) {
  std::map<std::string, const Tensor*> tensors;
  for (auto& [name, t] : model.tensors) tensors[name] = &t;
  Bundle marker;
  mark_int8(marker);
  tensors.erase(kInt8Marker);
  if (int8) tensors[kInt8Marker] = &marker.tensors.at(kInt8Marker);
  if (!int8 || !with_ranges) tensors.erase(kInt8RangesTensor);
  return backbone_id_of(model, tensors);
}

std::string backbone_mismatch(const Bundle& model, const std::string& model_id, const std::string& trained_id) {
  if (model_id == trained_id) return "";
  // The head records only its backbone's id; the default backbone is the one heads are trained on,
  // so it tells whether the loaded backbone is that one stored as fp16, or what differs.
  const std::string path = default_backbone_path();
  const std::string ids = "this head was trained on backbone " + trained_id.substr(0, 12) + ", the loaded one is " + model_id.substr(0, 12);
  Bundle ref;
  try {
    ref = load_bundle_file(path);
  } catch (const Error& e) {
    return ids + " and the default backbone to compare them with cannot be read (" + e.what() +
           "); set PETAL_BACKBONE to the backbone the head was trained on";
  }
  if (backbone_id(ref) != trained_id)
    return ids + " and the default one (" + path + ") is neither; its predictions may be wrong: set PETAL_BACKBONE to the backbone it was trained on, or retrain it";
  std::string fc;
  if (feature_graph_json(ref, fc) != feature_graph_json(model, fc))
    return ids + ": their layers differ from the default backbone's (" + path + "), which it was trained on; its predictions may be wrong: retrain it on this backbone";
  if (backbone_id_fp16(ref) == backbone_id_fp16(model)) return "";  // the same weights, one copy stored as fp16
  return ids + ": its weights differ from the default backbone's (" + path + "), which it was trained on, by more than fp16 storage; "
               "its predictions may be wrong: retrain it on this backbone";
}

std::string feature_cache_dir() { return cache_dir() + "/features"; }

Preprocessing preprocessing_of(const Bundle& model) {
  Preprocessing p;
  if (auto it = model.metadata.find("preprocessing"); it != model.metadata.end()) p.mode = it->second;
  if (p.mode != "caffe" && p.mode != "raw")
    throw Error("the model asks for preprocessing '" + p.mode + "', which this petal does not know (caffe or raw)");
  const Graph g = bundle_graph(model);  // the graph at the bundle's input_size
  if (g.input_h != g.input_w)
    throw Error("the model's input size " + std::to_string(g.input_h) + "x" + std::to_string(g.input_w) +
                " is not a square size like 224x224");
  p.size = g.input_h;
  return p;
}

std::string preprocessing_key(const Preprocessing& p) {
  // A 53×41 JPEG with smooth gradients and some edges, made in memory, then the real pipeline.
  const int w = 53, h = 41;
  std::vector<uint8_t> px(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* q = &px[(size_t(y) * w + x) * 3];
      q[0] = uint8_t(x * 255 / (w - 1));
      q[1] = uint8_t(y * 255 / (h - 1));
      q[2] = uint8_t(((x / 7 + y / 5) % 2) ? 220 : 30);
    }
  std::string jpeg = encode_jpeg(px.data(), w, h, 90);
  std::vector<float> a(size_t(p.size) * p.size * 3), b(a.size());
  photo_to_input(reinterpret_cast<const uint8_t*>(jpeg.data()), jpeg.size(), p, a.data(), b.data());
  Sha256 s;
  s.update(a.data(), a.size() * 4);
  s.update(b.data(), b.size() * 4);
  return p.key() + "-" + hex(s.finish()).substr(0, 8);
}

// ---------------------------------------------------------------- the cache file

namespace {
constexpr size_t kHeader = 112;
constexpr char kMagic[8] = {'P', 'E', 'T', 'A', 'L', 'F', 'C', '1'};

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n) {
    const ssize_t k = ::write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= size_t(k);
  }
  return true;
}

std::string key_of(const Digest& d, int view) {
  std::string k(reinterpret_cast<const char*>(d.data()), 32);
  k += char(uint8_t(view));
  return k;
}

struct Lock {
  int fd;
  explicit Lock(int f) : fd(f) {
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {}
  }
  ~Lock() { ::flock(fd, LOCK_UN); }
};
}  // namespace

FeatureCache::FeatureCache(const std::string& dir, const std::string& model_id, const std::string& prep_key, size_t dim)
    : model_id_(model_id), prep_(prep_key), dim_(dim) {
  if (model_id.size() != 64 || prep_key.size() > 32 || dim == 0) throw Error("internal: bad feature cache key");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  path_ = dir + "/" + model_id.substr(0, 16) + "-" + prep_key + ".feat";
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error("cannot open the feature cache '" + path_ + "': " + std::strerror(errno) +
                "; set PETAL_CACHE to a writable folder");
  load();
}

FeatureCache::~FeatureCache() {
  if (fd_ >= 0) ::close(fd_);
}

void FeatureCache::write_header() {
  char h[kHeader] = {};
  std::memcpy(h, kMagic, 8);
  const uint32_t d = uint32_t(dim_);
  std::memcpy(h + 8, &d, 4);
  std::memcpy(h + 16, model_id_.data(), 64);
  std::memcpy(h + 80, prep_.data(), prep_.size());
  if (!write_all(fd_, h, kHeader)) throw Error("cannot write the feature cache '" + path_ + "': " + std::strerror(errno));
}

void FeatureCache::load() {
  Lock lock(fd_);
  struct stat st;
  if (::fstat(fd_, &st) != 0) throw Error("cannot read the feature cache '" + path_ + "'");
  const size_t size = size_t(st.st_size), rec = 36 + dim_ * 4;
  if (size == 0) {
    write_header();
    return;
  }
  std::vector<char> head(kHeader);
  bool ok = size >= kHeader && ::pread(fd_, head.data(), kHeader, 0) == ssize_t(kHeader) &&
            std::memcmp(head.data(), kMagic, 8) == 0;
  uint32_t d = 0;
  if (ok) std::memcpy(&d, head.data() + 8, 4);
  ok = ok && d == dim_ && std::memcmp(head.data() + 16, model_id_.data(), 64) == 0 &&
       std::string(head.data() + 80, strnlen(head.data() + 80, 32)) == prep_;
  if (!ok) {
    std::fprintf(stderr, "petal: warning: the feature cache '%s' is damaged or from another model; setting it aside (.damaged) and starting afresh\n",
                 path_.c_str());
    std::rename(path_.c_str(), (path_ + ".damaged").c_str());
    ::close(fd_);
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot create the feature cache '" + path_ + "': " + std::strerror(errno));
    Lock l2(fd_);
    write_header();
    return;
  }
  const size_t n = (size - kHeader) / rec;
  if ((size - kHeader) % rec) {  // a run was killed mid-write; drop the torn record (we hold the lock)
    if (::ftruncate(fd_, off_t(kHeader + n * rec)) != 0) {}
  }
  std::vector<char> buf(rec * std::min<size_t>(n, 256));
  for (size_t i = 0; i < n;) {
    const size_t k = std::min<size_t>(n - i, 256);
    if (::pread(fd_, buf.data(), k * rec, off_t(kHeader + i * rec)) != ssize_t(k * rec))
      throw Error("cannot read the feature cache '" + path_ + "': " + std::strerror(errno));
    for (size_t j = 0; j < k; ++j) {
      const char* r = buf.data() + j * rec;
      auto row = std::make_unique<std::vector<float>>(dim_);
      std::memcpy(row->data(), r + 36, dim_ * 4);
      index_[std::string(r, 33)] = row->data();
      rows_.push_back(std::move(row));
    }
    i += k;
  }
}

const float* FeatureCache::find(const Digest& d, int view) const {
  std::lock_guard<std::mutex> l(mutex_);
  auto it = index_.find(key_of(d, view));
  return it == index_.end() ? nullptr : it->second;
}

void FeatureCache::append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const size_t rec = 36 + dim_ * 4;
  std::vector<char> buf(rec * entries.size(), 0);
  for (size_t i = 0; i < entries.size(); ++i) {
    char* r = buf.data() + i * rec;
    std::memcpy(r, entries[i].digest.data(), 32);
    r[32] = char(uint8_t(entries[i].view));
    std::memcpy(r + 36, entries[i].features, dim_ * 4);
  }
  {
    Lock lock(fd_);
    struct stat st;
    if (::fstat(fd_, &st) == 0 && st.st_size >= off_t(kHeader) && (size_t(st.st_size) - kHeader) % rec)
      if (::ftruncate(fd_, off_t(kHeader + (size_t(st.st_size) - kHeader) / rec * rec)) != 0) {}
    if (!write_all(fd_, buf.data(), buf.size()))
      throw Error("cannot write the feature cache '" + path_ + "': " + std::strerror(errno) + " (disk full?)");
  }
  std::lock_guard<std::mutex> l(mutex_);
  for (auto& e : entries) {
    auto row = std::make_unique<std::vector<float>>(e.features, e.features + dim_);
    index_[key_of(e.digest, e.view)] = row->data();
    rows_.push_back(std::move(row));
  }
}

// ---------------------------------------------------------------- the backbone as a source

FeatureSource::FeatureSource(const Bundle& model, Preprocessing prep, size_t threads)
    : model_(model), prep_(std::move(prep)), threads_(threads) {
  const Graph g = Graph::from_json(model.meta("graph"));
  dim_ = size_t(g.feature_dim);
  model_id_ = backbone_id(model);
}

FeatureSource::~FeatureSource() = default;

Backbone& FeatureSource::backbone() {
  if (!backbone_) {
    Graph g = Graph::from_json(model_.meta("graph"));
    g.input_h = g.input_w = prep_.size;
    backbone_ = std::make_unique<Backbone>(g, model_, threads_);
  }
  return *backbone_;
}

size_t FeatureSource::threads() const {
  if (backbone_) return backbone_->threads();
  return threads_ ? threads_ : std::max(1u, std::thread::hardware_concurrency());
}

// ---------------------------------------------------------------- extraction

namespace {

struct Item {  // one decoded photo, or the reason it has none
  size_t slot = 0;  // position in the request
  Digest digest{};
  std::vector<std::pair<int, std::vector<float>>> inputs;  // (view, input) of the views not cached yet
  std::string error;
  bool end = false;
};

class Queue {
 public:
  explicit Queue(size_t cap) : cap_(cap) {}
  bool push(Item it) {  // false once stopped
    std::unique_lock<std::mutex> l(m_);
    not_full_.wait(l, [&] { return q_.size() < cap_ || stop_; });
    if (stop_) return false;
    q_.push_back(std::move(it));
    not_empty_.notify_one();
    return true;
  }
  Item pop() {
    std::unique_lock<std::mutex> l(m_);
    not_empty_.wait(l, [&] { return !q_.empty(); });
    Item it = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return it;
  }
  void stop() {
    std::lock_guard<std::mutex> l(m_);
    stop_ = true;
    not_full_.notify_all();
  }

 private:
  size_t cap_;
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Item> q_;
  bool stop_ = false;
};

// Ctrl-C (or SIGTERM) during an extraction: finish the batch in flight, keep everything computed,
// say how to resume. A second Ctrl-C kills at once (the cache drops a torn record on the next run).
std::atomic<bool> g_interrupted{false};
void on_interrupt(int) { g_interrupted = true; }
struct InterruptGuard {
  struct sigaction old_int {}, old_term {};
  InterruptGuard() {
    g_interrupted = false;
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~InterruptGuard() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

// The views an extraction wants: 0 (the photo), 1 (its mirror image) with flips, then the extra ones.
std::vector<int> wanted_views(const ExtractOptions& opt) {
  std::vector<int> views{0};
  if (opt.flips) views.push_back(1);
  for (int v : opt.extra_views) {
    if (v < 2 || size_t(v) >= all_views().size()) throw Error("internal: extra views have ids from 2");
    if (std::find(views.begin(), views.end(), v) == views.end()) views.push_back(v);
  }
  return views;
}

// The reader thread's work: each photo of the request read and hashed, and decoded into backbone
// inputs for the views the cache lacks, pushed in request order. Stops early once the queue is.
void read_photos(const Dataset& d, const std::vector<size_t>& indices, const std::vector<int>& views, const FeatureCache& cache,
                 const Preprocessing& prep, Queue& queue) {
  const size_t in_size = size_t(prep.size) * prep.size * 3;
  for (size_t s = 0; s < indices.size(); ++s) {
    Item it;
    it.slot = s;
    LoadedFile f = load_data_file(d.files[indices[s]].path);
    if (!f.error.empty()) {
      it.error = f.error;
      if (!queue.push(std::move(it))) return;
      continue;
    }
    it.digest = sha256(f.bytes.data(), f.bytes.size());
    std::vector<int> missing;
    for (int v : views)
      if (!cache.find(it.digest, v)) missing.push_back(v);
    if (!missing.empty()) {
      try {
        std::vector<float*> outs;
        for (int v : missing) it.inputs.push_back({v, std::vector<float>(in_size)});
        for (auto& [v, in] : it.inputs) outs.push_back(in.data());
        photo_to_views(f.bytes.data(), f.bytes.size(), prep, missing, outs);
      } catch (const Error& e) {
        it.inputs.clear();
        it.error = e.what();
      }
    }
    if (!queue.push(std::move(it))) return;
  }
}

// What an extraction has so far: per view and request slot the features (pointers into the
// cache), or per slot why there are none; and the inputs waiting for the backbone, which run in
// batches of `batch` and go to the cache as each batch finishes.
class Found {
 public:
  Found(std::vector<int> views, size_t n, FeatureSource& src, FeatureCache& cache, size_t batch)
      : views(std::move(views)), got(this->views.size(), std::vector<const float*>(n, nullptr)), error(n), src_(src),
        cache_(cache), batch_(batch) {}

  // One photo from the reader: its error, or each view from the cache or queued for the backbone.
  void take(const Item& it) {
    if (!it.error.empty()) {
      error[it.slot] = it.error;
      return;
    }
    for (int v : views) {
      auto in = std::find_if(it.inputs.begin(), it.inputs.end(), [&](const auto& x) { return x.first == v; });
      if (in == it.inputs.end()) {
        got[view_index(v)][it.slot] = cache_.find(it.digest, v);
        ++from_cache;
        continue;
      }
      batch_in_.insert(batch_in_.end(), in->second.begin(), in->second.end());
      batch_slots_.push_back({it.slot, v});
      batch_digest_.push_back(it.digest);
      if (batch_slots_.size() >= batch_) flush();
    }
  }

  // The inputs waiting through the backbone, into the cache.
  void flush() {
    if (batch_slots_.empty()) return;
    const size_t b = batch_slots_.size(), dim = src_.dim();
    std::vector<float> out(b * dim);
    src_.backbone().run(batch_in_.data(), b, out.data());
    std::vector<FeatureCache::Entry> entries;
    for (size_t i = 0; i < b; ++i) entries.push_back({batch_digest_[i], batch_slots_[i].second, out.data() + i * dim});
    cache_.append(entries);
    for (size_t i = 0; i < b; ++i) {
      const auto [slot, v] = batch_slots_[i];
      got[view_index(v)][slot] = cache_.find(batch_digest_[i], v);
    }
    computed += b;
    batch_in_.clear();
    batch_slots_.clear();
    batch_digest_.clear();
  }

  const std::vector<int> views;
  std::vector<std::vector<const float*>> got;  // [view index][slot]
  std::vector<std::string> error;              // [slot]
  size_t computed = 0, from_cache = 0;

 private:
  size_t view_index(int v) const { return size_t(std::find(views.begin(), views.end(), v) - views.begin()); }

  FeatureSource& src_;
  FeatureCache& cache_;
  const size_t batch_;
  std::vector<float> batch_in_;
  std::vector<std::pair<size_t, int>> batch_slots_;  // (slot, view) of each input waiting
  std::vector<Digest> batch_digest_;
};

// The table of the photos with every view found, in request order; the others skipped with why.
FeatureTable table_of(const Dataset& d, const std::vector<size_t>& indices, const Found& f, size_t dim, const ExtractOptions& opt) {
  FeatureTable t;
  t.dim = dim;
  t.extra.resize(f.views.size() - 1 - (opt.flips ? 1 : 0));
  for (size_t s = 0; s < indices.size(); ++s) {
    const DataFile& file = d.files[indices[s]];
    bool complete = f.error[s].empty();
    for (auto& g : f.got) complete = complete && g[s];
    if (!complete) {
      const std::string why = f.error[s].empty() ? "no features (internal error)" : f.error[s];
      t.skipped.push_back({file.path, why});
      if (opt.warn) std::fprintf(stderr, "petal: warning: skipped %s: %s\n", file.path.c_str(), why.c_str());
      continue;
    }
    t.files.push_back(indices[s]);
    t.labels.push_back(file.label);
    t.features.insert(t.features.end(), f.got[0][s], f.got[0][s] + dim);
    size_t k = 1;
    if (opt.flips) {
      t.flipped.insert(t.flipped.end(), f.got[1][s], f.got[1][s] + dim);
      k = 2;
    }
    for (size_t e = 0; e < t.extra.size(); ++e) t.extra[e].insert(t.extra[e].end(), f.got[k + e][s], f.got[k + e][s] + dim);
  }
  t.computed = f.computed;
  t.from_cache = f.from_cache;
  return t;
}

}  // namespace

// A reader thread decodes photos (read_photos) while this one runs the backbone on batches
// (Found); Ctrl-C finishes the batch in flight and keeps what was computed.
FeatureTable extract_features(const Dataset& d, const std::vector<size_t>& indices, FeatureSource& src,
                              FeatureCache& cache, const ExtractOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const size_t dim = src.dim(), n = indices.size();
  if (cache.dim() != dim) throw Error("internal: feature cache and backbone disagree on the feature size");
  Found found(wanted_views(opt), n, src, cache, opt.batch);

  std::exception_ptr producer_error;
  Queue queue(4);
  std::thread producer([&] {
    try {
      read_photos(d, indices, found.views, cache, src.preprocessing(), queue);
    } catch (...) {
      producer_error = std::current_exception();
    }
    Item end;
    end.end = true;
    queue.push(std::move(end));
  });

  std::unique_ptr<Progress> bar;
  if (opt.progress && n > 1) bar = std::make_unique<Progress>("features", n);
  InterruptGuard guard;
  try {
    for (size_t done = 0;;) {
      if (g_interrupted) {
        found.flush();
        if (bar) std::fputc('\n', stderr);
        throw Error("interrupted: the " + std::to_string(found.computed) +
                    " features computed by this run are saved in the feature cache; run the same command again to go on");
      }
      const Item it = queue.pop();
      if (it.end) break;
      found.take(it);
      ++done;
      if (bar) bar->update(std::min(done, n));
    }
    found.flush();
  } catch (...) {
    queue.stop();
    producer.join();
    throw;
  }
  producer.join();
  if (producer_error) std::rethrow_exception(producer_error);
  if (bar) bar->finish();

  FeatureTable t = table_of(d, indices, found, dim, opt);
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

}  // namespace petal::cli
