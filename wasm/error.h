// petal::Error — every failure the engine reports to a user: a one-line message that says
// what was wrong and, where it helps, what to do. Thrown; the CLI prints it, Embind turns it
// into a JS exception.
#pragma once
#include <stdexcept>
#include <string>

namespace petal {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a failed allocation says, wherever it happens (the page's engine has at most
// limits::kMaxWasmMemoryBytes).
inline constexpr const char* kOutOfMemoryMessage =
    "out of memory in the engine; use fewer or smaller photos at once, or close other tabs";

}  // namespace petal
