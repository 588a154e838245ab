#include "graph.h"

#include <climits>
#include <map>
#include <nlohmann/json.hpp>

#include "error.h"
#include "petal_limits.h"

namespace petal {
using nlohmann::json;

// Integers from a bundle's graph JSON (nlohmann's plain cast is undefined for out-of-range floats).
static int as_int(const json& v) {
  if (!v.is_number_integer()) throw Error("the model bundle's graph description has '" + v.dump().substr(0, 40) + "' where a whole number belongs");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT_MAX) : (v.get<int64_t>() < INT_MIN || v.get<int64_t>() > INT_MAX))
    throw Error("the model bundle's graph description has the out-of-range number " + v.dump());
  return int(v.get<int64_t>());
}

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
    g.input_h = as_int(j.at("input").at(0));
    g.input_w = as_int(j.at("input").at(1));
    g.input_c = as_int(j.at("input").at(2));
    g.features = j.at("features");
    g.logits = j.value("logits", "");
    g.feature_dim = as_int(j.at("feature_dim"));
    g.num_logits = as_int(j.value("num_logits", json(0)));
    static const std::map<std::string, Op::Kind> kinds = {
        {"conv", Op::Conv}, {"maxpool", Op::MaxPool}, {"add", Op::Add}, {"gap", Op::GlobalAvgPool}, {"dense", Op::Dense}};
    for (auto& o : j.at("ops")) {
      Op op;
      auto k = kinds.find(o.at("op").get<std::string>());
      if (k == kinds.end()) throw Error("unknown op '" + o.at("op").get<std::string>() + "'");
      op.kind = k->second;
      op.name = o.at("name");
      op.inputs = o.at("in").get<std::vector<std::string>>();
      if (o.contains("k")) { op.kh = as_int(o["k"].at(0)); op.kw = as_int(o["k"].at(1)); }
      if (o.contains("s")) { op.sh = as_int(o["s"].at(0)); op.sw = as_int(o["s"].at(1)); }
      if (o.contains("pad"))
        for (int i = 0; i < 4; ++i) op.pad[size_t(i)] = as_int(o["pad"].at(size_t(i)));
      op.same = o.value("same", false);
      op.relu = o.value("relu", false);
      op.cin = as_int(o.value("cin", json(0)));
      op.cout = as_int(o.value("cout", json(0)));
      g.ops.push_back(op);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(std::string("the model bundle's graph description is invalid (") + e.what() + ")");
  }
  g.validate();
  return g;
}

void Graph::validate() const {
  if (const std::string p = limits::input_size_problem(input_h, input_w); !p.empty()) throw Error("the model's input size " + p);
  if (input_c != 3) throw Error("the model's input has " + std::to_string(input_c) + " channels; Petal runs 3 (RGB)");
  if (ops.empty()) throw Error("the model's graph has no operations");
  struct Shape { int64_t h, w, c; bool vec; };
  std::map<std::string, Shape> vals{{"input", {input_h, input_w, input_c, false}}};
  constexpr int64_t kMaxValue = int64_t(1) << 26;  // floats in one intermediate tensor (256 MB)
  auto bad = [](const Op& op, const std::string& why) { return Error("the model's layer '" + op.name + "' " + why); };
  for (const Op& op : ops) {
    if (op.name.empty() || vals.count(op.name)) throw bad(op, "has an empty or repeated name");
    const size_t arity = op.kind == Op::Add ? 2 : 1;
    if (op.inputs.size() != arity) throw bad(op, "has " + std::to_string(op.inputs.size()) + " inputs");
    for (auto& in : op.inputs)
      if (!vals.count(in)) throw bad(op, "reads '" + in + "', which is not defined before it");
    const Shape in = vals.at(op.inputs[0]);
    Shape out = in;
    switch (op.kind) {
      case Op::Conv:
      case Op::MaxPool: {
        if (in.vec) throw bad(op, "needs an image-shaped input");
        if (op.kh < 1 || op.kw < 1 || op.sh < 1 || op.sw < 1 || op.kh > 64 || op.kw > 64 || op.sh > 64 || op.sw > 64)
          throw bad(op, "has an invalid kernel size or stride");
        for (int p : op.pad)
          if (p < 0 || p > 64) throw bad(op, "has an invalid padding");
        out.h = op.out_h(in.h);
        out.w = op.out_w(in.w);
        if (out.h < 1 || out.w < 1) throw bad(op, "gets an input smaller than its kernel");
        if (op.kind == Op::Conv) {
          if (op.cin != in.c) throw bad(op, "expects " + std::to_string(op.cin) + " channels but gets " + std::to_string(in.c));
          if (op.cout < 1 || op.cout > 65536) throw bad(op, "has an invalid number of filters");
          out.c = op.cout;
        }
        break;
      }
      case Op::Add: {
        const Shape in2 = vals.at(op.inputs[1]);
        if (in.vec || in2.vec || in.h != in2.h || in.w != in2.w || in.c != in2.c) throw bad(op, "adds tensors of different shapes");
        break;
      }
      case Op::GlobalAvgPool:
        if (in.vec) throw bad(op, "needs an image-shaped input");
        out = {1, 1, in.c, true};
        break;
      case Op::Dense:
        if (!in.vec) throw bad(op, "needs pooled features as its input");
        if (op.cin != in.c) throw bad(op, "expects " + std::to_string(op.cin) + " features but gets " + std::to_string(in.c));
        if (op.cout < 1 || op.cout > 65536) throw bad(op, "has an invalid number of outputs");
        out = {1, 1, op.cout, true};
        break;
    }
    if (out.h * out.w * out.c > kMaxValue) throw bad(op, "makes a tensor too large for Petal");
    vals[op.name] = out;
  }
  auto f = vals.find(features);
  const Op* fop = nullptr;
  for (const Op& op : ops) if (op.name == features) fop = &op;
  if (f == vals.end() || !fop || fop->kind != Op::GlobalAvgPool || f->second.c != feature_dim)
    throw Error("the model's graph does not say which global average pooling gives its features, or their width is wrong");
  if (logits.empty()) {
    if (num_logits != 0) throw Error("the model's graph has classifier outputs but no classifier");
  } else {
    const Op* lop = nullptr;
    for (const Op& op : ops) if (op.name == logits) lop = &op;
    if (!lop || lop->kind != Op::Dense || lop->cout != num_logits || lop->inputs[0] != features)
      throw Error("the model's graph names a classifier that is not a Dense layer on its features");
  }
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
