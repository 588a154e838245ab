#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "bundle.h"
#include "error.h"
#include "fp16.h"

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

// The textbook conversion, branch by branch: what fp16.h's branch-free one must equal.
static uint32_t half_bits_reference(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0 && man == 0) return sign;
  if (exp == 0) {  // subnormal: renormalise
    exp = 127 - 15 + 1;
    while ((man & 0x400) == 0) {
      man <<= 1;
      --exp;
    }
    return sign | (exp << 23) | ((man & 0x3ff) << 13);
  }
  if (exp == 31) return sign | 0x7f800000u | (man << 13);
  return sign | ((exp + 127 - 15) << 23) | (man << 13);
}

TEST(Bundle, EveryHalfConvertsExactly) {
  std::vector<uint8_t> bytes(2 * 65536 + 1);
  std::vector<float> out(65536);
  for (size_t offset : {0, 1}) {  // the file's tensors need not be aligned
    for (uint32_t h = 0; h < 65536; ++h) {
      bytes[offset + 2 * h] = uint8_t(h);
      bytes[offset + 2 * h + 1] = uint8_t(h >> 8);
    }
    halves_to_floats(bytes.data() + offset, 65536, out.data());
    for (uint32_t h = 0; h < 65536; ++h) {
      uint32_t bulk, one;
      const float f = half_to_float(uint16_t(h));
      std::memcpy(&bulk, &out[h], 4);
      std::memcpy(&one, &f, 4);
      ASSERT_EQ(bulk, half_bits_reference(uint16_t(h))) << "half 0x" << std::hex << h;
      ASSERT_EQ(one, half_bits_reference(uint16_t(h))) << "half 0x" << std::hex << h;
    }
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
