// Static int8 calibration on photos: the activation ranges the fp32 backbone sees on photos of a
// folder's training split (Keras 80/20, seed 123), stored in the bundle (see calibrate_int8).
#pragma once
#include <string>

#include "bundle.h"

namespace petal::cli {

// Adds kInt8RangesTensor and the int8 marker to `b`; returns the number of photos used (those
// that do not decode are passed over). Throws petal::Error when none could be used.
size_t calibrate_on_photos(Bundle& b, const std::string& dir, size_t photos);

}  // namespace petal::cli
