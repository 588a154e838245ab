// Photos through the engine one at a time with a progress bar (petal features, predict, teach):
// a photo that cannot be read or decoded gets its error and the others go on.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine.h"

namespace petal::cli {

struct Analysed {
  std::vector<float> features, logits;
  std::string error;
};

// Run `one` on each image with a progress bar; bad images get their error, the rest go on.
std::vector<Analysed> for_each_image(const std::vector<std::string>& images, const char* what,
                                     const std::function<void(const std::vector<uint8_t>&, size_t, Analysed&)>& one);
// Each image through the backbone: its features (and ImageNet logits when `want_logits`).
std::vector<Analysed> analyse(Engine& engine, const std::vector<std::string>& images, bool want_logits);

}  // namespace petal::cli
