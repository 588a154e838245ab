// ResNet-50 (or any imported Graph) on XNNPACK's subgraph API: NHWC fp32, weights packed once
// when the runtime is created, run on a pthreadpool, any batch size.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "bundle.h"
#include "graph.h"

typedef struct pthreadpool* pthreadpool_t;

namespace petal {

// How the backbone is built; the defaults are what the engine uses.
struct BackboneOptions {
  // Per-operator timing (XNN_FLAG_BASIC_PROFILING): read with Backbone::profile() after run().
  bool profile = false;
  // int8 convolutions (XNNPACK QD8: per-output-channel int8 weights, activations quantised per
  // image on the fly, fp32 accumulation scale, bias, ReLU and residual adds). Faster, and
  // features no longer match fp32 exactly: not the default. A bundle holding the tensor
  // kInt8Marker (written by `petal quantize`) turns it on too, so that engines built from bytes
  // (the page) can use it; the marker also changes the bundle's backbone identity.
  bool int8 = false;
  bool int8_first_conv = false;  // also the 7x7 stem convolution (3 input channels) in int8
  // Runtime flags to experiment with (see petal bench --help).
  bool transient_indirection = false;  // XNN_FLAG_TRANSIENT_INDIRECTION_BUFFER
  bool weights_cache = false;          // pack weights into an XNNPACK weights cache
};

// Name of the marker tensor (any shape) that asks for int8 convolutions.
inline constexpr const char* kInt8Marker = "backbone.int8";
// Add the marker (what `petal quantize` writes): every engine that loads `b` runs int8.
void mark_int8(Bundle& b);

// Time spent in one XNNPACK operator during the last run().
struct OpTime {
  std::string name;  // XNNPACK operator name, e.g. "Convolution (NHWC, F32) IGEMM"
  double ms = 0;
};

class Backbone {
 public:
  // `threads` = 0 picks the number of cores. Throws petal::Error on a mismatched bundle.
  Backbone(const Graph& graph, const Bundle& weights, size_t threads = 0);
  Backbone(const Graph& graph, const Bundle& weights, size_t threads, const BackboneOptions& options);
  ~Backbone();
  Backbone(const Backbone&) = delete;
  Backbone& operator=(const Backbone&) = delete;

  // `input`: batch × H × W × 3 preprocessed pixels. Writes batch × feature_dim features and,
  // when `logits` is not null and the graph has a classifier, batch × num_logits logits.
  void run(const float* input, size_t batch, float* features, float* logits = nullptr);

  const Graph& graph() const { return graph_; }
  size_t threads() const;
  pthreadpool_t pool() const;  // the backbone's thread pool (null when single-threaded)
  // Per-operator times of the last run(), in execution order (needs options.profile).
  std::vector<OpTime> profile() const;

 private:
  void reshape(size_t batch);
  Graph graph_;
  BackboneOptions options_;
  std::vector<std::vector<float>> weights_;  // int8 only: static tensor data kept for re-creating the runtime
  struct Impl;
  std::unique_ptr<Impl> impl_;
  size_t batch_ = 0;
  std::vector<float> input_pad_, logits_scratch_;
};

}  // namespace petal
