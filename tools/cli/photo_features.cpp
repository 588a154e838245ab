#include "photo_features.h"

#include <cstdio>

#include "common.h"
#include "dataset.h"
#include "error.h"

namespace petal::cli {

std::vector<Analysed> for_each_image(const std::vector<std::string>& images, const char* what,
                                     const std::function<void(const std::vector<uint8_t>&, size_t, Analysed&)>& one) {
  std::vector<Analysed> out(images.size());
  Progress bar(what, images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    try {
      LoadedFile lf = load_data_file(images[i]);  // checks the size limit before reading
      if (!lf.error.empty()) throw Error(lf.error);
      one(lf.bytes, i, out[i]);
    } catch (const Error& e) {
      out[i].error = e.what();
      std::fprintf(stderr, "%spetal: %s: %s\n", images.size() > 1 ? "\n" : "", images[i].c_str(), e.what());
    }
    if (images.size() > 1) bar.update(i + 1);
  }
  if (images.size() > 1) bar.finish();
  return out;
}

std::vector<Analysed> analyse(Engine& engine, const std::vector<std::string>& images, bool want_logits) {
  return for_each_image(images, "features", [&](const std::vector<uint8_t>& bytes, size_t, Analysed& a) {
    a.features = engine.features_of_bytes(bytes.data(), bytes.size(), false, want_logits ? &a.logits : nullptr);
  });
}

}  // namespace petal::cli
