// Keras HDF5 weights reader. (Being written; see issue 2.)
#include "error.h"
#include "keras_import.h"
namespace petal {
ImportedBackbone import_keras_h5(const std::string& path) {
  throw Error("reading Keras HDF5 files is not built yet");
}
}  // namespace petal
