#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common.h"
#include "error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace petal::cli {

namespace {
// stb_easy_font knows printable ASCII only (it indexes a table by the byte): anything else → '?'.
std::string ascii(const std::string& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 32 && c < 127) r += char(c);
    else if (c == '\n') r += '\n';
    else if ((c & 0xC0) != 0x80) r += '?';  // one '?' per UTF-8 character
  }
  return r;
}
}  // namespace

Canvas::Canvas(int w, int h, Color bg) : w_(std::max(1, w)), h_(std::max(1, h)), rgb_(size_t(w_) * h_ * 3) {
  for (size_t i = 0; i < size_t(w_) * h_; ++i) {
    rgb_[3 * i] = bg.r;
    rgb_[3 * i + 1] = bg.g;
    rgb_[3 * i + 2] = bg.b;
  }
}

void Canvas::put(int x, int y, Color c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &rgb_[(size_t(y) * w_ + x) * 3];
  p[0] = c.r;
  p[1] = c.g;
  p[2] = c.b;
}

void Canvas::fill_rect(int x, int y, int w, int h, Color c) {
  const int x0 = std::max(0, x), y0 = std::max(0, y), x1 = std::min(w_, x + w), y1 = std::min(h_, y + h);
  for (int yy = y0; yy < y1; ++yy)
    for (int xx = x0; xx < x1; ++xx) put(xx, yy, c);
}

void Canvas::rect_outline(int x, int y, int w, int h, Color c) {
  fill_rect(x, y, w, 1, c);
  fill_rect(x, y + h - 1, w, 1, c);
  fill_rect(x, y, 1, h, c);
  fill_rect(x + w - 1, y, 1, h, c);
}

void Canvas::dot(double cx, double cy, double r, Color c) {
  const int x0 = int(std::floor(cx - r)), x1 = int(std::ceil(cx + r)), y0 = int(std::floor(cy - r)), y1 = int(std::ceil(cy + r));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x)
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) put(x, y, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, Color c, double thickness, bool dashed) {
  const double len = std::hypot(x1 - x0, y1 - y0);
  const int steps = std::max(1, int(std::ceil(len * 2)));
  for (int i = 0; i <= steps; ++i) {
    const double t = double(i) / steps;
    if (dashed && std::fmod(t * len, 12.0) > 7.0) continue;
    dot(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, thickness / 2, c);
  }
}

void Canvas::text(int x, int y, const std::string& s, Color c, int scale) {
  std::string t = ascii(s);
  if (t.empty()) return;
  std::vector<char> buf(t.size() * 300 + 64);
  const int quads = stb_easy_font_print(0, 0, t.data(), nullptr, buf.data(), int(buf.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(buf.data() + q * 64);
    const float* v2 = reinterpret_cast<const float*>(buf.data() + q * 64 + 32);
    const int qx = int(std::lround(v0[0] * scale)), qy = int(std::lround(v0[1] * scale));
    const int qw = int(std::lround((v2[0] - v0[0]) * scale)), qh = int(std::lround((v2[1] - v0[1]) * scale));
    fill_rect(x + qx, y + qy, std::max(qw, 1), std::max(qh, 1), c);
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  std::string t = ascii(s);
  return t.empty() ? 0 : stb_easy_font_width(t.data()) * scale;
}

void Canvas::blit(const Image& img, int x, int y) {
  for (int yy = 0; yy < img.height; ++yy)
    for (int xx = 0; xx < img.width; ++xx) {
      const uint8_t* p = &img.rgb[(size_t(yy) * img.width + xx) * 3];
      put(x + xx, y + yy, Color{p[0], p[1], p[2]});
    }
}

std::string Canvas::png() const {
  std::string out;
  auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(size)); };
  if (!stbi_write_png_to_func(sink, &out, w_, h_, 3, rgb_.data(), w_ * 3)) throw Error("encoding the PNG failed");
  return out;
}

void Canvas::save_png(const std::string& path) const { write_file(path, png()); }

Canvas draw_heatmap(const Image& photo, const Heatmap& map, const std::string& caption, int max_side) {
  Image over = thumbnail(photo, max_side);
  // bilinear between cell centres: the grid covers the whole photo (the engine stretches it)
  auto value = [&](double fx, double fy) {
    const double gx = std::clamp(fx * map.width - 0.5, 0.0, map.width - 1.0), gy = std::clamp(fy * map.height - 0.5, 0.0, map.height - 1.0);
    const int x0 = int(gx), y0 = int(gy), x1 = std::min(x0 + 1, map.width - 1), y1 = std::min(y0 + 1, map.height - 1);
    const double ax = gx - x0, ay = gy - y0;
    auto at = [&](int x, int y) { return double(map.values[size_t(y) * map.width + x]); };
    return (1 - ay) * ((1 - ax) * at(x0, y0) + ax * at(x1, y0)) + ay * ((1 - ax) * at(x0, y1) + ax * at(x1, y1));
  };
  for (int y = 0; y < over.height; ++y)
    for (int x = 0; x < over.width; ++x) {
      // where it does not look fades to dark; where it does gets a red tint
      const double v = value((x + 0.5) / over.width, (y + 0.5) / over.height), a = 0.45 * v, dim = 0.3 + 0.7 * v;
      const double col[3] = {255, 40, 40};
      uint8_t* p = &over.rgb[(size_t(y) * over.width + x) * 3];
      for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround((1 - a) * dim * p[k] + a * col[k]));
    }
  Canvas out(over.width, over.height + 8 + Canvas::text_height(2), Color{255, 255, 255});
  out.blit(over, 0, 0);
  out.text(4, over.height + 4, caption, Color{40, 40, 40}, Canvas::text_width(caption, 2) <= over.width - 8 ? 2 : 1);
  return out;
}

std::string encode_jpeg(const uint8_t* rgb, int w, int h, int quality) {
  std::string out;
  auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size_t(size)); };
  if (!stbi_write_jpg_to_func(sink, &out, w, h, 3, rgb, quality)) throw Error("encoding the JPEG failed");
  return out;
}

// ---------------------------------------------------------------- charts

namespace {
std::string tick_label(double v, double step) {
  char b[32];
  if (step >= 1) std::snprintf(b, sizeof b, "%.0f", v);
  else if (step >= 0.1) std::snprintf(b, sizeof b, "%.1f", v);
  else std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}
double nice_step(double range, int target) {
  const double raw = range / std::max(1, target), mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}
const Color kInk{40, 40, 40}, kGrid{225, 225, 225};
}  // namespace

void draw_line_chart(Canvas& c, int x, int y, int w, int h, const std::string& title, const std::string& x_label,
                     const std::vector<Series>& series, double y_min, double y_max) {
  if (!(y_max > y_min)) y_max = y_min + 1;
  size_t n = 0;
  for (auto& s : series) n = std::max(n, s.y.size());
  const int left = 48, right = 12, top = 28, bottom = 34;
  const int px = x + left, py = y + top, pw = w - left - right, ph = h - top - bottom;
  c.text(x + (w - Canvas::text_width(title, 2)) / 2, y + 6, title, kInk, 2);
  auto X = [&](double i) { return px + (n > 1 ? (i - 1) / double(n - 1) : 0.5) * pw; };
  auto Y = [&](double v) { return py + ph - (std::clamp(v, y_min, y_max) - y_min) / (y_max - y_min) * ph; };
  const double ys = nice_step(y_max - y_min, 5);
  for (double v = std::ceil(y_min / ys) * ys; v <= y_max + 1e-9; v += ys) {
    const int yy = int(std::lround(Y(v)));
    c.fill_rect(px, yy, pw, 1, kGrid);
    const std::string l = tick_label(v, ys);
    c.text(px - 6 - Canvas::text_width(l), yy - 3, l, kInk);
  }
  const double xs = n > 1 ? std::max(1.0, nice_step(double(n - 1), 8)) : 1;
  for (double i = 1; i <= double(std::max<size_t>(n, 1)) + 1e-9; i += xs) {
    const int xx = int(std::lround(X(i)));
    c.fill_rect(xx, py + ph, 1, 4, kInk);
    const std::string l = tick_label(i, 1);
    c.text(xx - Canvas::text_width(l) / 2, py + ph + 7, l, kInk);
  }
  c.text(px + (pw - Canvas::text_width(x_label)) / 2, py + ph + 20, x_label, kInk);
  c.rect_outline(px, py, pw + 1, ph + 1, kInk);
  for (auto& s : series) {
    for (size_t i = 1; i < s.y.size(); ++i) c.line(X(double(i)), Y(s.y[i - 1]), X(double(i + 1)), Y(s.y[i]), s.color, 2.5, s.dashed);
    for (size_t i = 0; i < s.y.size(); ++i) c.dot(X(double(i + 1)), Y(s.y[i]), 3, s.color);
  }
  // legend, top-left inside the plot
  int ly = py + 8;
  int lw = 0;
  for (auto& s : series) lw = std::max(lw, Canvas::text_width(s.name));
  c.fill_rect(px + 6, py + 4, lw + 40, int(series.size()) * 14 + 8, Color{255, 255, 255});
  c.rect_outline(px + 6, py + 4, lw + 40, int(series.size()) * 14 + 8, kGrid);
  for (auto& s : series) {
    c.line(px + 12, ly + 3, px + 34, ly + 3, s.color, 2.5, s.dashed);
    c.text(px + 40, ly, s.name, kInk);
    ly += 14;
  }
}

Canvas draw_confusion(const std::vector<std::vector<int>>& m, const std::vector<std::string>& names,
                      const std::string& title) {
  const int n = int(m.size());
  int label_w = 0;
  for (auto& s : names) label_w = std::max(label_w, Canvas::text_width(s));
  const int cell = std::max(44, std::min(80, 600 / std::max(1, n)));
  const int left = label_w + 40, top = 56, W = left + n * cell + 24, H = top + n * cell + label_w + 44;
  Canvas c(W, H);
  c.text((W - Canvas::text_width(title, 2)) / 2, 10, title, kInk, 2);
  c.text(left + (n * cell - Canvas::text_width("predicted")) / 2, top - 14, "predicted", kInk);
  c.text(6, top + n * cell / 2 - 3, "true", kInk);
  for (int t = 0; t < n; ++t) {
    int row_total = 0;
    for (int p = 0; p < n; ++p) row_total += m[t][p];
    for (int p = 0; p < n; ++p) {
      const double f = row_total ? double(m[t][p]) / row_total : 0;
      const Color bg = t == p ? Color{uint8_t(255 - 200 * f), uint8_t(255 - 90 * f), uint8_t(255 - 200 * f)}
                              : Color{255, uint8_t(255 - 200 * std::min(1.0, 4 * f)), uint8_t(255 - 200 * std::min(1.0, 4 * f))};
      c.fill_rect(left + p * cell, top + t * cell, cell, cell, bg);
      c.rect_outline(left + p * cell, top + t * cell, cell + 1, cell + 1, kGrid);
      const std::string v = std::to_string(m[t][p]);
      c.text(left + p * cell + (cell - Canvas::text_width(v, 2)) / 2, top + t * cell + cell / 2 - 7, v, kInk, 2);
    }
    c.text(left - 6 - Canvas::text_width(names[t]), top + t * cell + cell / 2 - 3, names[t], kInk);
    // column labels below, one per line-ish (stagger when long)
    const int tx = left + t * cell + (cell - Canvas::text_width(names[t])) / 2;
    c.text(tx, top + n * cell + 6 + (t % 2) * 12 * (label_w > cell - 4), names[t], kInk);
  }
  return c;
}

}  // namespace petal::cli
