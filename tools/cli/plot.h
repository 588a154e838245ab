// Tiny raster drawing for the CLI's pictures (sample grid, training curves, confusion matrix):
// an RGB canvas with rectangles, thick lines and stb_easy_font text, written as PNG with
// stb_image_write. No anti-aliasing, no fonts to ship.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "heatmap.h"
#include "image.h"

namespace petal::cli {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int w, int h, Color bg = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<uint8_t>& rgb() const { return rgb_; }

  void fill_rect(int x, int y, int w, int h, Color c);
  void rect_outline(int x, int y, int w, int h, Color c);
  void line(double x0, double y0, double x1, double y1, Color c, double thickness = 2, bool dashed = false);
  void dot(double x, double y, double radius, Color c);
  // stb_easy_font text (ASCII; about 7·scale px high) with its top-left at (x, y).
  void text(int x, int y, const std::string& s, Color c, int scale = 1);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1) { return 7 * scale; }
  void blit(const Image& img, int x, int y);

  std::string png() const;                // encoded PNG bytes
  void save_png(const std::string& path) const;  // atomic write

 private:
  void put(int x, int y, Color c);
  int w_, h_;
  std::vector<uint8_t> rgb_;
};

// JPEG bytes of an RGB image (stb_image_write), e.g. for a synthetic test photo.
std::string encode_jpeg(const uint8_t* rgb, int w, int h, int quality);

// A line chart: one line per series over x = 1..n (epochs), axes with ticks, title, legend.
struct Series {
  std::string name;
  std::vector<double> y;
  Color color;
  bool dashed = false;
};
void draw_line_chart(Canvas& c, int x, int y, int w, int h, const std::string& title, const std::string& x_label,
                     const std::vector<Series>& series, double y_min, double y_max);

// A confusion matrix as a heat map with counts, class names on both axes.
Canvas draw_confusion(const std::vector<std::vector<int>>& m, const std::vector<std::string>& names,
                      const std::string& title);

// A photo (shrunk to at most `max_side`) with its heatmap over it: tinted red where the model
// looks, darkened where it does not, and `caption` in a strip below.
Canvas draw_heatmap(const Image& photo, const Heatmap& map, const std::string& caption, int max_side = 512);

}  // namespace petal::cli
