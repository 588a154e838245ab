// Commands being written in parallel register here until their own files land.
#include "common.h"
namespace petal::cli {
void register_bench(CLI::App&) {}
}  // namespace petal::cli
