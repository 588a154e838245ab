// libFuzzer target: the Keras HDF5 weights importer (import_keras_h5_bytes; libhdf5 reads the
// bytes through its in-memory file driver). Note: Debian's libhdf5 is not instrumented, so
// coverage guidance comes from Petal's reader only, and ASan sees libhdf5's memory errors only
// where they pass through intercepted calls (memcpy, malloc, ...) or fault.
#include <cstdlib>

#include "error.h"
#include "graph.h"
#include "keras_import.h"

using namespace petal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ImportedBackbone m = import_keras_h5_bytes(data, size, "the file");
    Graph g = Graph::from_json(m.graph.to_json());
    if (g.to_json() != m.graph.to_json()) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
