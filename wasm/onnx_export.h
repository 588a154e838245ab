// Write a Petal model as an ONNX model (protobuf encoded by hand: the few messages ONNX needs).
// The graph takes the same input as the engine: batch × H × W × 3 preprocessed pixels (NHWC,
// caffe preprocessing), transposed to NCHW inside the model; the batch dimension is symbolic.
// Outputs: "features" (batch × feature_dim, the pooled features) and, for the backbone,
// "logits" (batch × 1000 ImageNet logits, when the graph has its classifier); with a trained
// head, "probabilities" (batch × classes, softmax) instead of the logits.
// Weights the bundle stores as fp16 (the page's model) are written as fp16, exactly, and cast to
// fp32 inside the model: half the file, the same numbers. The model is built in one buffer of
// about its final size (no second copy of the weights), for the page's limited memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "bundle.h"
#include "graph.h"

namespace petal {

struct OnnxOptions {
  bool head = true;         // include the classifier head when the bundle has one
  bool logits = true;       // include the ImageNet classifier when there is no head (or head = false)
  int64_t opset = 17;       // default-domain opset written in the model
  bool keep_fp16 = true;    // weights stored as fp16 stay fp16 in the file (exact), cast to fp32 in the graph
  std::string producer_version = "0.1.0";
};

// What was written, for messages.
struct OnnxSummary {
  std::vector<std::string> outputs;
  size_t nodes = 0, initializers = 0, parameters = 0;
};

// Serialise `graph` with the weights in `bundle` (backbone `<op>.weight/.bias`, head
// `head.dense{1,2}.{weight,bias}`, class names in metadata). Throws petal::Error when a weight
// is missing or misshapen.
std::string export_onnx(const Graph& graph, const Bundle& bundle, const OnnxOptions& options = {},
                        OnnxSummary* summary = nullptr);

}  // namespace petal
