#include "graph.h"

#include <map>
#include <nlohmann/json.hpp>

#include "error.h"

namespace petal {
using nlohmann::json;

static const char* kind_name(Op::Kind k) {
  switch (k) {
    case Op::Conv: return "conv";
    case Op::MaxPool: return "maxpool";
    case Op::Add: return "add";
    case Op::GlobalAvgPool: return "gap";
    case Op::Dense: return "dense";
  }
  return "?";
}

std::string Graph::to_json() const {
  json j;
  j["input"] = {input_h, input_w, input_c};
  j["features"] = features;
  j["logits"] = logits;
  j["feature_dim"] = feature_dim;
  j["num_logits"] = num_logits;
  json ops_j = json::array();
  for (const Op& op : ops) {
    json o = {{"op", kind_name(op.kind)}, {"name", op.name}, {"in", op.inputs}};
    if (op.kind == Op::Conv || op.kind == Op::MaxPool) {
      o["k"] = {op.kh, op.kw};
      o["s"] = {op.sh, op.sw};
      if (op.same) o["same"] = true;
      else o["pad"] = op.pad;
    }
    if (op.kind == Op::Conv || op.kind == Op::Dense) {
      o["cin"] = op.cin;
      o["cout"] = op.cout;
    }
    if (op.relu) o["relu"] = true;
    ops_j.push_back(o);
  }
  j["ops"] = ops_j;
  return j.dump();
}

Graph Graph::from_json(const std::string& text) {
  Graph g;
  try {
    json j = json::parse(text);
    g.input_h = j.at("input").at(0);
    g.input_w = j.at("input").at(1);
    g.input_c = j.at("input").at(2);
    g.features = j.at("features");
    g.logits = j.value("logits", "");
    g.feature_dim = j.at("feature_dim");
    g.num_logits = j.value("num_logits", 0);
    static const std::map<std::string, Op::Kind> kinds = {
        {"conv", Op::Conv}, {"maxpool", Op::MaxPool}, {"add", Op::Add}, {"gap", Op::GlobalAvgPool}, {"dense", Op::Dense}};
    for (auto& o : j.at("ops")) {
      Op op;
      auto k = kinds.find(o.at("op").get<std::string>());
      if (k == kinds.end()) throw Error("unknown op '" + o.at("op").get<std::string>() + "'");
      op.kind = k->second;
      op.name = o.at("name");
      op.inputs = o.at("in").get<std::vector<std::string>>();
      if (o.contains("k")) { op.kh = o["k"][0]; op.kw = o["k"][1]; }
      if (o.contains("s")) { op.sh = o["s"][0]; op.sw = o["s"][1]; }
      if (o.contains("pad")) op.pad = o["pad"].get<std::array<int, 4>>();
      op.same = o.value("same", false);
      op.relu = o.value("relu", false);
      op.cin = o.value("cin", 0);
      op.cout = o.value("cout", 0);
      g.ops.push_back(op);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(std::string("the model bundle's graph description is invalid (") + e.what() + ")");
  }
  if (g.input_h < 32 || g.input_h > 1024 || g.input_w < 32 || g.input_w > 1024 || g.input_c != 3)
    throw Error("the model bundle's input size is invalid");
  return g;
}

size_t Graph::param_count() const {
  size_t n = 0;
  for (const Op& op : ops) {
    if (op.kind == Op::Conv) n += size_t(op.cout) * op.kh * op.kw * op.cin + op.cout;
    if (op.kind == Op::Dense) n += size_t(op.cout) * op.cin + op.cout;
  }
  return n;
}

}  // namespace petal
