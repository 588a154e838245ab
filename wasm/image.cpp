#include "image.h"

#include <algorithm>
#include <cmath>
#include <climits>
#include <cstdio>
#include <cstring>

#include "error.h"
#include "petal_limits.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS (1 << 16)
// For a PNG whose first IDAT chunk is empty, stb_image copies 0 bytes to a null pointer
// (memcpy(NULL, p, 0) in stbi__getn): harmless, but undefined behaviour, and the fuzz build's
// UBSan stops on it. stb_image's copies go through this, which skips a copy of nothing.
#include <cstring>
static inline void* stbi_memcpy_nonempty(void* dst, const void* src, size_t n) { return n ? std::memcpy(dst, src, n) : dst; }
#define memcpy stbi_memcpy_nonempty
#include <stb/stb_image.h>
#undef memcpy

namespace petal {

namespace {

std::string sniff(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return "jpeg";
  if (n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return "png";
  if (n >= 6 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) return "gif";
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return "bmp";
  return "";
}

std::string describe_unknown(const uint8_t* d, size_t n) {
  size_t printable = 0, k = std::min<size_t>(n, 512);
  for (size_t i = 0; i < k; ++i) printable += (d[i] >= 32 && d[i] < 127) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t';
  if (k && printable == k) return "this is a text file, not an image; choose a JPEG, PNG, GIF or BMP photo";
  if (n >= 12 && std::memcmp(d + 4, "ftyp", 4) == 0)
    return "this looks like a HEIC/AVIF or video file, which Petal cannot read; convert it to JPEG or PNG";
  if (n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0)
    return "WebP images are not supported; convert it to JPEG or PNG";
  return "not a supported image (JPEG, PNG, GIF or BMP)";
}

// A JPEG whose entropy-coded data ends without the end-of-image marker was cut short; stb_image
// would quietly fill the rest with grey.
bool jpeg_complete(const uint8_t* d, size_t n) {
  size_t i = 2;
  while (i + 4 <= n) {  // walk the marker segments up to the first scan
    if (d[i] != 0xFF) return false;
    const uint8_t m = d[i + 1];
    if (m == 0xFF) { ++i; continue; }
    const size_t len = size_t(d[i + 2]) << 8 | d[i + 3];
    if (m == 0xDA) { i += 2 + len; break; }
    i += 2 + len;
  }
  for (; i + 1 < n; ++i)
    if (d[i] == 0xFF && d[i + 1] == 0xD9) return true;
  return false;
}

// Debian's stb_image (git 2022-09-08) builds a Huffman table from a DHT segment without checking
// that its 16 code counts add up to at most 256 symbols; more overruns the table (a heap
// overflow, found by fuzz/fuzz_image). Upstream fixed it later. So we walk every marker segment
// stb_image would reach, the way it does (before the first scan: segment by segment, skipping
// stray bytes; after a scan's header: through the entropy-coded data to the next marker, as
// its bit reader does) and refuse a DHT that stb_image would overrun on. Conservative: where
// stb_image stops early, we keep checking.
bool jpeg_huffman_tables_ok(const uint8_t* d, size_t n) {
  auto be16 = [&](size_t i) { return i + 2 <= n ? size_t(d[i]) << 8 | d[i + 1] : 0; };
  auto dht_ok = [&](size_t i) {  // i: the segment's length field
    const size_t len = be16(i);
    if (len < 2) return true;  // stb_image refuses it
    size_t p = i + 2, end = std::min(n, i + len);
    while (p < end) {
      if (p + 17 > n) return true;  // stb_image reads zeros past the end: counts of 0
      size_t sum = 0;
      for (int k = 1; k <= 16; ++k) sum += d[p + k];
      if (sum > 256) return false;
      p += 17 + sum;
    }
    return true;
  };
  size_t i = 2;
  bool in_scan = false;
  while (i + 1 < n) {
    if (in_scan) {  // entropy-coded data: 0xFF 0x00 is a data byte, 0xFF 0xD0..D7 a restart
      if (d[i] != 0xFF) { ++i; continue; }
      size_t j = i + 1;
      while (j < n && d[j] == 0xFF) ++j;
      if (j >= n) break;
      if (d[j] == 0x00 || (d[j] >= 0xD0 && d[j] <= 0xD7)) { i = j + 1; continue; }
      in_scan = false;
      i = j - 1;  // d[i] == 0xFF, d[i + 1] the marker
    }
    if (d[i] != 0xFF) { ++i; continue; }  // stray byte between segments
    size_t j = i + 1;
    while (j < n && d[j] == 0xFF) ++j;  // fill bytes
    if (j >= n) break;
    const uint8_t m = d[j];
    if (m == 0xD9) break;                                   // end of image
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i = j + 1; continue; }
    if (m == 0xC4 && !dht_ok(j + 1)) return false;
    const size_t len = be16(j + 1);
    if (len < 2) return true;  // stb_image stops here
    i = j + 1 + len;
    if (m == 0xDA) in_scan = true;
  }
  return true;
}

// A GIF cut short ends inside its first image's data; stb_image would return the part it has
// and leave the rest as background. Walk the blocks to the end of the first image.
bool gif_complete(const uint8_t* d, size_t n) {
  if (n < 13) return false;
  size_t i = 13;
  if (d[10] & 0x80) i += size_t(3) << ((d[10] & 7) + 1);  // global colour table
  auto sub_blocks = [&](size_t& p) {  // skips data sub-blocks up to the terminator
    while (p < n) {
      const size_t len = d[p++];
      if (len == 0) return true;
      p += len;
    }
    return false;
  };
  while (i < n) {
    if (d[i] == 0x21) {  // extension: introducer, label, sub-blocks
      i += 2;
      if (!sub_blocks(i)) return false;
    } else if (d[i] == 0x2C) {  // image descriptor (10 bytes), local table, LZW code size, data
      if (i + 10 > n) return false;
      const uint8_t flags = d[i + 9];
      i += 10;
      if (flags & 0x80) i += size_t(3) << ((flags & 7) + 1);
      i += 1;
      return sub_blocks(i);
    } else {
      return false;  // trailer before any image, or not GIF data
    }
  }
  return false;
}

// An uncompressed BMP shorter than its header's pixel array was cut short; stb_image would
// fill the missing rows quietly.
bool bmp_complete(const uint8_t* d, size_t n) {
  if (n < 30) return false;
  const uint64_t offset = uint64_t(d[10]) | uint64_t(d[11]) << 8 | uint64_t(d[12]) << 16 | uint64_t(d[13]) << 24;
  const uint32_t hsz = uint32_t(d[14]) | uint32_t(d[15]) << 8 | uint32_t(d[16]) << 16 | uint32_t(d[17]) << 24;
  auto s32 = [&](size_t o) { return int64_t(int32_t(uint32_t(d[o]) | uint32_t(d[o + 1]) << 8 | uint32_t(d[o + 2]) << 16 | uint32_t(d[o + 3]) << 24)); };
  uint64_t w, h, bpp, compression = 0;
  if (hsz == 12) {
    w = uint64_t(d[18] | d[19] << 8);
    h = uint64_t(d[20] | d[21] << 8);
    bpp = uint64_t(d[24] | d[25] << 8);
  } else {
    if (n < 34) return false;
    w = uint64_t(std::abs(s32(18)));
    h = uint64_t(std::abs(s32(22)));
    bpp = uint64_t(d[28] | d[29] << 8);
    compression = uint64_t(s32(30)) & 0xFFFFFFFFu;
  }
  if (compression != 0 && compression != 3 && compression != 6) return true;  // RLE: stb_image checks
  const uint64_t stride = (w * bpp + 31) / 32 * 4;
  return offset + stride * h <= n;
}

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
uint32_t le16(const uint8_t* p) { return uint32_t(p[1]) << 8 | p[0]; }
uint32_t le32(const uint8_t* p) { return le16(p + 2) << 16 | le16(p); }

// Width and height from the file header, without decoding.
bool header_size(const std::string& fmt, const uint8_t* d, size_t n, int64_t& w, int64_t& h) {
  if (fmt == "png") {
    if (n < 24 || std::memcmp(d + 12, "IHDR", 4) != 0) return false;
    w = be32(d + 16);
    h = be32(d + 20);
    return true;
  }
  if (fmt == "gif") {
    if (n < 10) return false;
    w = le16(d + 6);
    h = le16(d + 8);
    return true;
  }
  if (fmt == "bmp") {
    if (n < 26) return false;
    const uint32_t hdr = le32(d + 14);
    if (hdr == 12) {
      w = le16(d + 18);
      h = le16(d + 20);
    } else {
      w = int32_t(le32(d + 18));
      h = std::abs(int64_t(int32_t(le32(d + 22))));
    }
    return w > 0;
  }
  // JPEG: the first start-of-frame marker holds the size.
  size_t i = 2;
  while (i + 4 <= n) {
    if (d[i] != 0xFF) return false;
    const uint8_t m = d[i + 1];
    if (m == 0xFF) { ++i; continue; }
    if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
    const size_t len = be16(d + i + 2);
    if (len < 2) return false;
    const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof) {
      if (i + 9 > n) return false;
      h = be16(d + i + 5);
      w = be16(d + i + 7);
      return true;
    }
    if (m == 0xDA || m == 0xD9) return false;
    i += 2 + len;
  }
  return false;
}

// Megapixels with two decimals, rounded up so that an image just over the limit never reads as
// "50.00" (10000x5001 is 50.01).
std::string megapixels(uint64_t px) {
  const uint64_t hundredths = (px + 9999) / 10000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%02llu", static_cast<unsigned long long>(hundredths / 100),
                static_cast<unsigned long long>(hundredths % 100));
  return buf;
}

}  // namespace

ImageInfo probe_image(const uint8_t* data, size_t size) {
  if (const std::string p = limits::image_bytes_problem(data ? size : 0); !p.empty()) throw Error(p);
  ImageInfo info;
  info.format = sniff(data, size);
  if (info.format.empty()) throw Error(describe_unknown(data, size));
  // Read the size from the header ourselves: stb_image's own probe refuses very large images
  // with an unhelpful "unknown image type", and the limit check must come before any decoding.
  int64_t w = -1, h = -1;
  if (!header_size(info.format, data, size, w, h))
    throw Error("the " + info.format + " file is damaged: its header is incomplete or invalid");
  if (w <= 0 || h <= 0) throw Error("the " + info.format + " image has no pixels");
  const uint64_t px = uint64_t(w) * uint64_t(h);
  int c = 0, sw = 0, sh = 0;
  if (px > limits::kMaxImagePixels || uint32_t(w) > limits::kMaxImageSide || uint32_t(h) > limits::kMaxImageSide)
    throw Error("the image is " + std::to_string(w) + "x" + std::to_string(h) + " (" + megapixels(px) +
                " megapixels); the limit is " + std::to_string(limits::kMaxImagePixels / 1000000) +
                " megapixels and " + std::to_string(limits::kMaxImageSide) + " pixels a side; scale it down first");
  if (info.format == "jpeg" && !jpeg_huffman_tables_ok(data, size))  // before stb_image parses them
    throw Error("the JPEG is damaged (a Huffman table holds more than 256 codes); it cannot be read safely");
  if (!stbi_info_from_memory(data, int(size), &sw, &sh, &c))
    throw Error("the " + info.format + " file is damaged or unsupported (" + std::string(stbi_failure_reason()) + ")");
  info.width = int(w);
  info.height = int(h);
  return info;
}

int exif_orientation(const uint8_t* d, size_t n) {
  if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return 1;
  size_t i = 2;
  while (i + 4 <= n && d[i] == 0xFF) {
    const uint8_t m = d[i + 1];
    const size_t len = size_t(d[i + 2]) << 8 | d[i + 3];
    if (m == 0xDA || len < 2) break;
    if (m == 0xE1 && len >= 16 && i + 2 + len <= n && std::memcmp(d + i + 4, "Exif\0\0", 6) == 0) {
      const uint8_t* t = d + i + 10;  // TIFF header
      const size_t tn = len - 8;
      const bool le = t[0] == 'I' && t[1] == 'I';
      if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
      auto u16 = [&](size_t o) -> uint32_t { return o + 2 > tn ? 0 : le ? t[o] | t[o + 1] << 8 : t[o] << 8 | t[o + 1]; };
      auto u32 = [&](size_t o) -> uint32_t {
        return o + 4 > tn ? 0 : le ? u16(o) | u16(o + 2) << 16 : u16(o) << 16 | u16(o + 2);
      };
      const size_t ifd = u32(4);
      if (ifd + 2 > tn) return 1;
      const uint32_t count = u16(ifd);
      for (uint32_t e = 0; e < count && ifd + 2 + 12 * (e + 1) <= tn; ++e) {
        const size_t o = ifd + 2 + 12 * e;
        if (u16(o) == 0x0112) {
          const uint32_t v = u16(o + 8);
          return v >= 1 && v <= 8 ? int(v) : 1;
        }
      }
      return 1;
    }
    i += 2 + len;
  }
  return 1;
}

Image apply_orientation(const Image& img, int o) {
  if (o <= 1 || o > 8) return img;
  const bool swap = o >= 5;  // 5..8 transpose the axes
  Image r;
  r.width = swap ? img.height : img.width;
  r.height = swap ? img.width : img.height;
  r.rgb.resize(img.rgb.size());
  const int W = img.width, H = img.height;
  for (int y = 0; y < r.height; ++y)
    for (int x = 0; x < r.width; ++x) {
      int sx = 0, sy = 0;  // source pixel shown at (x, y)
      switch (o) {
        case 2: sx = W - 1 - x; sy = y; break;
        case 3: sx = W - 1 - x; sy = H - 1 - y; break;
        case 4: sx = x; sy = H - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = H - 1 - x; break;
        case 7: sx = W - 1 - y; sy = H - 1 - x; break;
        case 8: sx = W - 1 - y; sy = x; break;
      }
      std::memcpy(&r.rgb[(size_t(y) * r.width + x) * 3], &img.rgb[(size_t(sy) * W + sx) * 3], 3);
    }
  return r;
}

Image decode_image(const uint8_t* data, size_t size) {
  const ImageInfo info = probe_image(data, size);
  if (info.format == "jpeg" && !jpeg_complete(data, size))
    throw Error("the JPEG is truncated (no end-of-image marker): the file is incomplete; copy or download it again");
  if (info.format == "gif" && !gif_complete(data, size))
    throw Error("the GIF is truncated (its first image ends early): the file is incomplete; copy or download it again");
  if (info.format == "bmp" && !bmp_complete(data, size))
    throw Error("the BMP is truncated (fewer pixel rows than its header says): the file is incomplete; copy or download it again");
  int w = 0, h = 0, c = 0;
  uint8_t* px = stbi_load_from_memory(data, int(size), &w, &h, &c, 3);
  if (!px) throw Error("cannot decode the " + info.format + " image: " + std::string(stbi_failure_reason()));
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(px, px + size_t(w) * h * 3);
  stbi_image_free(px);
  if (info.format == "jpeg") {
    const int o = exif_orientation(data, size);
    if (o != 1) img = apply_orientation(img, o);
  }
  return img;
}

// Antialiased bilinear (triangle filter widened by the downscale factor), separable, computed
// as Pillow computes Image.resize(BILINEAR): per output pixel, the window of input pixels is
// clipped at the borders and renormalised; weights are 22-bit fixed point; the horizontal pass
// rounds to 8 bits before the vertical pass. The golden reference was made that way, and so
// were the Keras numbers the brief quotes.
namespace {
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // per output: first input index, count
  std::vector<int32_t> k;   // per output: ksize fixed-point weights
};

Coeffs resample_coeffs(int in_size, int out_size) {
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;
  Coeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(out_size) * 2);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0;
    for (int x = 0; x < xmax; ++x) {
      double t = std::abs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[size_t(xx) * c.ksize + x] = int32_t(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}
}  // namespace

Image resize_image(const Image& img, int w, int h) {
  if (img.width == w && img.height == h) return img;
  if (w <= 0 || h <= 0) throw Error("cannot resize an image to " + std::to_string(w) + "x" + std::to_string(h));
  // horizontal pass: img.height rows × w columns
  Image tmp;
  tmp.width = w;
  tmp.height = img.height;
  if (w != img.width) {
    const Coeffs cx = resample_coeffs(img.width, w);
    tmp.rgb.resize(size_t(w) * img.height * 3);
    for (int y = 0; y < img.height; ++y) {
      const uint8_t* row = &img.rgb[size_t(y) * img.width * 3];
      for (int xx = 0; xx < w; ++xx) {
        const int xmin = cx.bounds[2 * xx], n = cx.bounds[2 * xx + 1];
        const int32_t* k = &cx.k[size_t(xx) * cx.ksize];
        for (int ch = 0; ch < 3; ++ch) {
          int64_t ss = int64_t(1) << (kPrecisionBits - 1);
          for (int x = 0; x < n; ++x) ss += int64_t(row[(xmin + x) * 3 + ch]) * k[x];
          tmp.rgb[(size_t(y) * w + xx) * 3 + ch] = clip8(ss);
        }
      }
    }
  } else {
    tmp = img;
  }
  if (h == img.height) return tmp;
  const Coeffs cy = resample_coeffs(img.height, h);
  Image r;
  r.width = w;
  r.height = h;
  r.rgb.resize(size_t(w) * h * 3);
  for (int yy = 0; yy < h; ++yy) {
    const int ymin = cy.bounds[2 * yy], n = cy.bounds[2 * yy + 1];
    const int32_t* k = &cy.k[size_t(yy) * cy.ksize];
    for (int x = 0; x < w * 3; ++x) {
      int64_t ss = int64_t(1) << (kPrecisionBits - 1);
      for (int y = 0; y < n; ++y) ss += int64_t(tmp.rgb[size_t(ymin + y) * w * 3 + x]) * k[y];
      r.rgb[size_t(yy) * w * 3 + x] = clip8(ss);
    }
  }
  return r;
}

void preprocess_caffe(const Image& img, float* out, bool flip) {
  static constexpr float kMean[3] = {103.939f, 116.779f, 123.68f};  // B, G, R
  const int W = img.width;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < W; ++x) {
      const uint8_t* p = &img.rgb[(size_t(y) * W + (flip ? W - 1 - x : x)) * 3];
      float* q = out + (size_t(y) * W + x) * 3;
      q[0] = p[2] - kMean[0];
      q[1] = p[1] - kMean[1];
      q[2] = p[0] - kMean[2];
    }
}

std::vector<float> image_to_input(const uint8_t* data, size_t size, int input_h, int input_w, bool flip) {
  return image_to_input(decode_image(data, size), input_h, input_w, flip);
}

std::vector<float> image_to_input(const Image& rgb, int input_h, int input_w, bool flip) {
  Image img = resize_image(rgb, input_w, input_h);
  std::vector<float> out(size_t(input_h) * input_w * 3);
  preprocess_caffe(img, out.data(), flip);
  return out;
}

Image thumbnail(const Image& img, int max_side) {
  const int m = std::max(img.width, img.height);
  if (m <= max_side) return img;
  const int w = std::max(1, int(int64_t(img.width) * max_side / m)), h = std::max(1, int(int64_t(img.height) * max_side / m));
  return resize_image(img, w, h);
}

}  // namespace petal
