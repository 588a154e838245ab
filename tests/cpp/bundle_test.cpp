#include <gtest/gtest.h>

#include "bundle.h"
#include "error.h"

using namespace petal;

TEST(Bundle, RoundTripsF32AndF16) {
  Bundle b;
  b.metadata["format"] = "petal-bundle";
  Tensor t;
  t.shape = {2, 3};
  t.data = {1.f, -2.f, 0.5f, 1e-3f, 65504.f, 0.f};
  b.tensors["w"] = t;
  for (DType d : {DType::F32, DType::F16}) {
    auto bytes = write_bundle(b, d);
    Bundle r = read_bundle(bytes.data(), bytes.size());
    EXPECT_EQ(r.metadata.at("format"), "petal-bundle");
    ASSERT_EQ(r.get("w").shape, t.shape);
    for (size_t i = 0; i < t.data.size(); ++i) EXPECT_NEAR(r.get("w").data[i], t.data[i], d == DType::F16 ? 1e-3 * std::abs(t.data[i]) + 1e-6 : 0);
    EXPECT_EQ(r.get("w").stored, d);
  }
}

TEST(Bundle, RefusesTruncatedAndGarbage) {
  Bundle b;
  Tensor t;
  t.shape = {100};
  t.data.assign(100, 1.f);
  b.tensors["w"] = t;
  auto bytes = write_bundle(b);
  EXPECT_THROW(read_bundle(bytes.data(), 0), Error);
  try {
    read_bundle(bytes.data(), bytes.size() / 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  const std::string text = "hello, this is not a model";
  EXPECT_THROW(read_bundle(reinterpret_cast<const uint8_t*>(text.data()), text.size()), Error);
}
