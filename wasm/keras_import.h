// Import a Keras functional model (the layer list of its config) into a Petal Graph plus folded
// fp32 weights. Used by the TF.js layers-model reader (model.json + shards) and the Keras HDF5
// weights reader. BatchNormalization is folded into the preceding convolution with the epsilon
// from its config; ZeroPadding2D and ReLU activations are folded into neighbouring ops.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "bundle.h"
#include "graph.h"

namespace petal {

// Looks up a Keras weight by "<layer>/<param>" (e.g. "conv1/kernel", "bn_conv1/moving_mean");
// returns nullptr when absent.
using WeightLookup = std::function<const Tensor*(const std::string&)>;

struct ImportedBackbone {
  Graph graph;
  std::map<std::string, Tensor> tensors;  // "<op>.weight", "<op>.bias"
};

// `layers_json`: the JSON array model_config.config.layers. Throws petal::Error naming the layer
// and what is unsupported or missing.
ImportedBackbone import_keras_layers(const std::string& layers_json, const WeightLookup& weights);

// TF.js layers model: model.json text and a reader for its shard files (by path as written in
// the manifest).
ImportedBackbone import_tfjs(const std::string& model_json,
                             const std::function<std::vector<uint8_t>(const std::string&)>& read_shard);

// Native: import from a folder holding model.json and its shards.
ImportedBackbone import_tfjs_dir(const std::string& dir);

// Keras HDF5 weights (resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5): the ResNet-50
// topology is generated (the file holds weights only), the weights read with libhdf5. Native only.
ImportedBackbone import_keras_h5(const std::string& path);
// The same from bytes in memory (the fuzz target's entry point); `what` names it in messages.
ImportedBackbone import_keras_h5_bytes(const uint8_t* data, size_t size, const std::string& what = "the HDF5 file");
// The generated topology: Keras ResNet-50 (keras-applications resnet50.py, serialised by Keras
// 2.2.4) as a model_config.config.layers JSON array, ending in avg_pool, or fc1000 with the top.
std::string resnet50_keras_layers(bool include_top);

// A backbone bundle (no head yet): graph, folded weights, ImageNet class names if given.
Bundle make_backbone_bundle(const ImportedBackbone& m, const std::vector<std::string>& imagenet_labels);

}  // namespace petal
