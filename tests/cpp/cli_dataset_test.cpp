// The `petal` data set commands end to end, as a user runs them: real photos (a few per class,
// plus broken files), the real ResNet-50 backbone, a private feature cache.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "bundle.h"
#include "engine.h"
#include "feature_cache.h"
#include "image.h"
#include "test_support.h"
#include <stb/stb_image.h>

namespace fs = std::filesystem;
namespace test = petal::test;
using nlohmann::json;

namespace {

struct Result {
  int code = -1;
  std::string out, err;
  json j() const {
    try {
      return json::parse(out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "stdout is not JSON: " << e.what() << "\n" << out << "\nstderr:\n" << err;
      return json();
    }
  }
};

// A temporary world: data folders, a private feature cache, the real backbone.
class Cli : public ::testing::Test {
 protected:
  test::TempDir tmp_dir{"petal-cli-test"};
  const std::string tmp = tmp_dir.path;
  void SetUp() override {
    ASSERT_TRUE(fs::exists(test::backbone_path())) << "missing the backbone " << test::backbone_path()
                                             << ": run tools/setup.sh (it runs petal import) or set PETAL_BACKBONE";
    ASSERT_TRUE(fs::is_directory(test::flowers_dir())) << "missing " << test::flowers_dir() << ": set PETAL_DATA to the shared data folder";
  }
  // Runs `exe` (the petal built here, or a copy of it) with a private cache and the real backbone.
  Result petal(const std::string& args, const std::string& env = "", const std::string& exe = PETAL_CLI) {
    Result r;
    const std::string o = tmp + "/stdout", e = tmp + "/stderr";
    const std::string cmd = "env PETAL_CACHE=" + tmp + "/cache PETAL_BACKBONE=" + test::backbone_path() + " " + env + " " + exe + " " +
                            args + " > " + o + " 2> " + e;
    const int st = std::system(cmd.c_str());
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = test::read_text(o);
    r.err = test::read_text(e);
    return r;
  }
  // A small flower set: `per_class` photos of each class as symlinks to the real files.
  std::string make_set(const std::string& name, const std::vector<std::string>& classes, size_t per_class) {
    const std::string root = tmp + "/" + name;
    for (auto& c : classes) {
      fs::create_directories(root + "/" + c);
      for (auto& p : test::flower_photos(c, per_class)) fs::create_symlink(p, root + "/" + c + "/" + fs::path(p).filename().string());
    }
    return root;
  }
};

bool png_size(const std::string& path, int& w, int& h) {
  const std::string b = test::read_text(path);
  int ch = 0;
  uint8_t* px = stbi_load_from_memory(reinterpret_cast<const uint8_t*>(b.data()), int(b.size()), &w, &h, &ch, 3);
  if (!px) return false;
  stbi_image_free(px);
  return true;
}

}  // namespace

// extract → (cached) → train → plot → eval ↔ predict → summary → export, on a set with a corrupt
// JPEG, a README, a text file named .jpg, a 0-byte JPEG, a symlink loop and a one-photo class.
// long function: one user's session, each step reading what the step before it wrote.
TEST_F(Cli, PipelineEndToEnd) {
  const std::string data = make_set("flowers", {"daisy", "roses"}, 6);
  fs::create_directories(data + "/tulips");
  fs::create_symlink(test::flower_photos("tulips", 1)[0], data + "/tulips/only.jpg");  // a class with one photo
  const std::string real = test::read_text(test::flower_photos("daisy", 1, 10)[0]);
  test::write_text(data + "/daisy/corrupt.jpg", real.substr(0, real.size() / 3));  // truncated JPEG
  test::write_text(data + "/daisy/README", "These are daisies.\n");
  test::write_text(data + "/roses/notes.jpg", "a text file with an image name\n");
  test::write_text(data + "/roses/empty.jpg", "");
  fs::create_symlink(data + "/roses/loop.jpg", data + "/roses/loop.jpg");
  const size_t good = 13, bad = 4;

  Result e1 = petal("extract " + data + " --no-augment --json");
  ASSERT_EQ(e1.code, 0) << e1.err;
  json j1 = e1.j();
  EXPECT_EQ(j1["with_features"], good);
  EXPECT_EQ(j1["computed"], good);
  EXPECT_EQ(j1["from_cache"], 0);
  ASSERT_EQ(j1["skipped"].size(), bad);
  std::map<std::string, std::string> reasons;
  for (auto& s : j1["skipped"]) reasons[fs::path(s["file"].get<std::string>()).filename().string()] = s["reason"];
  EXPECT_NE(reasons["corrupt.jpg"].find("truncated"), std::string::npos) << reasons["corrupt.jpg"];
  EXPECT_NE(reasons["notes.jpg"].find("text file"), std::string::npos) << reasons["notes.jpg"];
  EXPECT_EQ(reasons["empty.jpg"], "the file is empty (0 bytes)");
  EXPECT_NE(reasons["loop.jpg"].find("symlink loop"), std::string::npos);
  // one warning per skipped file, naming it (README: not an image)
  for (const char* f : {"daisy/corrupt.jpg", "roses/notes.jpg", "roses/empty.jpg", "roses/loop.jpg", "daisy/README"}) {
    const std::string warning = "petal: warning: skipped " + data + "/" + f + ": ";
    const size_t at = e1.err.find(warning);
    EXPECT_NE(at, std::string::npos) << warning << "\n" << e1.err;
    EXPECT_EQ(e1.err.find(warning, at + 1), std::string::npos) << "one warning each: " << f;
  }
  EXPECT_NE(e1.err.find("daisy/README: not an image file"), std::string::npos) << e1.err;

  // Second run: nothing computed.
  Result e2 = petal("extract " + data + " --no-augment --json");
  ASSERT_EQ(e2.code, 0) << e2.err;
  EXPECT_EQ(e2.j()["computed"], 0);
  EXPECT_EQ(e2.j()["from_cache"], good);

  // Renamed copies of the same photos and another split: still nothing computed.
  // (Lexical paths only: fs::relative would resolve the symlinks into the shared data folder.)
  const std::string moved = tmp + "/renamed";
  for (auto& e : fs::recursive_directory_iterator(data)) {
    std::error_code ec;
    if (!fs::is_regular_file(e.path(), ec) || e.path().extension() != ".jpg") continue;
    const fs::path rel = e.path().lexically_relative(data);
    const std::string dest = moved + "/" + rel.parent_path().string() + "/copy-of-" + e.path().filename().string();
    ASSERT_EQ(fs::path(dest).lexically_normal().string().rfind(tmp + "/", 0), 0u) << dest;
    fs::create_directories(fs::path(dest).parent_path());
    fs::copy_file(e.path(), dest);
  }
  Result e3 = petal("extract " + moved + " --no-augment --seed 99 --json");
  ASSERT_EQ(e3.code, 0) << e3.err;
  EXPECT_EQ(e3.j()["computed"], 0);

  // Train (features from the cache), history, plot.
  const std::string model = tmp + "/out/m.safetensors";
  Result t = petal("train " + data + " -o " + model + " --epochs 4 --no-augment --validation-split 0.3 --json");
  ASSERT_EQ(t.code, 0) << t.err;
  json tj = t.j();
  EXPECT_EQ(tj["computed"], 0);
  EXPECT_EQ(int(tj["training_examples"]) + int(tj["validation_photos"]), int(good));
  EXPECT_NE(t.err.find("Epoch 4/4 - loss:"), std::string::npos) << t.err;
  ASSERT_TRUE(fs::exists(tmp + "/out/m.history.json"));
  json h = json::parse(test::read_text(tmp + "/out/m.history.json"));
  EXPECT_EQ(h["history"]["accuracy"].size(), 4u);
  EXPECT_EQ(h["history"]["val_accuracy"].size(), 4u);
  EXPECT_EQ(h["dataset"]["class_names"], (json{"daisy", "roses", "tulips"}));
  Result p = petal("plot " + tmp + "/out/m.history.json -o " + tmp + "/out/accuracy.png");
  ASSERT_EQ(p.code, 0) << p.err;
  int w = 0, hh = 0;
  ASSERT_TRUE(png_size(tmp + "/out/accuracy.png", w, hh));
  EXPECT_EQ(w, 1000);
  EXPECT_EQ(hh, 420);

  // The head-only bundle: the engine loads it with the backbone.
  petal::Bundle hb = petal::load_bundle_file(model);
  EXPECT_EQ(hb.metadata.at("backbone"), "external");
  EXPECT_EQ(hb.get("head.dense2.weight").shape, (std::vector<size_t>{3, 512}));
  EXPECT_LT(fs::file_size(model), 5u << 20);

  // eval on every photo, with the confusion matrix drawn; predict agrees photo by photo.
  Result ev = petal("eval " + model + " " + data + " --subset all --json --confusion-png " + tmp + "/out/confusion.png");
  ASSERT_EQ(ev.code, 0) << ev.err;
  json ej = ev.j();
  EXPECT_EQ(ej["photos"], good);
  ASSERT_EQ(ej["predictions"].size(), good);
  ASSERT_TRUE(png_size(tmp + "/out/confusion.png", w, hh));
  int correct = 0, total = 0;
  for (auto& row : ej["confusion"])
    for (size_t c = 0; c < row.size(); ++c) total += int(row[c]);
  for (size_t c = 0; c < 3; ++c) correct += int(ej["confusion"][c][c]);
  EXPECT_EQ(total, int(good));
  EXPECT_DOUBLE_EQ(double(ej["accuracy"]), double(correct) / good);
  std::string files;
  std::map<std::string, json> by_file;
  for (auto& pr : ej["predictions"]) {
    files += " " + pr["file"].get<std::string>();
    by_file[pr["file"]] = pr;
  }
  Result pr = petal("predict --model " + model + " --json" + files);
  ASSERT_EQ(pr.code, 0) << pr.err;
  json pj = pr.j();
  ASSERT_EQ(pj["images"].size(), good);
  for (auto& img : pj["images"]) {
    const json& e = by_file[img["file"].get<std::string>()];
    EXPECT_EQ(img["predictions"][0]["label"], e["predicted"]) << img["file"];
    EXPECT_NEAR(double(img["predictions"][0]["probability"]), double(e["probability"]), 2e-3) << img["file"];
  }
  // The default subset is validation, with the split recorded in the model (0.3 → 4 of 13 + skipped).
  Result ev2 = petal("eval " + model + " " + data + " --json");
  ASSERT_EQ(ev2.code, 0) << ev2.err;
  EXPECT_EQ(ev2.j()["subset"], "validation");
  EXPECT_EQ(ev2.j()["validation_split"], 0.3);
  EXPECT_EQ(int(ev2.j()["photos"]) + int(ev2.j()["skipped"].size()), 5);  // int(0.3 * 17)

  // summary: ≈23.5 M frozen + ≈1 M trainable
  Result s = petal("summary " + model + " --json");
  ASSERT_EQ(s.code, 0) << s.err;
  json sj = s.j();
  EXPECT_EQ(sj["trainable_params"], 2048 * 512 + 512 + 512 * 3 + 3);
  EXPECT_EQ(sj["non_trainable_params"], 23481472);
  EXPECT_EQ(sj["total_params"], 23481472 + 2048 * 512 + 512 + 512 * 3 + 3);
  Result s2 = petal("summary " + model);
  EXPECT_NE(s2.out.find("Trainable params: 1,050,627"), std::string::npos) << s2.out;

  // export: full fp16 bundle without the ImageNet classifier, with a bank of ≤ 2 training photos per class.
  const std::string site = tmp + "/site.safetensors";
  Result x = petal("export " + model + " -o " + site + " --fp16 --no-imagenet --bank-per-class 2 --json");
  ASSERT_EQ(x.code, 0) << x.err;
  petal::Bundle sb = petal::load_bundle_file(site);
  petal::Engine eng(sb, 1);
  EXPECT_EQ(eng.graph().num_logits, 0);
  EXPECT_EQ(eng.class_names(), (std::vector<std::string>{"daisy", "roses", "tulips"}));
  std::map<int, int> per_class;
  for (int32_t y : eng.bank_labels()) per_class[y]++;
  EXPECT_EQ(per_class[0], 2);
  EXPECT_EQ(per_class[1], 2);
  EXPECT_LE(per_class[2], 1);  // the one tulip may be in the validation subset
  EXPECT_LT(fs::file_size(site), 50'000'000u);
  Result xh = petal("export " + model + " -o " + tmp + "/head.safetensors --head-only --bank-per-class 0");
  ASSERT_EQ(xh.code, 0) << xh.err;
  EXPECT_EQ(petal::load_bundle_file(tmp + "/head.safetensors").metadata.at("backbone"), "external");

  // grid: a 3×3 PNG
  Result g = petal("grid " + data + " -o " + tmp + "/grid.png");
  ASSERT_EQ(g.code, 0) << g.err;
  ASSERT_TRUE(png_size(tmp + "/grid.png", w, hh));
  EXPECT_EQ(w, 3 * 190 + 10);
}

// A run killed while writing leaves a torn record; the next run recomputes only that one.
TEST_F(Cli, InterruptedExtractionResumes) {
  const std::string data = make_set("small", {"daisy", "sunflowers"}, 3);
  Result a = petal("extract " + data + " --no-augment --json");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.j()["computed"], 6);
  std::string feat;
  for (auto& e : fs::directory_iterator(tmp + "/cache/features"))
    if (e.path().extension() == ".feat") feat = e.path().string();
  ASSERT_FALSE(feat.empty());
  fs::resize_file(feat, fs::file_size(feat) - 1000);
  Result b = petal("extract " + data + " --no-augment --json");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(b.j()["computed"], 1);
  EXPECT_EQ(b.j()["from_cache"], 5);
}

// petal quantize --calibrate: static int8 ranges from the training photos of a folder (a corrupt
// JPEG among them is passed over), and the calibrated bundle predicts like fp32.
TEST_F(Cli, QuantizeCalibratesOnPhotos) {
  const std::string data = make_set("cal", {"daisy", "sunflowers"}, 4);
  const std::string real = test::read_text(test::flower_photos("daisy", 1, 10)[0]);
  test::write_text(data + "/daisy/corrupt.jpg", real.substr(0, real.size() / 3));
  const std::string out = tmp + "/r50-int8.safetensors";
  Result q = petal("quantize " + test::backbone_path() + " -o " + out + " --calibrate " + data + " --calibration-photos 5");
  ASSERT_EQ(q.code, 0) << q.err;
  EXPECT_NE(q.err.find("calibrated int8 ranges on 5 photos"), std::string::npos) << q.err;
  petal::Bundle b = petal::load_bundle_file(out);
  EXPECT_TRUE(b.has(petal::kInt8Marker));
  ASSERT_TRUE(b.has(petal::kInt8RangesTensor));
  const auto& r = b.tensors.at(petal::kInt8RangesTensor);
  EXPECT_EQ(r.shape[1], 2u);
  for (size_t i = 0; i < r.shape[0]; ++i) EXPECT_LE(r.data[i * 2], r.data[i * 2 + 1]) << "row " << i;
  // ImageNet top-1 of a held-back photo: the same with the calibrated int8 bundle as with fp32
  const std::string photo = test::flower_photos("sunflowers", 1, 20)[0];
  Result p32 = petal("predict --model " + test::backbone_path() + " --json " + photo);
  Result p8 = petal("predict --model " + out + " --json " + photo);
  ASSERT_EQ(p32.code, 0) << p32.err;
  ASSERT_EQ(p8.code, 0) << p8.err;
  EXPECT_EQ(p32.j()["images"][0]["predictions"][0]["index"], p8.j()["images"][0]["predictions"][0]["index"])
      << p32.out << "\n" << p8.out;
  Result none = petal("quantize " + test::backbone_path() + " -o " + out + " --calibrate " + tmp + "/missing");
  EXPECT_NE(none.code, 0);
}

// The Keras tutorial as written: raw pixels at 180², mirrored copies off. eval reads it; predict
// (caffe 224 only) refuses it with a clear message.
TEST_F(Cli, TutorialRecipe) {
  const std::string data = make_set("tut", {"dandelion", "tulips"}, 3);
  const std::string model = tmp + "/tut.safetensors";
  Result t = petal("train " + data + " -o " + model + " --recipe tutorial --epochs 2 --validation-split 0.34");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("recipe tutorial: raw 180 px"), std::string::npos) << t.out;
  petal::Bundle b = petal::load_bundle_file(model);
  EXPECT_EQ(b.metadata.at("preprocessing"), "raw");
  EXPECT_EQ(b.metadata.at("input_size"), "180x180");
  Result e = petal("eval " + model + " " + data + " --json");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.j()["photos"], 2);
  Result p = petal("predict --model " + model + " " + test::flower_photos("tulips", 1)[0]);
  EXPECT_NE(p.code, 0);
  EXPECT_NE(p.err.find("preprocessing 'raw'"), std::string::npos) << p.err;
}

TEST_F(Cli, ClearErrorsForBadFolders) {
  const std::string data = make_set("d", {"daisy"}, 1);
  fs::create_directories(data + "/empty");
  Result a = petal("train " + data + " -o " + tmp + "/m.safetensors");
  EXPECT_EQ(a.code, 1);
  EXPECT_NE(a.err.find("petal: error: class folder '" + data + "/empty' has no images"), std::string::npos) << a.err;
  EXPECT_EQ(std::count(a.err.begin(), a.err.end(), '\n'), 1) << a.err;
  fs::create_directories(tmp + "/flat");
  Result b = petal("train " + tmp + "/flat -o " + tmp + "/m.safetensors");
  EXPECT_EQ(b.code, 1);
  EXPECT_NE(b.err.find("has no class folders"), std::string::npos) << b.err;
  Result c = petal("eval " + tmp + "/missing.safetensors " + data);
  EXPECT_EQ(c.code, 1);
  EXPECT_NE(c.err.find("missing.safetensors"), std::string::npos) << c.err;
  EXPECT_FALSE(fs::exists(tmp + "/m.safetensors"));
}

// Offline (here: every connection refused through a dead proxy), download says so and leaves nothing.
TEST_F(Cli, DownloadOfflineFailsClearly) {
  for (const char* what : {"flowers", "notop"}) {
    Result r = petal(std::string("download ") + what + " -o " + tmp + "/dl",
                  "https_proxy=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("petal: error: could not download https://storage.googleapis.com/"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("offline"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("copy it to " + tmp + "/dl/"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_empty(tmp + "/dl")) << "partial download left behind";
  }
  Result r = petal("download flowers -o " + tmp + "/dl", "PATH=/nonexistent");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("curl is not installed"), std::string::npos) << r.err;
  Result u = petal("download imagenet");
  EXPECT_EQ(u.code, 1);
  EXPECT_NE(u.err.find("unknown download 'imagenet'"), std::string::npos) << u.err;
}

// `petal predict photo.jpg` answers with the flowers model that ships (model/flowers-head.safetensors
// on the default backbone), as `--model` that file does; `--model BACKBONE` and PETAL_MODEL still
// choose; a petal that cannot find the shipped head says so in one line and uses ImageNet classes.
TEST_F(Cli, PredictDefaultsToTheShippedFlowersModel) {
  const std::string shipped = test::source_dir() + "/model/flowers-head.safetensors";
  ASSERT_TRUE(fs::exists(shipped)) << "missing the committed " << shipped;
  const std::vector<std::string> classes = {"daisy", "dandelion", "roses", "sunflowers", "tulips"};
  std::string files;
  std::map<std::string, std::string> truth;
  for (auto& c : classes)
    for (auto& p : test::flower_photos(c, 2, 40)) {
      files += " " + p;
      truth[p] = c;
    }
  Result d = petal("predict --json" + files, "PETAL_MODEL=");  // an empty PETAL_MODEL counts as unset
  ASSERT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.err.find("petal:"), std::string::npos) << d.err;
  json dj = d.j();
  EXPECT_EQ(dj["classes"], "model") << d.out;
  ASSERT_EQ(dj["images"].size(), truth.size());
  size_t right = 0;
  for (auto& img : dj["images"]) right += img["predictions"][0]["label"] == truth[img["file"].get<std::string>()];
  EXPECT_GE(right, truth.size() - 1) << "the shipped model (94.5 % on its validation photos) should name these flowers\n" << d.out;
  Result m = petal("predict --json --model " + shipped + files);
  ASSERT_EQ(m.code, 0) << m.err;
  EXPECT_EQ(m.j(), dj);

  Result b = petal("predict --json --model " + test::backbone_path() + " " + test::flower_photos("roses", 1, 40)[0]);
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(b.j()["classes"], "imagenet");
  EXPECT_EQ(b.j()["images"][0]["predictions"].size(), 5u);
  Result e = petal("predict --json " + test::flower_photos("roses", 1, 40)[0], "PETAL_MODEL=" + test::backbone_path());
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.j()["classes"], "imagenet");

  // A copy of petal outside the checkout finds no shipped head.
  fs::create_directories(tmp + "/elsewhere");
  fs::copy_file(PETAL_CLI, tmp + "/elsewhere/petal");
  Result c = petal("predict --json " + test::flower_photos("roses", 1, 40)[0], "PETAL_MODEL=", tmp + "/elsewhere/petal");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_EQ(c.j()["classes"], "imagenet");
  EXPECT_EQ(c.j()["images"], b.j()["images"]);
  EXPECT_EQ(c.err.rfind("petal: note: ", 0), 0u) << c.err;
  EXPECT_NE(c.err.find("ImageNet classes"), std::string::npos) << c.err;
  EXPECT_EQ(std::count(c.err.begin(), c.err.end(), '\n'), 1) << c.err;

  Result h = petal("predict --help");
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_NE(h.out.find("model/flowers-head.safetensors"), std::string::npos) << h.out;
}

// `petal predict --heatmap out.png photo.jpg` draws where the model looks over the photo: one PNG
// of the photo's proportions (plus its caption strip); a folder for several; ImageNet classes have
// no head to explain, which it says.
TEST_F(Cli, PredictDrawsAHeatmapOverThePhoto) {
  const std::string rose = test::flower_photos("roses", 1, 40)[0], daisy = test::flower_photos("daisy", 1, 40)[0];
  Result one = petal("predict --heatmap " + tmp + "/rose.png " + rose, "PETAL_MODEL=");
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find("roses"), std::string::npos) << one.out;
  const std::string png = test::read_text(tmp + "/rose.png"), jpg = test::read_text(rose);
  auto u8 = [](const std::string& b) { return reinterpret_cast<const uint8_t*>(b.data()); };
  const petal::ImageInfo pi = petal::probe_image(u8(png), png.size()), ri = petal::probe_image(u8(jpg), jpg.size());
  EXPECT_EQ(pi.format, "png");
  EXPECT_EQ(pi.width, ri.width);  // these photos are smaller than the 512-pixel cap
  EXPECT_GT(pi.height, ri.height);
  // the overlay changes the photo's pixels
  const petal::Image drawn = petal::decode_image(u8(png), png.size()), orig = petal::decode_image(u8(jpg), jpg.size());
  size_t changed = 0;
  for (size_t i = 0; i < orig.rgb.size(); ++i) changed += std::abs(int(drawn.rgb[i]) - int(orig.rgb[i])) > 8;
  EXPECT_GT(changed, orig.rgb.size() / 4);

  Result two = petal("predict --heatmap " + tmp + "/maps " + rose + " " + daisy, "PETAL_MODEL=");
  ASSERT_EQ(two.code, 0) << two.err;
  EXPECT_TRUE(fs::exists(tmp + "/maps/" + fs::path(rose).stem().string() + ".heatmap.png"));
  EXPECT_TRUE(fs::exists(tmp + "/maps/" + fs::path(daisy).stem().string() + ".heatmap.png"));

  Result in = petal("predict --heatmap " + tmp + "/x.png --model " + test::backbone_path() + " " + rose);
  EXPECT_NE(in.code, 0);
  EXPECT_NE(in.err.find("--heatmap needs a trained head"), std::string::npos) << in.err;
}

// The top-level help points to documents that exist, not to a placeholder address.
TEST_F(Cli, HelpNamesNoPlaceholderUrl) {
  Result h = petal("--help");
  ASSERT_EQ(h.code, 0) << h.err;
  EXPECT_EQ(h.out.find("https://github.com/ "), std::string::npos) << h.out;
  EXPECT_EQ(h.out.find("https://github.com/)"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("see README.md"), std::string::npos) << h.out;
  EXPECT_TRUE(fs::exists(test::source_dir() + "/README.md"));
}

// The page's bundle (the shipped head on the fp16 backbone, as tools/setup/make-models.sh exports
// it) has another backbone id than the fp32 backbone the head was trained on; eval knows that fp16
// storage of the same weights is the same backbone and warns only about real differences.
TEST_F(Cli, EvalTrustsTheFp16CopyOfItsBackbone) {
  const std::string shipped = test::source_dir() + "/model/flowers-head.safetensors";
  ASSERT_TRUE(fs::exists(shipped)) << "missing the committed " << shipped;
  const std::string data = make_set("five", {"daisy", "dandelion", "roses", "sunflowers", "tulips"}, 1);
  const std::string site = tmp + "/petal.safetensors";
  Result x = petal("export " + shipped + " -o " + site + " --fp16 --no-imagenet");
  ASSERT_EQ(x.code, 0) << x.err;
  petal::Bundle sb = petal::load_bundle_file(site);
  ASSERT_TRUE(sb.metadata.count("backbone_id"));
  ASSERT_NE(petal::cli::backbone_id(sb), sb.metadata.at("backbone_id")) << "the fp16 copy's id should differ, or this test tests nothing";

  Result e = petal("eval " + site + " " + data + " --subset all --json");
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.err.find("warning"), std::string::npos) << e.err;
  EXPECT_EQ(e.j()["photos"], 5);

  // Without the default backbone there is nothing to compare the fp16 copy with: say so, once.
  Result n = petal("eval " + site + " " + data + " --subset all", "PETAL_BACKBONE=" + tmp + "/missing.safetensors");
  ASSERT_EQ(n.code, 0) << n.err;
  const std::string w = "petal: warning: this head was trained on backbone ";
  ASSERT_NE(n.err.find(w), std::string::npos) << n.err;
  EXPECT_NE(n.err.find("set PETAL_BACKBONE"), std::string::npos) << n.err;
  EXPECT_EQ(n.err.find(w, n.err.find(w) + 1), std::string::npos) << n.err;

  // A weight changed by more than fp16 rounding is another backbone.
  std::string changed;
  for (auto& [name, t] : sb.tensors)
    if (name.rfind("head.", 0) != 0 && name.rfind("bank.", 0) != 0 && t.stored == petal::DType::F16 && t.shape.size() == 4) {
      t.data[0] += 0.25f;
      changed = name;
      break;
    }
  ASSERT_FALSE(changed.empty());
  petal::save_bundle_file(sb, tmp + "/changed.safetensors", petal::DType::F16);
  Result c = petal("eval " + tmp + "/changed.safetensors " + data + " --subset all");
  ASSERT_EQ(c.code, 0) << c.err;
  ASSERT_NE(c.err.find(w), std::string::npos) << "changed " << changed << "\n" << c.err;
  EXPECT_NE(c.err.find("its weights differ from the default backbone's"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("by more than fp16 storage"), std::string::npos) << c.err;
}
