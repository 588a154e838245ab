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

}  // namespace petal
