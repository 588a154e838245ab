// The backbone's topology as a short list of fused operations (BatchNorm folded into the
// convolution, ReLU and zero-padding folded into the op that produces/consumes them). The
// importer builds it from model.json; the bundle stores it as JSON in its metadata ("graph");
// the XNNPACK backbone is built from it. Weights live in the bundle as `<op>.weight`/`<op>.bias`.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace petal {

struct Op {
  enum Kind { Conv, MaxPool, Add, GlobalAvgPool, Dense } kind = Conv;
  std::string name;                 // also the name of its output value
  std::vector<std::string> inputs;  // value names; "input" is the image
  int kh = 1, kw = 1, sh = 1, sw = 1;
  std::array<int, 4> pad{0, 0, 0, 0};  // top, right, bottom, left (explicit zero padding)
  bool same = false;                   // TensorFlow 'same' padding (computed from the input size)
  bool relu = false;                   // ReLU fused on the output
  int cin = 0, cout = 0;               // Conv: weight [cout, kh, kw, cin]; Dense: weight [cout, cin]
  // Conv, MaxPool: the output's height and width for an input of `in` rows or columns.
  int64_t out_h(int64_t in) const { return same ? (in + sh - 1) / sh : (in + pad[0] + pad[2] - kh) / sh + 1; }
  int64_t out_w(int64_t in) const { return same ? (in + sw - 1) / sw : (in + pad[3] + pad[1] - kw) / sw + 1; }
};

struct Graph {
  int input_h = 224, input_w = 224, input_c = 3;
  std::vector<Op> ops;
  std::string features;  // value holding the pooled features (output of GlobalAvgPool)
  std::string logits;    // value holding the classifier logits (Dense after the pool), may be empty
  int feature_dim = 0;
  int num_logits = 0;

  std::string to_json() const;
  static Graph from_json(const std::string& text);  // validates; throws petal::Error
  // Throws petal::Error unless the graph is one the backbone can build: inputs defined before
  // use, sane kernel/stride/padding, matching channels and shapes, features/logits consistent.
  void validate() const;
  // Parameter count of the ops (weights + biases).
  size_t param_count() const;
};

}  // namespace petal
