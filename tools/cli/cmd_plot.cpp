// petal plot HISTORY -o accuracy.png: training vs validation accuracy and loss per epoch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common.h"
#include "error.h"
#include "plot.h"

namespace petal::cli {
using nlohmann::json;

void register_plot(CLI::App& app) {
  auto* cmd = app.add_subcommand("plot", "Draw training vs validation accuracy and loss per epoch from a history JSON (PNG)");
  static std::string history, out, title;
  cmd->add_option("history", history, "history JSON written by petal train")->required();
  cmd->add_option("-o,--output", out, "PNG file to write")->required();
  cmd->add_option("--title", title, "text above the charts");
  cmd->callback([] {
    auto bytes = read_file(history);
    json j;
    try {
      j = json::parse(bytes.begin(), bytes.end());
    } catch (const std::exception& e) {
      throw Error("'" + history + "' is not JSON: " + e.what());
    }
    const json& h = j.contains("history") ? j["history"] : j;  // Petal's file, or a bare Keras history dict
    auto series = [&](const char* k) {
      std::vector<double> v;
      if (h.contains(k) && h[k].is_array())
        for (auto& x : h[k])
          if (x.is_number()) v.push_back(x.get<double>());
      return v;
    };
    const auto acc = series("accuracy"), val_acc = series("val_accuracy"), loss = series("loss"), val_loss = series("val_loss");
    if (acc.empty() && loss.empty()) throw Error("'" + history + "' has no accuracy or loss per epoch (not a petal train history?)");
    const Color blue{31, 119, 180}, orange{255, 127, 14};
    double lo = 1;
    for (auto* v : {&acc, &val_acc})
      for (double x : *v) lo = std::min(lo, x);
    lo = std::max(0.0, std::floor((lo - 0.02) * 20) / 20);
    double hi = 0;
    for (auto* v : {&loss, &val_loss})
      for (double x : *v) hi = std::max(hi, x);
    const int top = title.empty() ? 0 : 30;
    Canvas c(1000, 420 + top);
    if (!title.empty()) c.text((1000 - Canvas::text_width(title, 2)) / 2, 10, title, Color{40, 40, 40}, 2);
    draw_line_chart(c, 0, top, 500, 420, "Training and Validation Accuracy", "epoch",
                    {{"Training Accuracy", acc, blue, false}, {"Validation Accuracy", val_acc, orange, false}}, lo, 1.0);
    draw_line_chart(c, 500, top, 500, 420, "Training and Validation Loss", "epoch",
                    {{"Training Loss", loss, blue, false}, {"Validation Loss", val_loss, orange, false}}, 0, hi > 0 ? hi * 1.1 : 1);
    ensure_parent(out);
    c.save_png(out);
    std::printf("%s: %zu epochs, %dx%d\n", out.c_str(), std::max(acc.size(), loss.size()), c.width(), c.height());
  });
}

}  // namespace petal::cli
