// ResNet-50 (or any imported Graph) on XNNPACK's subgraph API: NHWC fp32, weights packed once
// when the runtime is created, run on a pthreadpool, any batch size.
#pragma once
#include <cstddef>
#include <cstdint>
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
  // int8 convolutions. Faster, and features no longer match fp32 exactly: not the default. A
  // bundle holding the tensor kInt8Marker (written by `petal quantize`) turns it on too, so that
  // engines built from bytes (the page) can use it; the marker also changes the bundle's backbone
  // identity. Two kinds:
  //  - static (QS8), when the bundle also holds kInt8RangesTensor (calibrated ranges, written by
  //    `petal quantize --calibrate`): every activation int8 with a fixed scale, fp32 only at the
  //    input and the pooled features. Fastest.
  //  - dynamic (QD8) otherwise: int8 weights, each convolution's input quantised per image on
  //    the fly, fp32 between the convolutions (bias, ReLU, residual adds).
  // Weights are symmetric per output channel in both.
  bool int8 = false;
  bool int8_dynamic = false;     // QD8 even when the bundle holds calibrated ranges
  bool int8_first_conv = false;  // QD8: also the 7x7 stem convolution (3 input channels) in int8
  // Runtime flags to experiment with (see petal bench --help).
  bool transient_indirection = false;  // XNN_FLAG_TRANSIENT_INDIRECTION_BUFFER
  bool weights_cache = false;          // pack weights into an XNNPACK weights cache
  // A residual Add (and its ReLU) whose input is a convolution's only use is done inside that
  // convolution, on each block of output while it is in cache, instead of two passes over memory
  // of its own: XNNPACK's subgraph optimiser does the rewrite (xnnpack-residual-add.patch, which
  // says when it applies; off: XNN_FLAG_PETAL_NO_RESIDUAL_FUSION). Same arithmetic, same results to
  // the bit; off only to measure it. fp32 and QD8 adds only (static int8 adds stay apart), and not
  // after a Winograd convolution.
  bool fuse_residual = true;
  // Our other XNNPACK patches, switched per convolution by flags declared in the patched
  // xnnpack.h; the defaults are what the engine uses, the others are for measuring the patches
  // (petal bench variants "direct", "xnnorder") and for comparing with XNNPACK's own code.
  //  - winograd: 3x3 stride-1 fp32 convolutions of 32-256 channels as Winograd F(2x2, 3x3)
  //    (xnnpack-winograd.patch; off: XNN_FLAG_PETAL_NO_WINOGRAD). Other arithmetic: features
  //    within rounding of the direct convolution's.
  //  - loop_order (xnnpack-weights-outer.patch): Auto sweeps the output pixels for each block of
  //    output channels when a convolution's packed weights outgrow the cache; Xnnpack keeps
  //    XNNPACK's order everywhere (XNN_FLAG_PETAL_XNNPACK_LOOP_ORDER); WeightsOuter takes the
  //    weights-outer order with the smallest blocks for every convolution, for tests
  //    (XNN_FLAG_PETAL_WEIGHTS_OUTER_ALWAYS). Same arithmetic in each: the same bits.
  bool winograd = true;
  enum class LoopOrder { Auto, Xnnpack, WeightsOuter };
  LoopOrder loop_order = LoopOrder::Auto;
  // The last feature map as an output of every run (for heatmaps; see run()). Off only to measure
  // that it costs nothing (petal bench variant "nomap").
  bool feature_map = true;
  // Calibration: run in fp32 (even for a bundle marked int8) and record the smallest and largest
  // value of every op's output in each image of every run(); Backbone::ranges() gives their means
  // over the images.
  bool record_ranges = false;
};

// Name of the marker tensor (any shape) that asks for int8 convolutions.
inline constexpr const char* kInt8Marker = "backbone.int8";
// Add the marker (what `petal quantize` writes): every engine that loads `b` runs int8.
void mark_int8(Bundle& b);
// Calibrated activation ranges for static int8: (ops + 1) x 2 floats, min and max of the input
// (row 0) and of each op's output (row i + 1) in the graph's order; rows of ops that are not
// quantised (pooling to features, dense) are ignored, and so is max pooling's (it keeps its
// input's quantisation).
inline constexpr const char* kInt8RangesTensor = "backbone.int8.ranges";

// Static int8 calibration: run the fp32 backbone `graph` on `n` preprocessed inputs (n x H x W x 3)
// and store the ranges it saw in `b` as kInt8RangesTensor, with the int8 marker.
void calibrate_int8(Bundle& b, const Graph& graph, const float* inputs, size_t n, size_t threads = 0);

// An int8 value's quantisation: real = scale * (q - zero_point).
struct Quant {
  float scale = 1.f;
  int32_t zero_point = 0;
};
// The quantisation covering [lo, hi] (and 0) with 256 steps; a range starting at 0 maps 0 to -128,
// so that saturation at the bottom is a ReLU.
Quant quant_of_range(float lo, float hi);

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
  // when `logits` is not null and the graph has a classifier, batch × num_logits logits; when
  // `feature_map` is not null, batch × feature_map_size() values of the last feature map (the
  // global average pool's input, NHWC), which the run writes anyway: asking costs nothing.
  void run(const float* input, size_t batch, float* features, float* logits = nullptr, float* feature_map = nullptr);

  // The last feature map's shape per image (9 × 9 × 2048 for ResNet-50 at 288²); all 0 for a
  // backbone built to record ranges, which gives no map.
  struct MapShape {
    int h = 0, w = 0, c = 0;
  };
  MapShape feature_map_shape() const { return map_shape_; }
  size_t feature_map_size() const { return size_t(map_shape_.h) * map_shape_.w * map_shape_.c; }

  const Graph& graph() const { return graph_; }
  size_t threads() const;
  pthreadpool_t pool() const;  // the backbone's thread pool (null when single-threaded)
  // Per-operator times of the last run(), in execution order (needs options.profile).
  std::vector<OpTime> profile() const;
  // Ranges seen so far (needs options.record_ranges), laid out as kInt8RangesTensor.
  std::vector<float> ranges() const;
  // Whether the activations are int8 with calibrated ranges (static QS8).
  bool static_int8() const { return static_int8_; }

 private:
  void reshape(size_t batch);
  Graph graph_;
  BackboneOptions options_;
  std::vector<std::vector<float>> weights_;  // int8 only: static tensor data kept for re-creating the runtime
  struct Impl;
  std::unique_ptr<Impl> impl_;
  size_t batch_ = 0;
  std::vector<float> input_pad_, logits_scratch_, map_scratch_;
  MapShape map_shape_;
  bool static_int8_ = false;
  struct Recorded {
    size_t op;     // index in graph_.ops
    size_t numel;  // per image
  };
  std::vector<Recorded> recorded_;           // record_ranges: the op outputs read after each run
  std::vector<std::vector<float>> buffers_;  // their storage
  std::vector<float> ranges_;                // (ops + 1) x 2: sums of each image's min and max
  size_t recorded_images_ = 0;
};

}  // namespace petal
