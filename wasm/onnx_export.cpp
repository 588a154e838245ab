#include "onnx_export.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "error.h"
#include "fp16.h"

namespace petal {

namespace {

// --- A protobuf encoder for the handful of message fields ONNX needs (proto2 wire format). ---
class Pb {
 public:
  void varint(uint32_t field, uint64_t v) {
    key(field, 0);
    raw_varint(v);
  }
  void bytes(uint32_t field, const void* data, size_t n) {
    open(field, n);
    buf_.append(static_cast<const char*>(data), n);
  }
  void str(uint32_t field, const std::string& s) { bytes(field, s.data(), s.size()); }
  void msg(uint32_t field, const Pb& m) { str(field, m.buf_); }
  void f32(uint32_t field, float v) {
    key(field, 5);
    uint32_t u;
    std::memcpy(&u, &v, 4);
    for (int i = 0; i < 4; ++i) buf_.push_back(char((u >> (8 * i)) & 0xff));
  }
  // A length-delimited field whose `n` bytes the caller appends next (append, grow).
  void open(uint32_t field, size_t n) {
    key(field, 2);
    raw_varint(n);
  }
  void append(const Pb& m) { buf_.append(m.buf_); }
  char* grow(size_t n) {  // n more bytes at the end, to be written through the pointer
    buf_.resize(buf_.size() + n);
    return buf_.data() + buf_.size() - n;
  }
  // A message field written in place (no copy of its content, which for a model's graph is the
  // whole model): begin() writes the key and room for the length, end() fills the length in and
  // closes the room it did not need.
  size_t begin(uint32_t field) {
    key(field, 2);
    buf_.append(kMaxVarint, '\0');
    return buf_.size();
  }
  void end(size_t start) {
    const uint64_t n = buf_.size() - start;
    char len[kMaxVarint];
    size_t k = 0;
    for (uint64_t v = n; ; v >>= 7) {
      len[k++] = char((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      if (v < 0x80) break;
    }
    std::memcpy(&buf_[start - kMaxVarint], len, k);
    buf_.erase(start - kMaxVarint + k, kMaxVarint - k);
  }
  void reserve(size_t n) { buf_.reserve(n); }
  void truncate(size_t n) { buf_.resize(n); }
  size_t size() const { return buf_.size(); }
  const std::string& data() const { return buf_; }
  std::string take() { return std::move(buf_); }

  static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) v >>= 7, ++n;
    return n;
  }
  static size_t field_size(uint32_t field, size_t n) {  // key, length and content of a length-delimited field
    return varint_size(uint64_t(field) << 3) + varint_size(n) + n;
  }

 private:
  static constexpr size_t kMaxVarint = 10;
  void key(uint32_t field, uint32_t wire) { raw_varint((uint64_t(field) << 3) | wire); }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(char((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(char(v));
  }
  std::string buf_;
};

// onnx.proto field numbers and enums used here.
namespace f {
// ModelProto
constexpr uint32_t kIrVersion = 1, kProducerName = 2, kProducerVersion = 3, kDocString = 6, kGraph = 7, kOpsetImport = 8,
                   kMetadataProps = 14;
// OperatorSetIdProto
constexpr uint32_t kOpsetDomain = 1, kOpsetVersion = 2;
// StringStringEntryProto
constexpr uint32_t kKey = 1, kValue = 2;
// GraphProto
constexpr uint32_t kNode = 1, kGraphName = 2, kInitializer = 5, kInput = 11, kOutput = 12;
// NodeProto
constexpr uint32_t kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kOpType = 4, kAttribute = 5;
// AttributeProto
constexpr uint32_t kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrInts = 8, kAttrType = 20;
constexpr uint64_t kAttrFloat = 1, kAttrInt = 2, kAttrIntsType = 7;
// TensorProto
constexpr uint32_t kDims = 1, kDataType = 2, kTensorName = 8, kRawData = 9;
constexpr uint64_t kFloat = 1, kFloat16 = 10;
// ValueInfoProto / TypeProto / TypeProto.Tensor / TensorShapeProto / Dimension
constexpr uint32_t kValueName = 1, kValueType = 2, kTensorType = 1, kElemType = 1, kShape = 2, kDim = 1, kDimValue = 1,
                   kDimParam = 2;
}  // namespace f

// Intermediate representation: nodes and initialisers, encoded at the end.
struct Attr {
  std::string name;
  enum { Int, Ints, Float } type = Int;
  int64_t i = 0;
  std::vector<int64_t> ints;
  float fl = 0;
};

struct Node {
  std::string op, name;
  std::vector<std::string> in, out;
  std::vector<Attr> attrs;
};

Attr a_int(const std::string& n, int64_t v) { return Attr{n, Attr::Int, v, {}, 0.f}; }
Attr a_ints(const std::string& n, std::vector<int64_t> v) { return Attr{n, Attr::Ints, 0, std::move(v), 0.f}; }
Attr a_float(const std::string& n, float v) { return Attr{n, Attr::Float, 0, {}, v}; }

Pb encode_node(const Node& n) {
  Pb p;
  for (auto& s : n.in) p.str(f::kNodeInput, s);
  for (auto& s : n.out) p.str(f::kNodeOutput, s);
  p.str(f::kNodeName, n.name);
  p.str(f::kOpType, n.op);
  for (auto& a : n.attrs) {
    Pb ap;
    ap.str(f::kAttrName, a.name);
    switch (a.type) {
      case Attr::Int:
        ap.varint(f::kAttrI, uint64_t(a.i));
        ap.varint(f::kAttrType, f::kAttrInt);
        break;
      case Attr::Ints:
        for (int64_t v : a.ints) ap.varint(f::kAttrInts, uint64_t(v));
        ap.varint(f::kAttrType, f::kAttrIntsType);
        break;
      case Attr::Float:
        ap.f32(f::kAttrF, a.fl);
        ap.varint(f::kAttrType, f::kAttrFloat);
        break;
    }
    p.msg(f::kAttribute, ap);
  }
  return p;
}

// dims: a number, or -1 for the symbolic batch dimension.
Pb encode_value_info(const std::string& name, const std::vector<int64_t>& dims) {
  Pb shape;
  for (int64_t d : dims) {
    Pb dim;
    if (d < 0) dim.str(f::kDimParam, "batch");
    else dim.varint(f::kDimValue, uint64_t(d));
    shape.msg(f::kDim, dim);
  }
  Pb tensor_type;
  tensor_type.varint(f::kElemType, f::kFloat);
  tensor_type.msg(f::kShape, shape);
  Pb type;
  type.msg(f::kTensorType, tensor_type);
  Pb vi;
  vi.str(f::kValueName, name);
  vi.msg(f::kValueType, type);
  return vi;
}

// An initializer written straight into `out` (the graph): no copy of the tensor on the way.
// With `fp16`, it is stored as half floats under the name `<name>/fp16` when every value is
// exactly a half float (else as float32, under `name`); returns whether it was.
bool write_tensor(Pb& out, uint32_t field, const std::string& name, const std::vector<int64_t>& dims, const float* data,
                  size_t n, bool fp16) {
  const size_t mark = out.size();
  Pb head;
  for (int64_t d : dims) head.varint(f::kDims, uint64_t(d));
  head.varint(f::kDataType, fp16 ? f::kFloat16 : f::kFloat);
  head.str(f::kTensorName, fp16 ? name + "/fp16" : name);
  const size_t nbytes = n * (fp16 ? 2 : 4);
  out.open(field, head.size() + Pb::field_size(f::kRawData, nbytes));
  out.append(head);
  out.open(f::kRawData, nbytes);
  // raw_data is little-endian; so is every platform Petal builds for (x86-64, wasm32).
  char* dst = out.grow(nbytes);
  if (!fp16) {
    std::memcpy(dst, data, nbytes);
    return false;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_half(data[i]);
    if (half_to_float(h) != data[i]) {  // not a half float after all: float32 instead
      out.truncate(mark);
      return write_tensor(out, field, name, dims, data, n, false);
    }
    dst[2 * i] = char(h & 0xff);
    dst[2 * i + 1] = char(h >> 8);
  }
  return true;
}

// The model, written in one buffer with the graph in place inside it: the model's own fields
// first (protobuf fields may come in any order), then the graph with the weights. Sized once from
// the bundle's tensors, so that a 100 MB model is never copied or regrown. The nodes are kept and
// encoded after the initialisers.
class OnnxWriter {
 public:
  OnnxWriter(const Graph& graph, const Bundle& bundle, const OnnxOptions& options)
      : graph_(graph), bundle_(bundle), options_(options), with_head_(options.head && bundle.has("head.dense1.weight")),
        with_logits_(!with_head_ && options.logits && !graph.logits.empty()) {}
  std::string write(OnnxSummary* summary);

 private:
  struct Shape {
    int h, w, c;
  };
  void model_fields();
  void backbone();
  Shape window(const Op& op, const Shape& is, const std::string& in0, const std::string& pre);
  void head();
  std::string residual_units(const std::string& logits, size_t classes, const std::vector<Attr>& gemm);
  void initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& data, const Tensor& like);
  // throws petal::Error naming the missing/misshapen tensor
  const Tensor& weight(const std::string& name, const std::vector<size_t>& shape) const { return bundle_.get(name, shape); }
  void add(Node n) {
    if (n.name.empty()) n.name = n.out.at(0);
    nodes_.push_back(std::move(n));
  }
  // Weights the bundle stores as fp16 stay fp16 (exactly the same values, half the bytes), cast
  // to fp32 inside the model.
  bool in_fp16(const Tensor& t) const { return options_.keep_fp16 && t.stored == DType::F16; }
  // ONNX names of the graph's values: the features and logits get stable output names.
  std::string vname(const std::string& v) const {
    if (v == graph_.features) return "features";
    if (with_logits_ && v == graph_.logits) return "logits";
    if (v == "input") return "input_nchw";
    return v;
  }

  const Graph& graph_;
  const Bundle& bundle_;
  const OnnxOptions& options_;
  const bool with_head_, with_logits_;
  Pb model_;  // after model_fields(), the graph's fields
  std::vector<Node> nodes_;
  std::vector<std::pair<std::string, int64_t>> outputs_;
  size_t n_init_ = 0, n_params_ = 0;
};

std::string OnnxWriter::write(OnnxSummary* summary) {
  model_fields();
  const size_t graph_start = model_.begin(f::kGraph);
  backbone();
  outputs_ = {{"features", graph_.feature_dim}};
  if (with_logits_) outputs_.push_back({"logits", graph_.num_logits});
  if (with_head_) head();
  for (auto& n : nodes_) model_.msg(f::kNode, encode_node(n));
  model_.str(f::kGraphName, with_head_ ? "petal_classifier" : "petal_backbone");
  model_.msg(f::kInput, encode_value_info("input", {-1, graph_.input_h, graph_.input_w, graph_.input_c}));
  for (auto& [name, dim] : outputs_) model_.msg(f::kOutput, encode_value_info(name, {-1, dim}));
  model_.end(graph_start);
  if (summary) {
    summary->outputs.clear();
    for (auto& o : outputs_) summary->outputs.push_back(o.first);
    summary->nodes = nodes_.size();
    summary->initializers = n_init_;
    summary->parameters = n_params_;
  }
  return model_.take();
}

void OnnxWriter::model_fields() {
  std::string class_names;
  if (with_head_ && bundle_.metadata.count("class_names")) class_names = bundle_.metadata.at("class_names");
  size_t weight_bytes = 0;
  for (auto& [name, t] : bundle_.tensors)
    if (name.rfind("bank.", 0) != 0) weight_bytes += t.numel() * (in_fp16(t) ? 2 : 4);
  model_.reserve(weight_bytes + (1u << 20));
  model_.varint(f::kIrVersion, 8);
  model_.str(f::kProducerName, "petal");
  model_.str(f::kProducerVersion, options_.producer_version);
  model_.str(f::kDocString,
             "Petal model. Input 'input': batch x H x W x 3 float32, NHWC, RGB->BGR minus the ImageNet means "
             "[103.939, 116.779, 123.68] (Keras 'caffe' preprocessing) after resizing to H x W.");
  Pb opset;
  opset.str(f::kOpsetDomain, "");
  opset.varint(f::kOpsetVersion, uint64_t(options_.opset));
  model_.msg(f::kOpsetImport, opset);
  auto meta = [&](const std::string& k, const std::string& v) {
    Pb e;
    e.str(f::kKey, k);
    e.str(f::kValue, v);
    model_.msg(f::kMetadataProps, e);
  };
  meta("petal.preprocessing", "caffe");
  meta("petal.input_layout", "NHWC");
  if (!class_names.empty()) meta("petal.class_names", class_names);
  if (with_logits_ && bundle_.metadata.count("imagenet_labels")) meta("petal.imagenet_labels", bundle_.metadata.at("imagenet_labels"));
}

// `data` holds the tensor in ONNX's element order; `like` is the bundle tensor it comes from.
void OnnxWriter::initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& data,
                             const Tensor& like) {
  if (write_tensor(model_, f::kInitializer, name, dims, data.data(), data.size(), in_fp16(like)))
    add({"Cast", name + "/cast", {name + "/fp16"}, {name}, {a_int("to", int64_t(f::kFloat))}});
  ++n_init_;
  n_params_ += data.size();
}

// The backbone's ops, NHWC input transposed to NCHW first. Ops after the features are the
// ImageNet classifier: skipped when it is not wanted.
void OnnxWriter::backbone() {
  std::map<std::string, Shape> shapes;
  shapes["input"] = {graph_.input_h, graph_.input_w, graph_.input_c};
  add({"Transpose", "input_to_nchw", {"input"}, {"input_nchw"}, {a_ints("perm", {0, 3, 1, 2})}});
  bool past_features = false;
  for (const Op& op : graph_.ops) {
    if (past_features && !with_logits_) break;
    const Shape is = shapes.at(op.inputs.at(0));
    const std::string in0 = vname(op.inputs.at(0));
    const std::string out = vname(op.name);
    const std::string pre = op.relu ? op.name + "/prerelu" : out;  // value before the fused ReLU
    switch (op.kind) {
      case Op::Conv:
      case Op::MaxPool: shapes[op.name] = window(op, is, in0, pre); break;
      case Op::Add: {
        const Shape is2 = shapes.at(op.inputs.at(1));
        if (is2.h != is.h || is2.w != is.w || is2.c != is.c) throw Error("layer '" + op.name + "' adds unequal shapes");
        add({"Add", op.name, {in0, vname(op.inputs.at(1))}, {pre}, {}});
        shapes[op.name] = is;
        break;
      }
      case Op::GlobalAvgPool: {
        add({"GlobalAveragePool", op.name, {in0}, {op.name + "/pooled"}, {}});
        add({"Flatten", op.name + "/flatten", {op.name + "/pooled"}, {pre}, {a_int("axis", 1)}});
        shapes[op.name] = {1, 1, is.c};
        break;
      }
      case Op::Dense: {
        if (op.cin != is.c || is.h != 1 || is.w != 1) throw Error("layer '" + op.name + "' does not fit its input");
        const Tensor& w = weight(op.name + ".weight", {size_t(op.cout), size_t(op.cin)});
        const Tensor& b = weight(op.name + ".bias", {size_t(op.cout)});
        initializer(op.name + ".weight", {op.cout, op.cin}, w.data, w);
        initializer(op.name + ".bias", {op.cout}, b.data, b);
        add({"Gemm", op.name, {in0, op.name + ".weight", op.name + ".bias"}, {pre},
             {a_float("alpha", 1.f), a_float("beta", 1.f), a_int("transB", 1)}});
        shapes[op.name] = {1, 1, op.cout};
        break;
      }
    }
    if (op.relu) add({"Relu", op.name + "/relu", {pre}, {out}, {}});
    if (op.name == graph_.features) past_features = true;
  }
  if (!shapes.count(graph_.features)) throw Error("the model's graph has no features output");
}

// A convolution or max pooling; returns its output's shape.
OnnxWriter::Shape OnnxWriter::window(const Op& op, const Shape& is, const std::string& in0, const std::string& pre) {
  const Shape os{int(op.out_h(is.h)), int(op.out_w(is.w)), op.kind == Op::Conv ? op.cout : is.c};
  if (os.h <= 0 || os.w <= 0) throw Error("the model's input is too small for layer '" + op.name + "'");
  int64_t top = op.pad[0], right = op.pad[1], bottom = op.pad[2], left = op.pad[3];
  if (op.same) {  // TensorFlow SAME: the odd pixel of padding goes after
    const int ph = std::max((os.h - 1) * op.sh + op.kh - is.h, 0), pw = std::max((os.w - 1) * op.sw + op.kw - is.w, 0);
    top = ph / 2, bottom = ph - ph / 2, left = pw / 2, right = pw - pw / 2;
  }
  std::vector<Attr> attrs{a_ints("kernel_shape", {op.kh, op.kw}), a_ints("strides", {op.sh, op.sw}),
                          a_ints("pads", {top, left, bottom, right})};
  if (op.kind == Op::MaxPool) {
    // Keras pads with zeros before its max pooling, ONNX pads with -inf; the same wherever
    // a window holds one real pixel, as it always does here.
    add({"MaxPool", op.name, {in0}, {pre}, attrs});
    return os;
  }
  if (op.cin != is.c) throw Error("layer '" + op.name + "' does not fit its input");
  // Petal stores [cout, kh, kw, cin]; ONNX wants [cout, cin, kh, kw].
  const Tensor& w = weight(op.name + ".weight", {size_t(op.cout), size_t(op.kh), size_t(op.kw), size_t(op.cin)});
  const Tensor& b = weight(op.name + ".bias", {size_t(op.cout)});
  std::vector<float> wt(w.data.size());
  const size_t K = size_t(op.kh) * op.kw;
  for (size_t o = 0; o < size_t(op.cout); ++o)
    for (size_t k = 0; k < K; ++k)
      for (size_t c = 0; c < size_t(op.cin); ++c) wt[(o * op.cin + c) * K + k] = w.data[(o * K + k) * op.cin + c];
  initializer(op.name + ".weight", {op.cout, op.cin, op.kh, op.kw}, wt, w);
  initializer(op.name + ".bias", {op.cout}, b.data, b);
  attrs.push_back(a_ints("dilations", {1, 1}));
  attrs.push_back(a_int("group", 1));
  add({"Conv", op.name, {in0, op.name + ".weight", op.name + ".bias"}, {pre}, attrs});
  return os;
}

// The trained head on the features: Dense-ReLU-Dense, the taught units if any, softmax.
void OnnxWriter::head() {
  const Tensor& w1 = bundle_.get("head.dense1.weight");
  if (w1.shape.size() != 2 || w1.shape[1] != size_t(graph_.feature_dim))
    throw Error("the model bundle's head does not fit its backbone's features");
  const size_t hidden = w1.shape[0];
  const Tensor& b1 = weight("head.dense1.bias", {hidden});
  const Tensor& w2 = bundle_.get("head.dense2.weight");
  if (w2.shape.size() != 2 || w2.shape[1] != hidden) throw Error("the model bundle's head tensors have inconsistent shapes");
  const size_t classes = w2.shape[0];
  const Tensor& b2 = weight("head.dense2.bias", {classes});
  initializer("head.dense1.weight", {int64_t(hidden), graph_.feature_dim}, w1.data, w1);
  initializer("head.dense1.bias", {int64_t(hidden)}, b1.data, b1);
  initializer("head.dense2.weight", {int64_t(classes), int64_t(hidden)}, w2.data, w2);
  initializer("head.dense2.bias", {int64_t(classes)}, b2.data, b2);
  const std::vector<Attr> gemm{a_float("alpha", 1.f), a_float("beta", 1.f), a_int("transB", 1)};
  add({"Gemm", "head.dense1", {"features", "head.dense1.weight", "head.dense1.bias"}, {"head.dense1"}, gemm});
  add({"Relu", "head.dense1/relu", {"head.dense1"}, {"head.hidden"}, {}});
  std::string logits = "head.logits";
  add({"Gemm", "head.dense2", {"head.hidden", "head.dense2.weight", "head.dense2.bias"}, {logits}, gemm});
  if (bundle_.has("head.residual.weight")) logits = residual_units(logits, classes, gemm);
  add({"Softmax", "head.softmax", {logits}, {"probabilities"}, {a_int("axis", -1)}});
  outputs_.push_back({"probabilities", int64_t(classes)});
}

// Taught units (wasm/head.h): scale·logits + out·(W·n(x − c) + b); returns the scores' name.
std::string OnnxWriter::residual_units(const std::string& logits, size_t classes, const std::vector<Attr>& gemm) {
  const Tensor& rw = bundle_.get("head.residual.weight");
  if (rw.shape.size() != 2 || rw.shape[1] != size_t(graph_.feature_dim) || rw.shape[0] == 0)
    throw Error("the model bundle's residual units have an invalid shape");
  const size_t units = rw.shape[0];
  const Tensor& rb = weight("head.residual.bias", {units});
  const Tensor& ro = weight("head.residual.out", {classes, units});
  const Tensor& rc = weight("head.residual.center", {size_t(graph_.feature_dim)});
  const Tensor& rs = weight("head.residual.base_scale", {1});
  initializer("head.residual.weight", {int64_t(units), graph_.feature_dim}, rw.data, rw);
  initializer("head.residual.bias", {int64_t(units)}, rb.data, rb);
  initializer("head.residual.out", {int64_t(classes), int64_t(units)}, ro.data, ro);
  initializer("head.residual.center", {graph_.feature_dim}, rc.data, rc);
  initializer("head.residual.base_scale", {1}, rs.data, rs);
  add({"Sub", "head.residual/centre", {"features", "head.residual.center"}, {"head.residual.centred"}, {}});
  add({"LpNormalization", "head.residual/normalize", {"head.residual.centred"}, {"head.residual.input"}, {a_int("axis", -1), a_int("p", 2)}});
  add({"Gemm", "head.residual", {"head.residual.input", "head.residual.weight", "head.residual.bias"}, {"head.residual.units"}, gemm});
  add({"Gemm", "head.residual/out", {"head.residual.units", "head.residual.out"}, {"head.residual.scores"}, {a_int("transB", 1)}});
  add({"Mul", "head.residual/scale", {logits, "head.residual.base_scale"}, {"head.logits.scaled"}, {}});
  add({"Add", "head.residual/add", {"head.logits.scaled", "head.residual.scores"}, {"head.logits.taught"}, {}});
  return "head.logits.taught";
}

}  // namespace

std::string export_onnx(const Graph& graph, const Bundle& bundle, const OnnxOptions& options, OnnxSummary* summary) {
  return OnnxWriter(graph, bundle, options).write(summary);
}

}  // namespace petal
