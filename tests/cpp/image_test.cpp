// Image decoding on real photos of the data set: JPEG, PNG, BMP and GIF made from them, EXIF
// orientations 1–8 spliced into a photo's bytes (both byte orders), and the inputs users get
// wrong: truncated files, text files, empty files, other formats.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "error.h"
#include "image.h"
#include "image_writers.h"
#include "test_support.h"

using namespace petal;
using namespace petal::imgtest;

namespace {

double mean_abs_diff(const Image& a, const Image& b) {
  double s = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) s += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return s / double(a.rgb.size());
}

}  // namespace

TEST(Image, DecodesJpegPngBmpGifOfARealPhoto) {
  ASSERT_FALSE(test::photo().empty());
  const ImageInfo info = probe_image(test::photo().data(), test::photo().size());
  EXPECT_EQ(info.format, "jpeg");
  EXPECT_EQ(info.width, 320);
  EXPECT_EQ(info.height, 242);
  const Image img = decode_image(test::photo().data(), test::photo().size());
  ASSERT_EQ(img.width, 320);
  ASSERT_EQ(img.height, 242);
  ASSERT_EQ(img.rgb.size(), size_t(320 * 242 * 3));
  // Not a flat image: the decode produced the photo's content.
  EXPECT_GT(*std::max_element(img.rgb.begin(), img.rgb.end()) - *std::min_element(img.rgb.begin(), img.rgb.end()), 200);

  struct Case { const char* format; Bytes bytes; Image expect; double tolerance; };
  const Case cases[] = {
      {"png", encode_png(img), img, 0},
      {"bmp", encode_bmp(img), img, 0},
      {"gif", encode_gif(img), quantize(img), 0},
      {"jpeg", encode_jpeg(img, 95), img, 3.0},  // lossy: close, not equal
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.format);
    const ImageInfo i = probe_image(c.bytes.data(), c.bytes.size());
    EXPECT_EQ(i.format, c.format);
    EXPECT_EQ(i.width, 320);
    EXPECT_EQ(i.height, 242);
    const Image d = decode_image(c.bytes.data(), c.bytes.size());
    ASSERT_EQ(d.width, 320);
    ASSERT_EQ(d.height, 242);
    if (c.tolerance == 0) EXPECT_TRUE(d.rgb == c.expect.rgb) << "pixels differ";
    else EXPECT_LE(mean_abs_diff(d, c.expect), c.tolerance);
  }
}

// EXIF orientation: the stored image's row 0 / column 0 are shown at these sides
// (EXIF 2.3, tag 0x0112). Written from the specification's table, not from the engine's code.
TEST(Image, ExifOrientationsOneToEight) {
  ASSERT_FALSE(test::photo().empty());
  ASSERT_EQ(exif_orientation(test::photo().data(), test::photo().size()), 1) << "the test photo should carry no EXIF";
  const Image stored = decode_image(test::photo().data(), test::photo().size());
  const int W = stored.width, H = stored.height;
  ASSERT_NE(W, H);
  enum Side { Top, Bottom, Left, Right };
  const struct { Side row0, col0; } table[9] = {{},
                                               {Top, Left},    {Top, Right},   {Bottom, Right}, {Bottom, Left},
                                               {Left, Top},    {Right, Top},   {Right, Bottom}, {Left, Bottom}};
  for (int o = 1; o <= 8; ++o)
    for (bool be : {false, true}) {
      SCOPED_TRACE("orientation " + std::to_string(o) + (be ? " (big-endian)" : " (little-endian)"));
      const Bytes b = insert_segment(test::photo(), exif_segment(o, be));
      EXPECT_EQ(exif_orientation(b.data(), b.size()), o);
      const Image shown = decode_image(b.data(), b.size());
      const bool transposed = table[o].row0 == Left || table[o].row0 == Right;
      ASSERT_EQ(shown.width, transposed ? H : W);
      ASSERT_EQ(shown.height, transposed ? W : H);
      size_t wrong = 0;
      for (int sy = 0; sy < H; ++sy)
        for (int sx = 0; sx < W; ++sx) {
          int dx, dy;
          if (!transposed) {
            dy = table[o].row0 == Top ? sy : H - 1 - sy;
            dx = table[o].col0 == Left ? sx : W - 1 - sx;
          } else {
            dx = table[o].row0 == Left ? sy : H - 1 - sy;
            dy = table[o].col0 == Top ? sx : W - 1 - sx;
          }
          wrong += std::memcmp(&stored.rgb[(size_t(sy) * W + sx) * 3], &shown.rgb[(size_t(dy) * shown.width + dx) * 3], 3) != 0;
        }
      EXPECT_EQ(wrong, 0u) << "pixels in the wrong place";
    }
}

TEST(Image, ExifWithoutOrientationOrOutOfRangeMeansUpright) {
  // Real photos of the data set whose EXIF has no orientation tag.
  const std::string p = test::flowers_dir() + "/dandelion/12998979765_3de89e7195_n.jpg";
  const Bytes real = test::read_bytes(p);
  ASSERT_FALSE(real.empty()) << "missing " << p;
  EXPECT_EQ(exif_orientation(real.data(), real.size()), 1);
  const Image d = decode_image(real.data(), real.size());
  EXPECT_EQ(d.width, 320);
  EXPECT_EQ(d.height, 213);
  for (int bad : {0, 9, 0xFFFF}) {
    const Bytes b = insert_segment(test::photo(), exif_segment(bad, false));
    EXPECT_EQ(exif_orientation(b.data(), b.size()), 1) << bad;
  }
  // An EXIF segment cut short (its length field saying so) is read only as far as it goes: the
  // orientation entry ends at byte 32 of the segment; shorter cuts mean upright.
  const Bytes seg = exif_segment(6, true);
  ASSERT_EQ(seg.size(), 36u);
  for (size_t n = 4; n <= seg.size(); ++n) {
    Bytes cut(seg.begin(), seg.begin() + long(n));
    cut[2] = uint8_t((n - 2) >> 8);
    cut[3] = uint8_t(n - 2);
    const Bytes b = insert_segment(test::photo(), cut);
    EXPECT_EQ(exif_orientation(b.data(), b.size()), n >= 32 ? 6 : 1) << n;
  }
}

TEST(Image, TruncatedFilesAreRefused) {
  ASSERT_FALSE(test::photo().empty());
  const Bytes& j = test::photo();
  for (size_t n : {size_t(2), size_t(3), size_t(100), j.size() / 2, j.size() - 2}) {
    SCOPED_TRACE("JPEG cut to " + std::to_string(n) + " bytes");
    const std::string m = test::error_of([&] { decode_image(j.data(), n); });
    EXPECT_TRUE(m.find("truncated") != std::string::npos || m.find("damaged") != std::string::npos ||
                m.find("not a supported image") != std::string::npos)
        << m;
  }
  EXPECT_ERROR_HAS(decode_image(j.data(), j.size() / 2), "the JPEG is truncated");
  const Image img = decode_image(j.data(), j.size());
  for (auto [fmt, bytes] : {std::pair{"png", encode_png(img)}, std::pair{"gif", encode_gif(img)}, std::pair{"bmp", encode_bmp(img)}}) {
    SCOPED_TRACE(fmt);
    EXPECT_THROW(decode_image(bytes.data(), bytes.size() / 2), Error);
    EXPECT_THROW(decode_image(bytes.data(), 20), Error);
  }
}

TEST(Image, NotImagesGetAClearReason) {
  const std::string text = "daisy,roses,tulips\n1,2,3\n";
  EXPECT_ERROR_HAS(decode_image(reinterpret_cast<const uint8_t*>(text.data()), text.size()), "this is a text file, not an image");
  EXPECT_ERROR_HAS(probe_image(reinterpret_cast<const uint8_t*>(text.data()), text.size()), "text file");
  EXPECT_ERROR_HAS(decode_image(nullptr, 0), "the file is empty (0 bytes)");
  const uint8_t one = 0;
  EXPECT_ERROR_HAS(decode_image(&one, 0), "the file is empty (0 bytes)");
  const uint8_t heic[] = {0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0};
  EXPECT_ERROR_HAS(decode_image(heic, sizeof heic), "HEIC/AVIF");
  const uint8_t webp[] = {'R', 'I', 'F', 'F', 0x10, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '};
  EXPECT_ERROR_HAS(decode_image(webp, sizeof webp), "WebP images are not supported");
  const uint8_t binary[] = {0x00, 0x01, 0xFE, 0x80, 0x7F, 0x10, 0x00, 0xC3};
  EXPECT_ERROR_HAS(decode_image(binary, sizeof binary), "not a supported image (JPEG, PNG, GIF or BMP)");
}

// probe_image reads the header only: a PNG header without pixel data probes fine and then
// fails to decode with a reason.
TEST(Image, ProbeReadsOnlyTheHeader) {
  const Bytes h = png_header(640, 480);
  const ImageInfo i = probe_image(h.data(), h.size());
  EXPECT_EQ(i.format, "png");
  EXPECT_EQ(i.width, 640);
  EXPECT_EQ(i.height, 480);
  EXPECT_ERROR_HAS(decode_image(h.data(), h.size()), "cannot decode the png image");
}
