// petal summary MODEL: layers, output shapes and parameter counts (like Keras's model.summary()).
#include <array>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "common.h"
#include "engine.h"
#include "feature_cache.h"
#include "graph.h"
#include "head.h"

namespace petal::cli {
using nlohmann::json;

namespace {

struct Row {
  std::string name, type, shape;
  size_t params = 0;
};

// One row per layer of the backbone's graph at the input size of `prep` (the ImageNet classifier
// is not one: its parameters go to fc_params), with the parameter and convolution channel counts.
std::vector<Row> layer_rows(const Graph& g, const Preprocessing& prep, size_t& backbone_params, size_t& fc_params, size_t& conv_channels) {
  std::map<std::string, std::array<int, 3>> shapes;  // h, w, c
  shapes["input"] = {prep.size, prep.size, 3};
  std::vector<Row> backbone_rows;
  auto out_size = [](int in, int k, int s, int a, int bb, bool same) { return same ? (in + s - 1) / s : (in + a + bb - k) / s + 1; };
  for (const Op& op : g.ops) {
    const auto in = shapes.at(op.inputs.at(0));
    std::array<int, 3> o = in;
    Row r;
    r.name = op.name;
    switch (op.kind) {
      case Op::Conv:
        o = {out_size(in[0], op.kh, op.sh, op.pad[0], op.pad[2], op.same), out_size(in[1], op.kw, op.sw, op.pad[3], op.pad[1], op.same), op.cout};
        r.params = size_t(op.cout) * op.kh * op.kw * op.cin + op.cout;
        r.type = "Conv2D " + std::to_string(op.kh) + "x" + std::to_string(op.kw) + (op.sh > 1 ? "/" + std::to_string(op.sh) : "") + "+BN" + (op.relu ? "+ReLU" : "");
        conv_channels += size_t(op.cout);
        break;
      case Op::MaxPool:
        o = {out_size(in[0], op.kh, op.sh, op.pad[0], op.pad[2], op.same), out_size(in[1], op.kw, op.sw, op.pad[3], op.pad[1], op.same), in[2]};
        r.type = "MaxPooling2D";
        break;
      case Op::Add: r.type = op.relu ? "Add+ReLU" : "Add"; break;
      case Op::GlobalAvgPool: o = {1, 1, in[2]}; r.type = "GlobalAveragePooling2D"; break;
      case Op::Dense:
        o = {1, 1, op.cout};
        r.params = size_t(op.cout) * op.cin + op.cout;
        r.type = "Dense";
        break;
    }
    shapes[op.name] = o;
    r.shape = o[0] == 1 && o[1] == 1 && (op.kind == Op::GlobalAvgPool || op.kind == Op::Dense)
                  ? "(None, " + std::to_string(o[2]) + ")"
                  : "(None, " + std::to_string(o[0]) + ", " + std::to_string(o[1]) + ", " + std::to_string(o[2]) + ")";
    if (op.name == g.logits) fc_params = r.params;
    else {
      backbone_params += r.params;
      backbone_rows.push_back(r);
    }
  }
  return backbone_rows;
}

}  // namespace

void register_summary(CLI::App& app) {
  auto* cmd = app.add_subcommand("summary", "Layers of a model with output shapes and parameter counts (like Keras model.summary())");
  static std::string model;
  static bool layers = false, as_json = false;
  cmd->add_option("model", model, "model bundle (full, or head-only with the default backbone)")->required();
  cmd->add_flag("--layers", layers, "list every backbone layer, not just the backbone as one row");
  cmd->add_flag("--json", as_json, "print one JSON document");
  cmd->callback([] {
    Bundle b = load_model(model);
    const Graph g = Graph::from_json(b.meta("graph"));
    Preprocessing prep = preprocessing_of(b);
    size_t backbone_params = 0, fc_params = 0, conv_channels = 0;
    const std::vector<Row> backbone_rows = layer_rows(g, prep, backbone_params, fc_params, conv_channels);
    std::vector<Row> rows;
    if (layers) rows = backbone_rows;
    else rows.push_back({b.metadata.count("architecture") ? b.meta("architecture") : "backbone", "frozen backbone",
                         "(None, " + std::to_string(g.feature_dim) + ")", backbone_params});
    size_t trainable = 0;
    std::vector<std::string> names;
    if (b.has("head.dense1.weight")) {
      Head h = Head::load(b);
      names = parse_class_names(b.meta("class_names"));
      rows.push_back({"dense", "Dense+ReLU (trainable)", "(None, " + std::to_string(h.hidden()) + ")", size_t(h.hidden()) * h.in() + h.hidden()});
      rows.push_back({"dense_1", "Dense+softmax (trainable)", "(None, " + std::to_string(h.classes()) + ")", size_t(h.classes()) * h.hidden() + h.classes()});
      trainable = h.param_count();
    }
    const size_t total = backbone_params + trainable;
    if (as_json) {
      json a = json::array();
      for (auto& r : rows) a.push_back({{"name", r.name}, {"type", r.type}, {"output_shape", r.shape}, {"params", r.params}});
      json j = {{"model", model}, {"input", {prep.size, prep.size, 3}}, {"preprocessing", prep.mode}, {"layers", a},
                {"total_params", total}, {"trainable_params", trainable}, {"non_trainable_params", backbone_params},
                {"imagenet_classifier_params", fc_params}, {"class_names", names}};
      std::printf("%s\n", j.dump(1).c_str());
      return;
    }
    auto commas = [](size_t v) {
      std::string s = std::to_string(v);
      for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
      return s;
    };
    std::printf("Model: \"%s\"  input (None, %d, %d, 3), %s preprocessing\n", model.c_str(), prep.size, prep.size, prep.mode.c_str());
    const std::string rule(88, '_'), rule2(88, '=');
    std::printf("%s\n%-30s %-26s %-20s %10s\n%s\n", rule.c_str(), "Layer", "Type", "Output Shape", "Param #", rule2.c_str());
    for (auto& r : rows) std::printf("%-30s %-26s %-20s %10s\n", r.name.c_str(), r.type.c_str(), r.shape.c_str(), commas(r.params).c_str());
    std::printf("%s\nTotal params: %s\nTrainable params: %s\nNon-trainable params: %s\n%s\n", rule2.c_str(), commas(total).c_str(),
                commas(trainable).c_str(), commas(backbone_params).c_str(), rule.c_str());
    if (!names.empty()) {
      std::printf("Classes (%zu):", names.size());
      for (auto& n : names) std::printf(" %s", n.c_str());
      std::printf("\n");
    } else {
      std::printf("No classifier head yet (train one with petal train).\n");
    }
    if (fc_params) std::printf("The bundle also holds the ImageNet classifier (fc1000, %s params), which is not part of this model.\n", commas(fc_params).c_str());
    std::printf("BatchNormalization is folded into the convolutions: Keras's model.summary() counts 4 more values per\n"
                "channel (%s here, 2 of them trainable) for the same network.\n", commas(4 * conv_channels).c_str());
  });
}

}  // namespace petal::cli
