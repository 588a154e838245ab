// petal — precompute Petal models: import weights, extract features, train, evaluate,
// predict, export, bench. Results go to stdout (one JSON document with --json); messages and
// progress go to stderr. Every error is one line and a non-zero exit code.
#include <cstdio>

#include "common.h"
#include "error.h"

int main(int argc, char** argv) {
  CLI::App app{"petal: an image classifier on a pretrained ResNet-50 (see README.md; `petal COMMAND --help` for each command)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "petal 0.1.0 (bundle format 1)");
  petal::cli::register_import(app);
  petal::cli::register_features(app);
  petal::cli::register_predict(app);
  petal::cli::register_grid(app);
  petal::cli::register_extract(app);
  petal::cli::register_summary(app);
  petal::cli::register_train(app);
  petal::cli::register_plot(app);
  petal::cli::register_eval(app);
  petal::cli::register_download(app);
  petal::cli::register_export(app);
  petal::cli::register_bench(app);
  petal::cli::register_onnx(app);
  petal::cli::register_quantize(app);
  petal::cli::register_preprocess(app);
  petal::cli::register_teach(app);
  petal::cli::register_fewshot(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const petal::Error& e) {
    std::fprintf(stderr, "petal: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "petal: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petal: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
