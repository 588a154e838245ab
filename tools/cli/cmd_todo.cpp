// Commands being written in parallel register here until their own files land.
#include "common.h"
namespace petal::cli {
}  // namespace petal::cli
