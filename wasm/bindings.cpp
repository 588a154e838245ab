// The Embind surface: the only way JavaScript talks to the engine. Thin: it converts typed
// arrays and plain objects, calls petal::Engine, and turns every C++ error into a JS Error
// carrying the message.
#include <emscripten/bind.h>
#include <emscripten/emscripten.h>
#include <emscripten/val.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backbone.h"
#include "bundle.h"
#include "engine.h"
#include "error.h"
#include "image.h"
#include "petal_limits.h"
#include "teach.h"

using emscripten::val;
using namespace petal;

namespace {

[[noreturn]] void throw_js(const std::string& msg) {
  val err = val::global("Error").new_(val(msg));
  err.set("name", val("PetalError"));
  err.throw_();
  __builtin_unreachable();
}

// Run `fn`, converting C++ exceptions into JS exceptions after the C++ frames are gone.
template <class F>
auto guarded(F&& fn) -> decltype(fn()) {
  std::string msg;
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    msg = kOutOfMemoryMessage;
  } catch (const std::exception& e) {
    msg = e.what();
  }
  throw_js(msg);
}

std::vector<uint8_t> bytes_of(const val& u8) { return emscripten::convertJSArrayToNumberVector<uint8_t>(u8); }

template <class T>
val typed_copy(const std::vector<T>& v, const char* ctor) {
  val out = val::global(ctor).new_(v.size());
  out.call<void>("set", val(emscripten::typed_memory_view(v.size(), v.data())));
  return out;
}

// An RGB image as the browser's ImageData takes it: {width, height, rgba: Uint8Array}.
val rgba_js(const Image& t) {
  std::vector<uint8_t> rgba(size_t(t.width) * t.height * 4);
  for (size_t i = 0, n = size_t(t.width) * t.height; i < n; ++i) {
    rgba[4 * i] = t.rgb[3 * i];
    rgba[4 * i + 1] = t.rgb[3 * i + 1];
    rgba[4 * i + 2] = t.rgb[3 * i + 2];
    rgba[4 * i + 3] = 255;
  }
  val o = val::object();
  o.set("width", t.width);
  o.set("height", t.height);
  o.set("rgba", typed_copy(rgba, "Uint8Array"));
  return o;
}

val predictions_js(const std::vector<Prediction>& ps) {
  val arr = val::array();
  for (auto& p : ps) {
    val o = val::object();
    o.set("index", p.index);
    o.set("label", p.label);
    o.set("probability", p.probability);
    arr.call<void>("push", o);
  }
  return arr;
}

std::vector<std::string> strings_of(const val& arr) {
  std::vector<std::string> r;
  const unsigned n = arr["length"].as<unsigned>();
  for (unsigned i = 0; i < n; ++i) r.push_back(arr[i].as<std::string>());
  return r;
}

class JsEngine {
 public:
  JsEngine(val bundle_bytes, int threads) : JsEngine(bundle_bytes, threads, false) {}
  // int8: run the convolutions in int8 (as if the bundle carried `petal quantize`'s marker).
  JsEngine(val bundle_bytes, int threads, bool int8) {
    guarded([&] {
      Bundle bundle;
      const double t0 = emscripten_get_now();
      {
        // (not a std::vector, which would zero its 50 MB before they are overwritten; freed
        // before the engine packs its weights)
        const size_t n = bundle_bytes["length"].as<size_t>();
        std::unique_ptr<uint8_t[]> bytes(new uint8_t[n]);
        val(emscripten::typed_memory_view(n, bytes.get())).call<void>("set", bundle_bytes);
        copy_ms_ = emscripten_get_now() - t0;
        bundle = read_bundle(bytes.get(), n, "the model file");
      }
      if (int8) mark_int8(bundle);
      int8_ = bundle.has(kInt8Marker);
      const double t1 = emscripten_get_now();
      parse_ms_ = t1 - t0 - copy_ms_;
      engine_ = std::make_unique<Engine>(std::move(bundle), size_t(threads));
      build_ms_ = emscripten_get_now() - t1;
      return 0;
    });
  }

  // Where the constructor's time went (ms): {copyMs: the file into the engine's memory, parseMs:
  // its tensors read (fp16 to fp32), buildMs: the engine built (XNNPACK packs the weights)}.
  val loadTimings() const {
    val o = val::object();
    o.set("copyMs", std::round(copy_ms_));
    o.set("parseMs", std::round(parse_ms_));
    o.set("buildMs", std::round(build_ms_));
    return o;
  }

  int threads() const { return int(engine_->threads()); }
  bool int8() const { return int8_; }
  int featureDim() const { return engine_->feature_dim(); }
  int inputSize() const { return engine_->input_size(); }
  bool hasHead() const { return engine_->has_head(); }
  val classNames() const {
    val arr = val::array();
    for (auto& n : engine_->class_names()) arr.call<void>("push", n);
    return arr;
  }

  // One backbone pass: {features: Float32Array, predictions: [...], imagenet: [...], thumb, ms}.
  // thumb (when thumb_side > 0): the photo at most thumb_side pixels on its longest side, from the
  // same decode, {width, height, rgba: Uint8Array}. ms = {decode: decoded, resized and preprocessed
  // (Engine::features_of_bytes's first step) and the thumbnail drawn, backbone: the network, then
  // the head}, for the page's profile of a drop.
  val analyze(val image_bytes, int k, int thumb_side) {
    return guarded([&] {
      auto bytes = bytes_of(image_bytes);
      const Graph& g = engine_->graph();
      const double t0 = emscripten_get_now();
      const Image rgb = decode_image(bytes.data(), bytes.size());
      auto input = image_to_input(rgb, g.input_h, g.input_w);
      val out = val::object();
      if (thumb_side > 0) out.set("thumb", rgba_js(thumbnail(rgb, thumb_side)));
      const double t1 = emscripten_get_now();
      std::vector<float> logits;
      auto f = engine_->features_of_inputs(input.data(), 1, &logits);
      out.set("features", typed_copy(f, "Float32Array"));
      if (engine_->has_head()) out.set("predictions", predictions_js(engine_->classify_features(f.data(), k)));
      if (!logits.empty()) out.set("imagenet", predictions_js(engine_->imagenet_top(logits.data(), k)));
      val ms = val::object();
      ms.set("decode", t1 - t0);
      ms.set("backbone", emscripten_get_now() - t1);
      out.set("ms", ms);
      return out;
    });
  }

  val features(val image_bytes, bool flip) {
    return guarded([&] {
      auto bytes = bytes_of(image_bytes);
      return typed_copy(engine_->features_of_bytes(bytes.data(), bytes.size(), flip), "Float32Array");
    });
  }

  // Features of a batch of preprocessed inputs (n × H × W × 3 floats), for benchmarks.
  val featuresOfInputs(val inputs, int n) {
    return guarded([&] {
      auto v = emscripten::convertJSArrayToNumberVector<float>(inputs);
      const size_t per = size_t(inputSize()) * inputSize() * 3;
      if (n < 1 || v.size() != per * size_t(n)) throw Error("inputs must hold n × size × size × 3 floats");
      return typed_copy(engine_->features_of_inputs(v.data(), size_t(n)), "Float32Array");
    });
  }

  // Where the model looks for its top class (Engine::explain_bytes, wasm/heatmap.h):
  // {width, height, values: Float32Array (row-major, 0..1), peakX, peakY (fractions of the photo),
  // cls, label, probability}.
  val heatmap(val image_bytes) {
    return guarded([&] {
      auto bytes = bytes_of(image_bytes);
      Explained e = engine_->explain_bytes(bytes.data(), bytes.size(), 1);
      val out = val::object();
      out.set("width", e.heatmap.width);
      out.set("height", e.heatmap.height);
      out.set("values", typed_copy(e.heatmap.values, "Float32Array"));
      out.set("peakX", e.heatmap.peak_x());
      out.set("peakY", e.heatmap.peak_y());
      out.set("cls", e.heatmap.cls);
      out.set("label", e.top[0].label);
      out.set("probability", e.top[0].probability);
      return out;
    });
  }

  val classify(val image_bytes, int k) {
    return guarded([&] {
      auto bytes = bytes_of(image_bytes);
      auto f = engine_->features_of_bytes(bytes.data(), bytes.size());
      return predictions_js(engine_->classify_features(f.data(), k));
    });
  }

  val classifyFeatures(val features, int k) {
    return guarded([&] {
      auto f = emscripten::convertJSArrayToNumberVector<float>(features);
      if (f.size() != size_t(featureDim())) throw Error("expected " + std::to_string(featureDim()) + " features");
      return predictions_js(engine_->classify_features(f.data(), k));
    });
  }

  // Teach the model the user's labelled photos (wasm/teach.h: every rule lives there).
  // features: Float32Array (n × dim); labels: [class name per row]; options: overrides of
  // TeachOptions ({seed, epochs, estimateFolds}); onEpoch(stats) may return false to stop;
  // onProgress(done, total). Returns {classNames, history, estimates, bankRows, userRows, stopped}.
  val teach(val features, val labels, val options, val on_epoch, val on_progress) {
    return guarded([&] {
      auto f = emscripten::convertJSArrayToNumberVector<float>(features);
      auto names = strings_of(labels);
      const size_t dim = size_t(featureDim());
      if (f.size() != names.size() * dim) throw Error("features and labels disagree in count");
      TeachOptions opt;
      auto num = [&](const char* key, double dflt) {
        val v = options.isUndefined() || options.isNull() ? val::undefined() : options[key];
        return v.isUndefined() || v.isNull() ? dflt : v.as<double>();
      };
      opt.seed = uint64_t(num("seed", double(opt.seed)));
      opt.epochs = int(num("epochs", opt.epochs));
      opt.estimate_folds = int(num("estimateFolds", opt.estimate_folds));
      const Lesson lesson{f.data(), nullptr, &names, names.size(), dim};
      val history = val::array();
      auto r = engine_->teach(lesson, opt, [&](const EpochStats& s) {
        val o = val::object();
        o.set("epoch", s.epoch);
        o.set("epochs", opt.epochs);
        o.set("loss", s.loss);
        o.set("accuracy", s.accuracy);
        o.set("seconds", s.seconds);
        history.call<void>("push", o);
        if (on_epoch.isUndefined() || on_epoch.isNull()) return true;
        return !on_epoch(o).isFalse();
      }, [&](size_t done, size_t total) {
        if (!on_progress.isUndefined() && !on_progress.isNull()) on_progress(double(done), double(total));
      });
      val estimates = val::array();
      for (auto& e : r.estimates) {
        val o = val::object();
        o.set("name", e.name);
        o.set("isNew", e.is_new);
        o.set("photos", e.photos);
        o.set("tested", e.tested);
        o.set("recall", e.recall);
        o.set("low", e.low);
        o.set("high", e.high);
        o.set("weak", estimate_is_weak(e));
        o.set("confusedWith", e.confused_with);
        o.set("confusedCount", e.confused_count);
        o.set("hint", estimate_hint(e));
        estimates.call<void>("push", o);
      }
      val out = val::object();
      out.set("classNames", classNames());
      out.set("history", history);
      out.set("estimates", estimates);
      out.set("bankRows", double(r.bank_rows));
      out.set("userRows", double(r.user_rows));
      out.set("stopped", r.stopped);
      return out;
    });
  }

  // The current model as bundle bytes (head + class names + bank; with the backbone when
  // `withBackbone`); fp16 weights when `fp16`.
  val exportBundle(bool with_backbone, bool fp16) {
    return guarded([&] {
      auto bytes = write_bundle(engine_->to_bundle(with_backbone), fp16 ? DType::F16 : DType::F32);
      return typed_copy(bytes, "Uint8Array");
    });
  }

  // The whole classifier as an ONNX model (Engine::to_onnx): Uint8Array.
  val exportOnnx() {
    return guarded([&] {
      const std::string bytes = engine_->to_onnx();
      val out = val::global("Uint8Array").new_(bytes.size());
      out.call<void>("set", val(emscripten::typed_memory_view(bytes.size(), reinterpret_cast<const uint8_t*>(bytes.data()))));
      return out;
    });
  }

  // Load the head and class names (and bank, if any) from a bundle (head-only or full); the
  // engine checks it fits (Engine::import_head).
  void importHead(val bundle_bytes) {
    guarded([&] {
      auto bytes = bytes_of(bundle_bytes);
      engine_->import_head(read_bundle(bytes.data(), bytes.size(), "the imported model"));
      return 0;
    });
  }

  int bankRows() const { return int(engine_->bank_labels().size()); }

  val bankFeatures() const { return typed_copy(engine_->bank_features(), "Float32Array"); }
  val bankLabels() const { return typed_copy(engine_->bank_labels(), "Int32Array"); }

 private:
  std::unique_ptr<Engine> engine_;
  bool int8_ = false;
  double copy_ms_ = 0, parse_ms_ = 0, build_ms_ = 0;
};

// {format, width, height} from the header, or a JS Error saying why the file cannot be used.
val probeImage(val image_bytes) {
  return guarded([&] {
    auto bytes = bytes_of(image_bytes);
    ImageInfo info = probe_image(bytes.data(), bytes.size());
    val o = val::object();
    o.set("format", info.format);
    o.set("width", info.width);
    o.set("height", info.height);
    return o;
  });
}

// "" or what is wrong with a new class name beside the model's and the page's classes
// (class_name_problem, wasm/engine.h: the rule's one home).
std::string classNameProblem(std::string name, val others) { return class_name_problem(name, strings_of(others)); }

// "" or what is wrong with an image file of `bytes` bytes (limits::image_bytes_problem), asked by
// the page before it reads a photo.
std::string imageBytesProblem(double bytes) { return limits::image_bytes_problem(bytes > 0 ? uint64_t(bytes) : 0); }

// The engine's input for one photo, as the backbone (and an exported ONNX model) takes it:
// decoded, resized to height × width, caffe-preprocessed; Float32Array of height × width × 3 (NHWC).
val inputOf(val image_bytes, int height, int width) {
  return guarded([&] {
    if (const std::string p = limits::input_size_problem(height, width); !p.empty()) throw Error("the input size " + p);
    auto bytes = bytes_of(image_bytes);
    return typed_copy(image_to_input(bytes.data(), bytes.size(), height, width), "Float32Array");
  });
}

bool threadsBuild() {
#ifdef __EMSCRIPTEN_PTHREADS__
  return true;
#else
  return false;
#endif
}

}  // namespace

// The named limits (wasm/petal_limits.h), so that the page and tests read them from the engine.
val limits_js() {
  val o = val::object();
  o.set("maxImagePixels", double(petal::limits::kMaxImagePixels));
  o.set("maxImageBytes", double(petal::limits::kMaxImageBytes));
  o.set("maxImageSide", double(petal::limits::kMaxImageSide));
  o.set("minInputSide", double(petal::limits::kMinInputSide));
  o.set("maxInputSide", double(petal::limits::kMaxInputSide));
  o.set("maxClasses", double(petal::limits::kMaxClasses));
  o.set("maxClassNameBytes", double(petal::limits::kMaxClassNameBytes));
  o.set("maxTrainExamples", double(petal::limits::kMaxTrainExamples));
  o.set("maxWasmMemoryBytes", double(petal::limits::kMaxWasmMemoryBytes));
  return o;
}

EMSCRIPTEN_BINDINGS(petal) {
  emscripten::class_<JsEngine>("Engine")
      .constructor<val, int>()
      .constructor<val, int, bool>()
      .function("loadTimings", &JsEngine::loadTimings)
      .function("threads", &JsEngine::threads)
      .function("int8", &JsEngine::int8)
      .function("featureDim", &JsEngine::featureDim)
      .function("inputSize", &JsEngine::inputSize)
      .function("hasHead", &JsEngine::hasHead)
      .function("classNames", &JsEngine::classNames)
      .function("analyze", &JsEngine::analyze)
      .function("features", &JsEngine::features)
      .function("featuresOfInputs", &JsEngine::featuresOfInputs)
      .function("classify", &JsEngine::classify)
      .function("heatmap", &JsEngine::heatmap)
      .function("classifyFeatures", &JsEngine::classifyFeatures)
      .function("teach", &JsEngine::teach)
      .function("exportBundle", &JsEngine::exportBundle)
      .function("importHead", &JsEngine::importHead)
      .function("exportOnnx", &JsEngine::exportOnnx)
      .function("bankFeatures", &JsEngine::bankFeatures)
      .function("bankLabels", &JsEngine::bankLabels)
      .function("bankRows", &JsEngine::bankRows);
  emscripten::function("probeImage", &probeImage);
  emscripten::function("classNameProblem", &classNameProblem);
  emscripten::function("imageBytesProblem", &imageBytesProblem);
  emscripten::function("inputOf", &inputOf);
  emscripten::function("threadsBuild", &threadsBuild);
  emscripten::function("limits", &limits_js);
}
