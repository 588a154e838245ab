// Where the model looks: a class activation map (Grad-CAM) of one photo. The backbone's last
// feature map (h × w × channels, 9 × 9 × 2048 for ResNet-50 at 288²) is weighed channel by
// channel by how much each pooled feature raises the class's score (the head's gradient), summed,
// and only the positive part kept. The map is the ResNet's own grid over the whole photo, which
// the engine stretches to its input size, so cell (y, x) covers the same fraction of the photo.
#pragma once
#include <vector>

#include "head.h"

namespace petal {

struct Heatmap {
  int height = 0, width = 0;   // grid cells
  int cls = -1;                // the class it explains
  std::vector<float> values;   // height × width, row-major, in [0, 1] (1 at the peak; all 0 when nothing points to the class)
  float peak_x() const;        // the peak's centre as a fraction of the photo's width (0..1)
  float peak_y() const;        // … and height
};

// `map`: one image's feature map (h × w × c, NHWC); `features`: its pooled features (c values,
// the map's mean), where the head's gradient is taken.
Heatmap class_activation_map(const Head& head, const float* map, int h, int w, int c, const float* features, int cls);

}  // namespace petal
