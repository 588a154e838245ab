// Making test images from real photos: PNG/BMP/JPEG (stb_image_write from libstb-dev), GIF (a
// small LZW-literal encoder, below), EXIF orientation segments spliced into a JPEG's bytes, and
// bare headers that claim a size (for the limit tests). Shared by image_test.cpp,
// limits_test.cpp and the fuzz seed builder.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "image.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
// stb_image_write's JPEG bit writer shifts negative ints (UB before C++20, harmless here); keep
// UBSan on for everything but this test-only encoder.
#pragma clang attribute push(__attribute__((no_sanitize("shift"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image_write.h>
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace petal::imgtest {

using Bytes = std::vector<uint8_t>;

namespace detail {
inline void append(void* ctx, void* data, int size) {
  auto* out = static_cast<Bytes*>(ctx);
  out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}
}  // namespace detail

inline Bytes encode_png(const Image& img) {
  Bytes out;
  if (!stbi_write_png_to_func(detail::append, &out, img.width, img.height, 3, img.rgb.data(), img.width * 3))
    throw std::runtime_error("PNG encoding failed");
  return out;
}
inline Bytes encode_bmp(const Image& img) {
  Bytes out;
  if (!stbi_write_bmp_to_func(detail::append, &out, img.width, img.height, 3, img.rgb.data()))
    throw std::runtime_error("BMP encoding failed");
  return out;
}
inline Bytes encode_jpeg(const Image& img, int quality = 90) {
  Bytes out;
  if (!stbi_write_jpg_to_func(detail::append, &out, img.width, img.height, 3, img.rgb.data(), quality))
    throw std::runtime_error("JPEG encoding failed");
  return out;
}

// The 6×6×6 colour cube a GIF made here uses; quantize() maps a colour to its cube entry.
inline uint8_t cube_index(const uint8_t* rgb) {
  auto q = [](uint8_t v) { return (int(v) * 5 + 127) / 255; };
  return uint8_t(q(rgb[0]) * 36 + q(rgb[1]) * 6 + q(rgb[2]));
}
inline Image quantize(const Image& img) {
  Image r = img;
  for (size_t i = 0; i < r.rgb.size(); i += 3) {
    const int c = cube_index(&img.rgb[i]);
    r.rgb[i] = uint8_t(c / 36 * 51);
    r.rgb[i + 1] = uint8_t(c / 6 % 6 * 51);
    r.rgb[i + 2] = uint8_t(c % 6 * 51);
  }
  return r;
}

// GIF89a, one frame, global 256-entry palette (the cube), LZW data written as 9-bit literal
// codes with a clear code every 250 codes so the code width never grows. Decodes to quantize(img).
inline Bytes encode_gif(const Image& img) {
  Bytes o;
  auto u16 = [&](int v) { o.push_back(uint8_t(v)); o.push_back(uint8_t(v >> 8)); };
  const char* sig = "GIF89a";
  o.insert(o.end(), sig, sig + 6);
  u16(img.width);
  u16(img.height);
  o.push_back(0xF7);  // global colour table, 8 bits colour resolution, 256 entries
  o.push_back(0);     // background
  o.push_back(0);     // aspect
  for (int i = 0; i < 256; ++i) {
    const int c = i < 216 ? i : 0;
    o.push_back(uint8_t(c / 36 * 51));
    o.push_back(uint8_t(c / 6 % 6 * 51));
    o.push_back(uint8_t(c % 6 * 51));
  }
  o.push_back(0x2C);  // image descriptor
  u16(0);
  u16(0);
  u16(img.width);
  u16(img.height);
  o.push_back(0);  // no local table, not interlaced
  o.push_back(8);  // LZW minimum code size
  Bytes data;
  uint32_t acc = 0;
  int nbits = 0;
  auto put = [&](int code) {
    acc |= uint32_t(code) << nbits;
    nbits += 9;
    while (nbits >= 8) {
      data.push_back(uint8_t(acc));
      acc >>= 8;
      nbits -= 8;
    }
  };
  int since_clear = 0;
  put(256);
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    if (since_clear == 250) {
      put(256);
      since_clear = 0;
    }
    put(cube_index(&img.rgb[i]));
    ++since_clear;
  }
  put(257);  // end of information
  if (nbits) data.push_back(uint8_t(acc));
  for (size_t i = 0; i < data.size(); i += 255) {
    const size_t n = std::min<size_t>(255, data.size() - i);
    o.push_back(uint8_t(n));
    o.insert(o.end(), data.begin() + long(i), data.begin() + long(i + n));
  }
  o.push_back(0);     // block terminator
  o.push_back(0x3B);  // trailer
  return o;
}

// An EXIF APP1 segment holding only the Orientation tag (0x0112), in either byte order.
inline Bytes exif_segment(int orientation, bool big_endian) {
  Bytes t;
  auto u16 = [&](int v) {
    if (big_endian) { t.push_back(uint8_t(v >> 8)); t.push_back(uint8_t(v)); }
    else { t.push_back(uint8_t(v)); t.push_back(uint8_t(v >> 8)); }
  };
  auto u32 = [&](uint32_t v) {
    if (big_endian) { u16(int(v >> 16)); u16(int(v & 0xFFFF)); }
    else { u16(int(v & 0xFFFF)); u16(int(v >> 16)); }
  };
  t.push_back(big_endian ? 'M' : 'I');
  t.push_back(big_endian ? 'M' : 'I');
  u16(42);
  u32(8);       // IFD0 offset
  u16(1);       // one entry
  u16(0x0112);  // Orientation
  u16(3);       // SHORT
  u32(1);       // count
  u16(orientation);
  u16(0);       // value padding
  u32(0);       // no next IFD
  Bytes seg = {0xFF, 0xE1};
  const size_t len = 2 + 6 + t.size();
  seg.push_back(uint8_t(len >> 8));
  seg.push_back(uint8_t(len));
  const char exif[6] = {'E', 'x', 'i', 'f', 0, 0};
  seg.insert(seg.end(), exif, exif + 6);
  seg.insert(seg.end(), t.begin(), t.end());
  return seg;
}

// `jpeg` with `segment` inserted after SOI and any APP0 (JFIF) segment.
inline Bytes insert_segment(const Bytes& jpeg, const Bytes& segment) {
  if (jpeg.size() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8) throw std::runtime_error("not a JPEG");
  size_t at = 2;
  if (jpeg[2] == 0xFF && jpeg[3] == 0xE0) at = 4 + (size_t(jpeg[4]) << 8 | jpeg[5]);
  Bytes r(jpeg.begin(), jpeg.begin() + long(at));
  r.insert(r.end(), segment.begin(), segment.end());
  r.insert(r.end(), jpeg.begin() + long(at), jpeg.end());
  return r;
}

// Offset of the SOF0/SOF1/SOF2 marker in a JPEG (its height is at +5, width at +7), or 0.
inline size_t find_sof(const Bytes& j) {
  size_t i = 2;
  while (i + 4 <= j.size() && j[i] == 0xFF) {
    const uint8_t m = j[i + 1];
    if (m == 0xC0 || m == 0xC1 || m == 0xC2) return i;
    i += 2 + (size_t(j[i + 2]) << 8 | j[i + 3]);
  }
  return 0;
}
// A copy of a real JPEG whose frame header claims w×h.
inline Bytes with_jpeg_size(const Bytes& jpeg, int w, int h) {
  Bytes r = jpeg;
  const size_t sof = find_sof(r);
  if (!sof) throw std::runtime_error("no SOF marker");
  r[sof + 5] = uint8_t(h >> 8);
  r[sof + 6] = uint8_t(h);
  r[sof + 7] = uint8_t(w >> 8);
  r[sof + 8] = uint8_t(w);
  return r;
}

inline uint32_t crc32(const uint8_t* d, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= d[i];
    for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}
// A PNG signature and IHDR chunk (with a correct CRC) claiming w×h RGB, then IEND; no pixels.
inline Bytes png_header(uint32_t w, uint32_t h) {
  Bytes o = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto be32 = [](Bytes& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
  };
  auto chunk = [&](const char* type, const Bytes& body) {
    be32(o, uint32_t(body.size()));
    Bytes tb(type, type + 4);
    tb.insert(tb.end(), body.begin(), body.end());
    o.insert(o.end(), tb.begin(), tb.end());
    be32(o, crc32(tb.data(), tb.size()));
  };
  Bytes ihdr;
  be32(ihdr, w);
  be32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, no filter, no interlace
  chunk("IHDR", ihdr);
  chunk("IEND", {});
  return o;
}

}  // namespace petal::imgtest
