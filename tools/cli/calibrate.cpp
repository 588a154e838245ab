#include "calibrate.h"

#include "backbone.h"
#include "common.h"
#include "dataset.h"
#include "engine.h"
#include "error.h"
#include "feature_cache.h"

namespace petal::cli {

size_t calibrate_on_photos(Bundle& b, const std::string& dir, size_t photos) {
  const Graph g = bundle_graph(b);
  const Preprocessing prep = preprocessing_of(b);
  const Dataset d = index_directory(dir);
  const size_t per = size_t(prep.size) * prep.size * 3;
  std::vector<float> inputs;
  size_t n = 0;
  Progress bar("calibration photos", photos);
  for (size_t i : subset_indices(d, Subset::Training)) {
    if (n == photos) break;
    auto lf = load_data_file(d.files[i].path);
    if (!lf.error.empty()) continue;
    inputs.resize((n + 1) * per);
    try {
      photo_to_input(lf.bytes.data(), lf.bytes.size(), prep, inputs.data() + n * per);
    } catch (const Error&) {
      continue;  // not decodable: not a calibration photo
    }
    bar.update(++n);
  }
  bar.finish();
  if (n == 0) throw Error("no photo of '" + dir + "' could be decoded for int8 calibration; give a folder of photos");
  inputs.resize(n * per);
  calibrate_int8(b, g, inputs.data(), n, 0);
  return n;
}

}  // namespace petal::cli
