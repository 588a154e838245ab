// petal preprocess: photos as the exact tensor the engine feeds its backbone. An exported model
// expects Petal's preprocessing, so other runtimes can be given (and checked on) the same input.
#include <string>
#include <vector>

#include "common.h"
#include "error.h"
#include "image.h"
#include "petal_limits.h"

namespace petal::cli {

void register_preprocess(CLI::App& app) {
  auto* pre = app.add_subcommand("preprocess", "Write photos as the model's input tensor (n x H x W x 3 float32, "
                                               "little-endian), decoded and preprocessed exactly as the engine does");
  static std::vector<std::string> images;
  static std::string pre_out;
  static int size = 224;
  pre->add_option("images", images, "image files (JPEG, PNG, BMP, GIF)")->required();
  pre->add_option("-o,--output", pre_out, "file to write (raw float32, NHWC)")->required();
  pre->add_option("--size", size, "input size in pixels (the model's input; ResNet-50: 224)")
      ->capture_default_str()
      ->check(CLI::Range(petal::limits::kMinInputSide, petal::limits::kMaxInputSide));
  pre->callback([] {
    std::string data;
    data.reserve(images.size() * size_t(size) * size * 3 * sizeof(float));
    for (auto& f : images) {
      auto bytes = read_file(f);
      std::vector<float> x;
      try {
        x = image_to_input(bytes.data(), bytes.size(), size, size);
      } catch (const Error& e) {
        throw Error("'" + f + "': " + e.what());
      }
      data.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float));
    }
    write_file(pre_out, data);
    std::fprintf(stderr, "petal: wrote %s (%zu x %d x %d x 3 float32)\n", pre_out.c_str(), images.size(), size, size);
  });
}

}  // namespace petal::cli
