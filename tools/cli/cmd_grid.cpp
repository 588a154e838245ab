// petal grid DATA -o grid.png: a 3×3 sample of the training photos with their labels, as the
// Keras tutorial draws it.
#include <cstdio>

#include "common.h"
#include "dataset.h"
#include "error.h"
#include "image.h"
#include "plot.h"
#include "recipes.h"

namespace petal::cli {

void register_grid(CLI::App& app) {
  auto* cmd = app.add_subcommand("grid", "Draw a 3x3 grid of training photos with their class labels (PNG)");
  static std::string data, out, subset = "training";
  static double split = 0.2;
  static int64_t seed = 123;
  static int size = 180;
  cmd->add_option("data", data, "folder with one sub-folder of photos per class")->required();
  cmd->add_option("-o,--output", out, "PNG file to write")->required();
  cmd->add_option("--subset", subset, "training, validation or all")->capture_default_str();
  cmd->add_option("--validation-split", split, "fraction held out for validation")->capture_default_str();
  cmd->add_option("--seed", seed, "shuffle seed (numpy RandomState, as Keras)")->capture_default_str();
  cmd->add_option("--image-size", size, "cell size in pixels (photos are squashed to it, as the model sees them)")
      ->capture_default_str()->check(CLI::Range(32, 512));
  cmd->callback([] {
    Dataset d = open_dataset(data, split, checked_seed(seed));
    const auto idx = subset_indices(d, parse_subset(subset));
    const int gap = 10, label_h = 26, cols = 3;
    Canvas c(cols * (size + gap) + gap, cols * (size + label_h + gap) + gap);
    int shown = 0;
    for (size_t i = 0; i < idx.size() && shown < 9; ++i) {
      const DataFile& f = d.files[idx[i]];
      LoadedFile lf = load_data_file(f.path);
      Image img;
      try {
        if (!lf.error.empty()) throw Error(lf.error);
        img = resize_image(decode_image(lf.bytes.data(), lf.bytes.size()), size, size);
      } catch (const Error& e) {
        std::fprintf(stderr, "petal: warning: skipped %s: %s\n", f.path.c_str(), e.what());
        continue;
      }
      const int x = gap + (shown % cols) * (size + gap), y = gap + (shown / cols) * (size + label_h + gap);
      c.blit(img, x, y);
      const std::string& name = d.class_names[f.label];
      c.text(x + (size - Canvas::text_width(name, 2)) / 2, y + size + 6, name, Color{30, 30, 30}, 2);
      ++shown;
    }
    if (shown == 0) throw Error("no photo of the " + subset + " subset could be read");
    ensure_parent(out);
    c.save_png(out);
    std::printf("%s: %d photos of the %s subset, %dx%d\n", out.c_str(), shown, subset.c_str(), c.width(), c.height());
  });
}

}  // namespace petal::cli
