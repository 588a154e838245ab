// IEEE half <-> float conversion for fp16 weight storage (compute stays fp32).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

namespace petal {

// Exact, and branch-free so that loops over it vectorise: normal numbers re-bias the exponent,
// subnormals are m * 2^-24 (an exact float), infinities and NaNs (payload kept) get the float's
// all-ones exponent. (tests/cpp/bundle_test.cpp checks all 65536 halves.)
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t em = h & 0x7fffu;  // exponent and mantissa
  const uint32_t scaled = (em << 13) + (em >= 0x7c00u ? 0x70000000u : 0x38000000u);  // + (127 - 15) << 23, or to 0xff
  const float sub = float(int32_t(em)) * 0x1p-24f;
  uint32_t sub_bits;
  std::memcpy(&sub_bits, &sub, 4);
  const uint32_t bits = sign | (em < 0x400u ? sub_bits : scaled);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// n little-endian halves at `src` (any alignment) into floats at `dst`, exactly as half_to_float.
// The page converts its model's 25 M fp16 weights at every start: in WebAssembly 8 at a time
// with SIMD here, 41 ms where the compiler's own vectorisation of half_to_float's loop takes 95
// (node, TurboFan). Not inlined: called once per tensor, it soon becomes hot enough for V8 to
// optimise, where a loop inside a function that runs once stays in V8's baseline code.
[[gnu::noinline]] inline void halves_to_floats(const uint8_t* src, size_t n, float* dst) {
  size_t i = 0;
#ifdef __wasm_simd128__
  const v128_t sign_bit = wasm_i32x4_splat(0x8000), magnitude = wasm_i32x4_splat(0x7fff);
  const v128_t largest_finite = wasm_i32x4_splat(0x7bff), smallest_normal = wasm_i32x4_splat(0x400);
  const v128_t rebias = wasm_i32x4_splat(0x38000000), to_inf = wasm_i32x4_splat(0x70000000);
  const v128_t subnormal_scale = wasm_f32x4_splat(0x1p-24f);
  auto four = [&](v128_t h, float* out) {
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, sign_bit), 16);
    const v128_t em = wasm_v128_and(h, magnitude);
    const v128_t scaled = wasm_i32x4_add(wasm_i32x4_shl(em, 13), wasm_v128_bitselect(to_inf, rebias, wasm_i32x4_gt(em, largest_finite)));
    const v128_t sub = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(em), subnormal_scale);
    wasm_v128_store(out, wasm_v128_or(sign, wasm_v128_bitselect(sub, scaled, wasm_i32x4_lt(em, smallest_normal))));
  };
  for (; i + 8 <= n; i += 8) {
    const v128_t h = wasm_v128_load(src + 2 * i);
    four(wasm_u32x4_extend_low_u16x8(h), dst + i);
    four(wasm_u32x4_extend_high_u16x8(h), dst + i + 4);
  }
#endif
  for (; i < n; ++i) dst[i] = half_to_float(uint16_t(src[2 * i] | (src[2 * i + 1] << 8)));
}

// Round to nearest even; overflow goes to infinity.
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to inf
  if (absx < 0x38800000u) {  // subnormal or zero in half
    if (absx < 0x33000000u) return uint16_t(sign);
    // value / 2^-24, rounded: m * 2^(e - 126) with m the 24-bit significand
    const uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // >= 14 here
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t h = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

}  // namespace petal
