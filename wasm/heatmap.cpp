#include "heatmap.h"

#include <algorithm>

#include "error.h"

namespace petal {

Heatmap class_activation_map(const Head& head, const float* map, int h, int w, int c, const float* features, int cls) {
  if (c != head.in()) throw Error("the feature map has " + std::to_string(c) + " channels but the head expects " + std::to_string(head.in()));
  if (h <= 0 || w <= 0) throw Error("the feature map is empty");
  const std::vector<float> g = head.input_gradient(features, cls);
  Heatmap m;
  m.height = h;
  m.width = w;
  m.cls = cls;
  m.values.resize(size_t(h) * w);
  float top = 0;
  for (size_t p = 0; p < m.values.size(); ++p) {
    const float* a = map + p * size_t(c);
    double s = 0;
    for (int k = 0; k < c; ++k) s += double(g[size_t(k)]) * a[k];
    m.values[p] = std::max(0.f, float(s));
    top = std::max(top, m.values[p]);
  }
  if (top > 0)
    for (float& v : m.values) v /= top;
  return m;
}

static size_t peak_index(const Heatmap& m) {
  return size_t(std::max_element(m.values.begin(), m.values.end()) - m.values.begin());
}

float Heatmap::peak_x() const { return values.empty() ? 0.5f : (float(peak_index(*this) % size_t(width)) + 0.5f) / float(width); }
float Heatmap::peak_y() const { return values.empty() ? 0.5f : (float(peak_index(*this) / size_t(width)) + 0.5f) / float(height); }

}  // namespace petal
