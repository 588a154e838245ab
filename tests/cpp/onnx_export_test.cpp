// Engine::to_onnx (the page's Export as ONNX): the whole classifier (ResNet-50 + the shipped
// flowers head, taught a new class in the engine) written with the backbone's weights lent, not
// copied: the same bytes as exporting a full copy of the model, the engine unchanged afterwards,
// a well-formed protobuf, and weights stored as fp16 written as fp16. ONNX Runtime checks the
// numbers (tests/node/onnx.test.mjs, tests/browser/onnx-export.test.mjs).
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "bundle.h"
#include "engine.h"
#include "error.h"
#include "onnx_export.h"
#include "teach.h"
#include "test_support.h"

using namespace petal;

namespace {

// The protobuf's fields at one level: field number → contents of its length-delimited values
// (varints and fixed32s are skipped). Fails the test when the bytes do not parse to exactly `n`.
std::multimap<uint32_t, std::string> fields(const std::string& s) {
  std::multimap<uint32_t, std::string> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; i < s.size(); shift += 7) {
      const uint8_t b = uint8_t(s[i++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ADD_FAILURE() << "a varint runs past the end";
    return v;
  };
  while (i < s.size()) {
    const uint64_t key = varint();
    switch (key & 7) {
      case 0: varint(); break;
      case 5: i += 4; break;
      case 2: {
        const uint64_t n = varint();
        if (i + n > s.size()) {
          ADD_FAILURE() << "field " << (key >> 3) << " runs past the end";
          return out;
        }
        out.emplace(uint32_t(key >> 3), s.substr(i, n));
        i += n;
        break;
      }
      default: ADD_FAILURE() << "unexpected wire type " << (key & 7); return out;
    }
  }
  EXPECT_EQ(i, s.size());
  return out;
}

std::string value_of(const std::multimap<uint32_t, std::string>& m, uint32_t field) {
  auto it = m.find(field);
  return it == m.end() ? std::string() : it->second;
}

// The engine of the page: ResNet-50 + the shipped flowers head and bank, taught one more class
// from 4 of the bank's rows (so that the head has residual units).
std::unique_ptr<Engine> page_engine(DType weights) {
  Bundle backbone = load_bundle_file(test::backbone_path());
  backbone.metadata["input_size"] = "288x288";  // the flowers head's input size, as in the page's model
  if (weights == DType::F16) {  // what the page loads: the backbone stored as fp16
    auto bytes = write_bundle(backbone, DType::F16);
    backbone = read_bundle(bytes.data(), bytes.size());
  }
  auto e = std::make_unique<Engine>(std::move(backbone), 2);
  e->import_head(load_bundle_file(test::source_dir() + "/model/flowers-head.safetensors"));
  const size_t dim = size_t(e->feature_dim());
  const std::vector<float> rows(e->bank_features().begin(), e->bank_features().begin() + 4 * dim);
  const std::vector<std::string> labels(4, "mystery");
  TeachOptions o;
  o.estimate_folds = 0;
  TeachResult t = teach(e->teach_base(), {rows.data(), nullptr, &labels, 4, dim}, o);
  e->set_head(std::move(t.head), t.class_names);
  return e;
}

}  // namespace

TEST(OnnxExport, TheEngineLendsItsBackboneAndWritesTheSameModelAsAFullCopy) {
  PETAL_REQUIRE_FILE(test::backbone_path());
  auto engine = page_engine(DType::F32);
  ASSERT_GT(engine->head().residual_units(), 0);
  const auto photo = test::read_bytes(test::data_dir() + "/flower_photos/daisy/100080576_f52e8ee070_n.jpg");
  ASSERT_FALSE(photo.empty());
  const auto before = engine->features_of_bytes(photo.data(), photo.size());
  const Bundle full = engine->to_bundle(true);

  const std::string onnx = engine->to_onnx();
  OnnxSummary s;
  EXPECT_EQ(onnx, export_onnx(bundle_graph(full), full, {}, &s)) << "lent tensors and a copy give the same file";
  EXPECT_EQ(s.outputs, (std::vector<std::string>{"features", "probabilities"}));

  // The engine has its backbone back: same tensors, same features.
  const Bundle after = engine->to_bundle(true);
  ASSERT_EQ(after.tensors.size(), full.tensors.size());
  for (auto& [name, t] : full.tensors) {
    ASSERT_TRUE(after.has(name)) << name;
    EXPECT_EQ(after.get(name).data, t.data) << name;
  }
  EXPECT_EQ(engine->features_of_bytes(photo.data(), photo.size()), before);

  // A well-formed ModelProto: the graph (field 7) is the last field and ends the file exactly,
  // with the backbone's and the head's weights (residual units included) and the class names.
  const auto model = fields(onnx);
  const auto graph = fields(value_of(model, 7));
  EXPECT_EQ(graph.count(5), s.initializers);
  EXPECT_EQ(graph.count(1), s.nodes);
  std::vector<std::string> outputs;
  for (auto [it, end] = graph.equal_range(12); it != end; ++it) outputs.push_back(value_of(fields(it->second), 1));
  EXPECT_EQ(outputs, s.outputs);
  bool residual = false;
  for (auto [it, end] = graph.equal_range(5); it != end; ++it)
    residual |= value_of(fields(it->second), 8) == "head.residual.weight";
  EXPECT_TRUE(residual) << "the taught units are in the file";
  std::string names;
  for (auto [it, end] = model.equal_range(14); it != end; ++it) {
    const auto kv = fields(it->second);
    if (value_of(kv, 1) == "petal.class_names") names = value_of(kv, 2);
  }
  EXPECT_EQ(names, class_names_json(engine->class_names()));
  EXPECT_GT(onnx.size(), size_t(90e6)) << "ResNet-50's 23.5 M weights as fp32";
}

TEST(OnnxExport, WeightsStoredAsFp16AreWrittenAsFp16WithACast) {
  PETAL_REQUIRE_FILE(test::backbone_path());
  auto engine = page_engine(DType::F16);
  const std::string onnx = engine->to_onnx();
  EXPECT_LT(onnx.size(), size_t(55e6)) << "half of the fp32 file";
  const auto graph = fields(value_of(fields(onnx), 7));
  size_t half = 0, full = 0, casts = 0;
  for (auto [it, end] = graph.equal_range(5); it != end; ++it) {
    const auto t = fields(it->second);
    const std::string name = value_of(t, 8);
    const bool is_half = name.size() > 5 && name.compare(name.size() - 5, 5, "/fp16") == 0;
    (is_half ? half : full)++;
    // the head was trained in fp32: it stays fp32
    if (name.rfind("head.", 0) == 0) EXPECT_FALSE(is_half) << name;
  }
  for (auto [it, end] = graph.equal_range(1); it != end; ++it) casts += value_of(fields(it->second), 4) == "Cast";
  EXPECT_EQ(half, 106u) << "ResNet-50's 53 convolutions' weights and biases";
  EXPECT_EQ(casts, half);
  EXPECT_GT(full, 0u);
  // Without keep_fp16, the fp32 file of the same values.
  OnnxOptions o;
  o.keep_fp16 = false;
  Bundle b = engine->to_bundle(true);
  EXPECT_GT(export_onnx(bundle_graph(b), b, o).size(), size_t(90e6));
  // A tensor marked fp16 whose values are not all half floats is written as float32.
  b.tensors.at("conv1.bias").data[7] += 1e-4f;
  ASSERT_EQ(b.get("conv1.bias").stored, DType::F16);
  const auto g2 = fields(value_of(fields(export_onnx(bundle_graph(b), b)), 7));
  std::set<std::string> names;  // of the initializers
  for (auto [it, end] = g2.equal_range(5); it != end; ++it) names.insert(value_of(fields(it->second), 8));
  EXPECT_TRUE(names.count("conv1.bias")) << "written as float32, under its own name";
  EXPECT_FALSE(names.count("conv1.bias/fp16"));
  EXPECT_TRUE(names.count("conv1.weight/fp16")) << "the others stay fp16";
}

TEST(OnnxExport, WithoutAHeadItSaysToTrainFirst) {
  PETAL_REQUIRE_FILE(test::backbone_path());
  Engine engine(load_bundle_file(test::backbone_path()), 1);
  try {
    engine.to_onnx();
    ADD_FAILURE() << "exported a classifier without a head";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train one first"), std::string::npos) << e.what();
  }
  EXPECT_EQ(engine.to_bundle(true).tensors.size(), load_bundle_file(test::backbone_path()).tensors.size());
}
