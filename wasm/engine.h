// The engine as users see it: a model bundle (backbone + optional head + class names + feature
// bank) turned into features and predictions for photos, and a head retrained on features.
// Both the CLI and the Embind surface are thin layers over this class.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backbone.h"
#include "bundle.h"
#include "head.h"
#include "heatmap.h"
#include "image.h"
#include "teach.h"

namespace petal {

struct Prediction {
  int index = 0;
  std::string label;
  float probability = 0;
};

// One photo classified and explained: its features, top classes, and where the model looked
// for the top class (or the class asked for).
struct Explained {
  std::vector<float> features;
  std::vector<Prediction> top;
  Heatmap heatmap;
};

// The bundle's graph at the input size the bundle asks for (metadata "input_size", e.g. a head
// trained at 288x288); throws petal::Error for a malformed one.
Graph bundle_graph(const Bundle& bundle);

class Engine {
 public:
  // Throws petal::Error for a bundle that is not a usable Petal model.
  explicit Engine(const Bundle& bundle, size_t threads = 0);
  // Takes the backbone's tensors out of `bundle` instead of copying them (100 MB for ResNet-50).
  explicit Engine(Bundle&& bundle, size_t threads = 0);

  const Graph& graph() const { return backbone_->graph(); }
  int input_size() const { return graph().input_h; }
  int feature_dim() const { return graph().feature_dim; }
  size_t threads() const { return backbone_->threads(); }
  pthreadpool_t pool() const { return backbone_->pool(); }

  // Features for a batch of preprocessed inputs (n × H × W × 3) → n × feature_dim.
  std::vector<float> features_of_inputs(const float* inputs, size_t n, std::vector<float>* logits = nullptr);
  // decode → resize → preprocess → backbone, for one encoded image.
  std::vector<float> features_of_bytes(const uint8_t* data, size_t size, bool flip = false,
                                       std::vector<float>* logits = nullptr);

  // Classify one photo and compute its heatmap (wasm/heatmap.h) for class `cls` (-1: the top
  // class). Costs the same backbone run as features_of_bytes; plain classification never pays for it.
  Explained explain_bytes(const uint8_t* data, size_t size, int k, int cls = -1);
  Explained explain_image(const Image& rgb, int k, int cls = -1);  // decoded photo, orientation applied

  // ImageNet top-k from logits (needs the backbone's 1000-class Dense).
  std::vector<Prediction> imagenet_top(const float* logits, int k) const;
  const std::vector<std::string>& imagenet_labels() const { return imagenet_labels_; }

  // The classifier head.
  bool has_head() const { return head_.classes() > 0; }
  const Head& head() const { return head_; }
  const std::vector<std::string>& class_names() const { return class_names_; }
  void set_head(Head head, std::vector<std::string> class_names);
  std::vector<Prediction> classify_features(const float* features, int k) const;  // top-k, sorted

  // Feature bank shipped in the bundle: examples of the default classes' training features.
  const std::vector<float>& bank_features() const { return bank_features_; }
  const std::vector<int32_t>& bank_labels() const { return bank_labels_; }
  void set_bank(std::vector<float> features, std::vector<int32_t> labels);

  // The current model as a bundle: backbone weights (optional), head, class names, bank.
  Bundle to_bundle(bool with_backbone) const;
  // The whole classifier as an ONNX model (wasm/onnx_export.h): backbone, head with its taught
  // units and class names, probabilities as output. The backbone's weights are lent to the
  // export for the while, not copied. Throws petal::Error when there is no head.
  std::string to_onnx();

  // Take the head, class names and bank of another bundle (head-only or full), after checking it
  // was made for this backbone: feature size, input size and preprocessing. A bundle without a
  // bank keeps the current bank's rows of the classes it also has. Throws petal::Error saying why.
  void import_head(const Bundle& bundle);

  // The model as teach() starts from it (wasm/teach.h): head, class names and bank.
  TeachBase teach_base() const;
  // Teach the current model the lesson (teach(), wasm/teach.h: every rule of teaching lives there)
  // and take its head and class names. The page's *Train* is this call. The result's head is
  // moved into the engine (head() has it); the rest of the result is as teach() gave it.
  TeachResult teach(const Lesson& lesson, const TeachOptions& opt,
                    const std::function<bool(const EpochStats&)>& on_epoch = {},
                    const std::function<void(size_t, size_t)>& on_progress = {});

 private:
  Bundle backbone_tensors_;  // backbone weights and metadata as loaded
  std::unique_ptr<Backbone> backbone_;
  std::vector<std::string> imagenet_labels_;
  Head head_;
  std::vector<std::string> class_names_;
  std::vector<float> bank_features_;
  std::vector<int32_t> bank_labels_;
  void load_head_and_bank(const Bundle& bundle);  // the checks shared by the constructor and import_head
};

// The class-name rule, its one home: a name is non-empty, at most kMaxClassNameBytes of UTF-8, and
// not one of `others` ignoring ASCII case. Returns "" or, for people, what is wrong. The page asks
// it (Embind classNameProblem) before it adds a class; the CLI, teach() and bundles go through
// validate_class_names (2..kMaxClasses names, each passing against the ones before it).
std::string class_name_problem(const std::string& name, const std::vector<std::string>& others);
void validate_class_names(const std::vector<std::string>& names);
std::vector<std::string> parse_class_names(const std::string& json_array);
std::string class_names_json(const std::vector<std::string>& names);

}  // namespace petal
