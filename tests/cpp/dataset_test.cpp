// The data set pipeline's pieces (tools/cli): Keras's split (numpy's shuffle), folder indexing,
// SHA-256, the feature cache file, PNG drawing. Real photos from the flower data set.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "bundle.h"
#include "dataset.h"
#include "error.h"
#include "feature_cache.h"
#include "graph.h"
#include "plot.h"
#include "test_support.h"
#include <stb/stb_image.h>

using namespace petal;
using namespace petal::cli;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

}  // namespace

TEST(DatasetSplit, NumpyShuffleMatchesNumpy) {
  // Values printed by numpy 1.24: x = list(range(n)); np.random.RandomState(seed).shuffle(x)
  EXPECT_EQ(numpy_shuffle_permutation(10, 123), (std::vector<size_t>{4, 0, 7, 5, 8, 3, 1, 6, 9, 2}));
  EXPECT_EQ(numpy_shuffle_permutation(1, 123), (std::vector<size_t>{0}));
  EXPECT_EQ(numpy_shuffle_permutation(2, 0), (std::vector<size_t>{1, 0}));
  EXPECT_TRUE(numpy_shuffle_permutation(0, 5).empty());
  auto p37 = numpy_shuffle_permutation(37, 7);
  EXPECT_EQ(std::vector<size_t>(p37.begin(), p37.begin() + 12), (std::vector<size_t>{33, 2, 24, 1, 18, 13, 9, 15, 22, 5, 34, 20}));
  EXPECT_EQ(std::vector<size_t>(p37.end() - 5, p37.end()), (std::vector<size_t>{23, 19, 3, 25, 4}));
  auto p1000 = numpy_shuffle_permutation(1000, 4294967295u);
  EXPECT_EQ(std::vector<size_t>(p1000.begin(), p1000.begin() + 12),
            (std::vector<size_t>{94, 405, 819, 632, 217, 169, 449, 275, 165, 828, 959, 475}));
  EXPECT_EQ(std::vector<size_t>(p1000.end() - 5, p1000.end()), (std::vector<size_t>{948, 71, 12, 290, 419}));
  auto p = numpy_shuffle_permutation(2932, 123);  // the flower set's size
  EXPECT_EQ(std::vector<size_t>(p.begin(), p.begin() + 10), (std::vector<size_t>{655, 645, 80, 1927, 2030, 2134, 2665, 1356, 2199, 2517}));
  EXPECT_EQ(std::vector<size_t>(p.end() - 10, p.end()), (std::vector<size_t>{2686, 2161, 96, 1761, 1593, 1147, 2154, 1766, 1122, 1346}));
  std::vector<size_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], i);
}

// The whole Keras split of the real flower folder against Keras's own algorithm run by numpy
// (index_directory + RandomState shuffles + the last int(0.2·n)), when numpy is installed.
TEST(DatasetSplit, FlowerSplitMatchesKerasWithNumpy) {
  ASSERT_TRUE(fs::is_directory(test::flowers_dir())) << "missing " << test::flowers_dir() << ": set PETAL_DATA to the shared data folder";
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
    GTEST_SKIP() << "numpy is not installed (apt-get install python3-numpy); NumpyShuffleMatchesNumpy still checks the shuffle";
  TempDir tmp;
  const std::string script = tmp.path + "/keras_split.py", out = tmp.path + "/split.txt";
  test::write_text(script, R"(import os, sys, numpy as np
d, seed, split = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
subdirs = sorted(s for s in os.listdir(d) if os.path.isdir(os.path.join(d, s)))
paths, labels = [], []
for i, s in enumerate(subdirs):
    top = os.path.join(d, s)
    for root, _, files in sorted(os.walk(top), key=lambda x: x[0]):
        for f in sorted(files):
            if f.lower().endswith(('.bmp', '.gif', '.jpeg', '.jpg', '.png')):
                paths.append(os.path.join(s, os.path.relpath(os.path.join(root, f), top))); labels.append(i)
rng = np.random.RandomState(seed); rng.shuffle(paths)
rng = np.random.RandomState(seed); rng.shuffle(labels)
nv = int(split * len(paths))
for p, l in zip(paths, labels): print(p, l)
print(nv)
)");
  for (uint32_t seed : {123u, 42u}) {
    ASSERT_EQ(std::system(("/usr/bin/python3 " + script + " " + test::flowers_dir() + " " + std::to_string(seed) + " 0.2 > " + out).c_str()), 0);
    std::ifstream f(out);
    std::vector<std::pair<std::string, int>> expect;
    std::string line;
    size_t nv = 0;
    while (std::getline(f, line)) {
      const size_t sp = line.rfind(' ');
      if (sp == std::string::npos) nv = std::stoul(line);
      else expect.push_back({line.substr(0, sp), std::stoi(line.substr(sp + 1))});
    }
    DatasetOptions o;
    o.seed = seed;
    Dataset d = index_directory(test::flowers_dir(), o);
    ASSERT_EQ(d.files.size(), expect.size());
    EXPECT_EQ(d.num_validation, nv);
    for (size_t i = 0; i < expect.size(); ++i) {
      ASSERT_EQ(d.files[i].rel, expect[i].first) << i;
      ASSERT_EQ(d.files[i].label, expect[i].second) << i;
    }
  }
}

TEST(DatasetIndex, ClassesFilesAndSplit) {
  TempDir tmp;
  const std::string root = tmp.path + "/data";
  fs::create_directories(root + "/roses/more");
  fs::create_directories(root + "/daisy");
  fs::create_directories(root + "/.hidden");
  auto daisy = test::flower_photos("daisy", 5), roses = test::flower_photos("roses", 3);
  for (auto& p : daisy) fs::create_symlink(p, root + "/daisy/" + fs::path(p).filename().string());
  fs::create_symlink(roses[0], root + "/roses/a.JPG");        // extension in capitals
  fs::create_symlink(roses[1], root + "/roses/more/b.jpeg");  // nested folder
  fs::create_symlink(roses[2], root + "/roses/c.png");        // a JPEG named .png still counts (Keras goes by name)
  test::write_text(root + "/roses/README.md", "not a photo\n");
  test::write_text(root + "/top-level.jpg", "");  // outside any class: not part of the data set
  DatasetOptions o;
  o.validation_split = 0.25;
  o.seed = 7;
  Dataset d = index_directory(root, o);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"daisy", "roses"}));
  ASSERT_EQ(d.files.size(), 8u);
  EXPECT_EQ(d.per_class, (std::vector<size_t>{5, 3}));
  EXPECT_EQ(d.num_validation, 2u);  // int(0.25 * 8)
  ASSERT_EQ(d.not_images.size(), 1u);
  EXPECT_NE(d.not_images[0].path.find("README.md"), std::string::npos);
  // Keras order before the shuffle: daisy's files sorted, then roses: a.JPG, c.png, more/b.jpeg.
  o.shuffle = false;
  Dataset u = index_directory(root, o);
  EXPECT_EQ(u.files[5].rel, "roses/a.JPG");
  EXPECT_EQ(u.files[6].rel, "roses/c.png");
  EXPECT_EQ(u.files[7].rel, "roses/more/b.jpeg");
  // The shuffle is numpy's permutation of that list.
  const auto perm = numpy_shuffle_permutation(8, 7);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(d.files[i].rel, u.files[perm[i]].rel);
  // Deterministic, and the seed matters.
  Dataset again = index_directory(root, {0.25, 7, true});
  Dataset other = index_directory(root, {0.25, 8, true});
  bool same = true, differs = false;
  for (size_t i = 0; i < 8; ++i) {
    same &= again.files[i].rel == d.files[i].rel;
    differs |= other.files[i].rel != d.files[i].rel;
  }
  EXPECT_TRUE(same);
  EXPECT_TRUE(differs);
  // Subsets: training then validation, disjoint, covering everything.
  auto tr = subset_indices(d, Subset::Training), va = subset_indices(d, Subset::Validation);
  EXPECT_EQ(tr.size(), 6u);
  EXPECT_EQ(va, (std::vector<size_t>{6, 7}));
  EXPECT_EQ(subset_indices(d, Subset::All).size(), 8u);
}

TEST(DatasetIndex, ClearErrors) {
  TempDir tmp;
  auto expect_error = [](const std::string& dir, const std::string& part) {
    try {
      index_directory(dir);
      FAIL() << "no error for " << dir;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
    }
  };
  expect_error(tmp.path + "/nope", "does not exist");
  fs::create_directories(tmp.path + "/flat");
  fs::create_symlink(test::flower_photos("daisy", 1)[0], tmp.path + "/flat/x.jpg");
  expect_error(tmp.path + "/flat", "no class folders");
  expect_error(tmp.path + "/flat/x.jpg", "is not a folder");
  fs::create_directories(tmp.path + "/withempty/daisy");
  fs::create_directories(tmp.path + "/withempty/empty");
  fs::create_symlink(test::flower_photos("daisy", 1)[0], tmp.path + "/withempty/daisy/x.jpg");
  test::write_text(tmp.path + "/withempty/empty/notes.txt", "hello");
  expect_error(tmp.path + "/withempty", "withempty/empty' has no images");
  EXPECT_THROW(index_directory(tmp.path + "/withempty/daisy/..", {1.0, 1, true}), Error);  // split must be < 1
}

TEST(DatasetIndex, OneImageClassAndTinySplit) {
  TempDir tmp;
  const std::string root = tmp.path + "/d";
  fs::create_directories(root + "/a");
  fs::create_directories(root + "/b");
  fs::create_symlink(test::flower_photos("daisy", 1)[0], root + "/a/1.jpg");
  fs::create_symlink(test::flower_photos("roses", 1)[0], root + "/b/1.jpg");
  Dataset d = index_directory(root);  // int(0.2 * 2) = 0: everything is for training
  EXPECT_EQ(d.num_validation, 0u);
  EXPECT_EQ(subset_indices(d, Subset::Training).size(), 2u);
  EXPECT_TRUE(subset_indices(d, Subset::Validation).empty());
}

TEST(DatasetFiles, SkipReasons) {
  TempDir tmp;
  const std::string p = tmp.path;
  test::write_text(p + "/empty.jpg", "");
  fs::create_symlink(p + "/loop.jpg", p + "/loop.jpg");
  fs::create_symlink(p + "/missing.jpg", p + "/dangling.jpg");
  fs::create_directories(p + "/dir.jpg");
  ::mkfifo((p + "/fifo.jpg").c_str(), 0644);
  EXPECT_EQ(load_data_file(p + "/empty.jpg").error, "the file is empty (0 bytes)");
  EXPECT_NE(load_data_file(p + "/loop.jpg").error.find("symlink loop"), std::string::npos);
  EXPECT_NE(load_data_file(p + "/dangling.jpg").error.find("broken symlink"), std::string::npos);
  EXPECT_EQ(load_data_file(p + "/dir.jpg").error, "not a regular file");
  EXPECT_EQ(load_data_file(p + "/fifo.jpg").error, "not a regular file");  // never blocks on a FIFO
  auto real = load_data_file(test::flower_photos("tulips", 1)[0]);
  EXPECT_TRUE(real.error.empty());
  EXPECT_GT(real.bytes.size(), 1000u);
}

TEST(DatasetFiles, PreprocessingModesAndFlip) {
  auto f = load_data_file(test::flower_photos("sunflowers", 1)[0]);
  ASSERT_TRUE(f.error.empty());
  Preprocessing raw{"raw", 180}, caffe{"caffe", 224};
  std::vector<float> a(180 * 180 * 3), af(a.size()), c(224 * 224 * 3);
  photo_to_input(f.bytes.data(), f.bytes.size(), raw, a.data(), af.data());
  photo_to_input(f.bytes.data(), f.bytes.size(), caffe, c.data());
  float lo = 1e9f, hi = -1e9f;
  for (float v : a) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_GE(lo, 0.f);
  EXPECT_LE(hi, 255.f);
  EXPECT_GT(hi, 100.f);
  // flip: row 17, column x ↔ column 179 - x
  for (int x = 0; x < 180; x += 13)
    for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(a[(17 * 180 + x) * 3 + ch], af[(17 * 180 + 179 - x) * 3 + ch]);
  // caffe is BGR minus the means: some values negative
  EXPECT_LT(*std::min_element(c.begin(), c.end()), 0.f);
  EXPECT_EQ(raw.key(), "raw180");
  EXPECT_EQ(preprocessing_key(raw), preprocessing_key(raw));
  EXPECT_NE(preprocessing_key(raw), preprocessing_key(Preprocessing{"raw", 224}));
  EXPECT_EQ(preprocessing_key(caffe).rfind("caffe224-", 0), 0u);
  const std::string text = "just some text, not a photo";
  EXPECT_THROW(photo_to_input(reinterpret_cast<const uint8_t*>(text.data()), text.size(), raw, a.data()), Error);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(hex(sha256("", 0)), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abc", 3)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(hex(sha256(two.data(), two.size())), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(hex(sha256(million.data(), million.size())), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  Sha256 s;  // in odd-sized pieces
  for (size_t i = 0; i < million.size(); i += 777) s.update(million.data() + i, std::min<size_t>(777, million.size() - i));
  EXPECT_EQ(hex(s.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(FeatureCacheFile, AppendReloadTornRecordAndDamage) {
  TempDir tmp;
  const std::string id(64, 'a'), dir = tmp.path + "/features";
  const size_t dim = 16;
  std::vector<float> f1(dim, 1.5f), f2(dim, -2.f);
  Digest d1 = sha256("one", 3), d2 = sha256("two", 3);
  std::string path;
  {
    FeatureCache c(dir, id, "caffe224-test", dim);
    path = c.path();
    EXPECT_EQ(c.size(), 0u);
    c.append({{d1, false, f1.data()}, {d1, true, f2.data()}});
    c.append({{d2, false, f2.data()}});
    ASSERT_NE(c.find(d1, true), nullptr);
    EXPECT_EQ(c.find(d1, true)[3], -2.f);
    EXPECT_EQ(c.find(d2, true), nullptr);
  }
  {
    FeatureCache c(dir, id, "caffe224-test", dim);
    EXPECT_EQ(c.size(), 3u);
    ASSERT_NE(c.find(d1, false), nullptr);
    EXPECT_EQ(c.find(d1, false)[0], 1.5f);
  }
  // A run killed mid-write leaves a torn last record: it is dropped, the rest kept.
  fs::resize_file(path, fs::file_size(path) - 10);
  {
    FeatureCache c(dir, id, "caffe224-test", dim);
    EXPECT_EQ(c.size(), 2u);
    EXPECT_EQ(c.find(d2, false), nullptr);
    c.append({{d2, false, f2.data()}});
  }
  {
    FeatureCache c(dir, id, "caffe224-test", dim);
    EXPECT_EQ(c.size(), 3u);
    ASSERT_NE(c.find(d2, false), nullptr);
    EXPECT_EQ(c.find(d2, false)[dim - 1], -2.f);
  }
  // Another backbone or preprocessing never reads these features (another file).
  {
    FeatureCache c(dir, std::string(64, 'b'), "caffe224-test", dim);
    EXPECT_EQ(c.size(), 0u);
    FeatureCache r(dir, id, "raw180-test", dim);
    EXPECT_EQ(r.size(), 0u);
  }
  // A damaged file is set aside, not trusted, not fatal.
  test::write_text(path, "garbage that is not a feature cache");
  {
    FeatureCache c(dir, id, "caffe224-test", dim);
    EXPECT_EQ(c.size(), 0u);
  }
  EXPECT_TRUE(fs::exists(path + ".damaged"));
}

TEST(Plot, PngsDecodeAndShowWhatWasDrawn) {
  Canvas c(300, 200);
  draw_line_chart(c, 0, 0, 300, 200, "Accuracy", "epoch",
                  {{"train", {0.5, 0.7, 0.9}, Color{31, 119, 180}, false}, {"val", {0.6, 0.65, 0.8}, Color{255, 127, 14}, false}}, 0.4, 1.0);
  c.text(5, 180, "caf\xc3\xa9 \x01 ok", Color{0, 0, 0}, 2);  // non-ASCII never indexes outside the font
  const std::string png = c.png();
  int w = 0, h = 0, ch = 0;
  uint8_t* px = stbi_load_from_memory(reinterpret_cast<const uint8_t*>(png.data()), int(png.size()), &w, &h, &ch, 3);
  ASSERT_NE(px, nullptr) << stbi_failure_reason();
  EXPECT_EQ(w, 300);
  EXPECT_EQ(h, 200);
  size_t blue = 0, orange = 0;
  for (int i = 0; i < w * h; ++i) {
    blue += px[3 * i] == 31 && px[3 * i + 1] == 119 && px[3 * i + 2] == 180;
    orange += px[3 * i] == 255 && px[3 * i + 1] == 127 && px[3 * i + 2] == 14;
  }
  stbi_image_free(px);
  EXPECT_GT(blue, 100u);
  EXPECT_GT(orange, 100u);
  Canvas m = draw_confusion({{5, 1}, {0, 7}}, {"daisy", "roses"}, "test");
  const std::string mp = m.png();
  px = stbi_load_from_memory(reinterpret_cast<const uint8_t*>(mp.data()), int(mp.size()), &w, &h, &ch, 3);
  ASSERT_NE(px, nullptr);
  stbi_image_free(px);
  EXPECT_EQ(w, m.width());
}

// The cache key of a backbone covers what decides the features, nothing else: dropping the
// ImageNet classifier (export --no-imagenet) or the input size keeps it; any weight changes it.
TEST(FeatureCacheKey, BackboneIdCoversTheFeaturesOnly) {
  const std::string path = test::backbone_path();
  ASSERT_TRUE(fs::exists(path)) << "missing the backbone " << path << ": run tools/setup.sh (it runs petal import) or set PETAL_BACKBONE";
  Bundle b = load_bundle_file(path);
  const std::string id = backbone_id(b);
  EXPECT_EQ(id.size(), 64u);
  Graph g = Graph::from_json(b.meta("graph"));
  ASSERT_FALSE(g.logits.empty());
  Bundle notop = b;
  const std::string fc = g.logits;
  g.ops.erase(std::remove_if(g.ops.begin(), g.ops.end(), [&](const Op& op) { return op.name == fc; }), g.ops.end());
  g.logits.clear();
  g.num_logits = 0;
  notop.metadata["graph"] = g.to_json();
  notop.tensors.erase(fc + ".weight");
  notop.tensors.erase(fc + ".bias");
  EXPECT_EQ(backbone_id(notop), id);
  g.input_h = g.input_w = 180;
  notop.metadata["graph"] = g.to_json();
  EXPECT_EQ(backbone_id(notop), id);
  notop.tensors.begin()->second.data[7] += 1e-3f;
  EXPECT_NE(backbone_id(notop), id);
}
