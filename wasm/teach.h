// Teaching: a trained model learns from a user's labelled photos — a new class from a handful of
// photos, more photos of a class it knows, corrections of its mistakes — without forgetting what
// it knew. Every rule of it lives here: the class order, how the user's few photos are weighed
// against the model's feature bank, where the new class's weights start, the training schedule,
// and the honest estimate of how well each class will do. The page (through Embind), `petal
// teach` and the few-shot benchmark (`petal fewshot`) all call teach(); model/TRAINING.md
// measures each choice.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "head.h"

namespace petal {

// The model before teaching: its head, its class names and its feature bank (training features of
// its classes, rows labelled by index into class_names).
struct TeachBase {
  const Head* head = nullptr;
  const std::vector<std::string>* class_names = nullptr;
  const float* bank_features = nullptr;
  const int32_t* bank_labels = nullptr;
  size_t bank_rows = 0;
};

// What the user labelled: one row of features per photo and its class name (a name the model does
// not know adds a class). `mirrored`, when given, holds each photo's mirror image's features.
struct Lesson {
  const float* features = nullptr;
  const float* mirrored = nullptr;
  const std::vector<std::string>* labels = nullptr;
  size_t n = 0, dim = 0;
};

struct TeachOptions {
  // A model with a head keeps it and learns residual units (teach.cpp): full-batch Adam steps,
  // reported as `epochs` equal parts.
  int epochs = 20;
  int steps = 200;
  float learning_rate = 1e-2f;
  float l2 = 0.f;              // weight penalty of a new class's unit
  float l2_known = 0.1f;       // ... and of a known class's (corrections must not overreach)
  // The model's scores are divided by this before a new class's unit joins them, at 10 photos of
  // it; by temperature·√(10/k) (at least 1) at k photos. The unit learns against them divided by
  // at least this.
  float temperature = 3.f;
  bool from_model = true;      // false: a new head from the bank and the photos (as the page did before)
  // A new head (a model without one, or from_model false): minibatch training like petal train.
  int batch_size = 32;
  float fresh_learning_rate = 1e-3f;
  float dropout = 0.5f;
  float label_smoothing = 0.1f;
  // A new class weighs about as much as a bank class: its photos are repeated up to this many
  // times (mirror images count as repeats).
  int max_repeat = 10;
  uint64_t seed = 7;
  // Honest estimate: k-fold over the user's photos (and the bank's rows), 0 for none.
  int estimate_folds = 5;
};

// How well a class is expected to do, measured on photos that were left out of its training.
struct ClassEstimate {
  std::string name;
  bool is_new = false;      // a class the model did not know before
  int photos = 0;           // the user's labelled photos of it
  int tested = 0;           // held-out photos (or bank rows) it was measured on
  double recall = -1;       // share of them given this class; -1 when none could be held out
  std::string confused_with;  // the class its misses went to most, if any
  int confused_count = 0;
  // Where the class's real recall likely lies, seen from so few held-out photos: a 90 % Wilson
  // interval around `recall` (10 photos, 9 right: 65–98 %); -1 with no recall.
  double low = -1, high = -1;
};

struct TeachResult {
  Head head;
  std::vector<std::string> class_names;
  std::vector<EpochStats> history;     // of the model's own training (not the estimate's folds)
  std::vector<ClassEstimate> estimates;  // one per class, in class order; empty without estimate
  size_t bank_rows = 0, user_rows = 0;   // training rows from the bank and from the user's photos
  bool stopped = false;                  // on_epoch asked to stop
};

// The class list after teaching: the model's classes in their order, then each new name in the
// order it first appears among the labels.
std::vector<std::string> taught_class_names(const std::vector<std::string>& known, const std::vector<std::string>& labels);

// Teach. `on_epoch` sees each epoch of the model's training and returns false to stop (no estimate
// is made then); `on_progress(done, total)` counts training steps including the estimate's.
TeachResult teach(const TeachBase& base, const Lesson& lesson, const TeachOptions& opt,
                  const std::function<bool(const EpochStats&)>& on_epoch = {},
                  const std::function<void(size_t, size_t)>& on_progress = {}, pthreadpool_t pool = nullptr);

// A class whose estimate is weak: it earns a hint and the page draws its bar as weak.
bool estimate_is_weak(const ClassEstimate& e);

// A plain-language hint for a class whose estimate is weak, unsure, or that has few photos ("" if none).
std::string estimate_hint(const ClassEstimate& e);

}  // namespace petal
