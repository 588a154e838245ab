// A labelled photo collection read from folders, with the semantics of Keras's
// `tf.keras.utils.image_dataset_from_directory(dir, validation_split, subset, seed)`:
//  - every sub-folder of DIR is a class, class names sorted (byte order, like Python's sorted());
//  - inside a class folder, files are found recursively (sub-folders by sorted path, files sorted),
//    kept when their name ends in .bmp .gif .jpeg .jpg .png (any case), symlinked files followed,
//    symlinked sub-folders not descended (os.walk(followlinks=False));
//  - the (path, label) list is shuffled with numpy's legacy RandomState(seed).shuffle (MT19937 +
//    numpy's masked rejection sampling), then the last int(split·n) are the validation subset.
// So a split made here holds the same photos as the Keras tutorial's for the same folder and seed.
// Differences from Keras, all on inputs where Keras fails or misbehaves: hidden folders (".x") are
// not classes; a class folder with no images is an error; when int(split·n) is 0 every photo is
// for training (Keras would train on nothing); files that cannot be read or decoded stay in the
// shuffled list (so the split does not move) but are skipped, with a warning, when loaded.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "image.h"

namespace petal::cli {

struct DataFile {
  std::string path;   // DIR/<class>/<...>/<name>, as found
  std::string rel;    // <class>/<...>/<name>, Keras's relative path
  int label = 0;
};

struct Skipped {
  std::string path;
  std::string reason;
};

struct DatasetOptions {
  double validation_split = 0.2;  // 0 ≤ split < 1
  uint32_t seed = 123;
  bool shuffle = true;
};

struct Dataset {
  std::string root;
  std::vector<std::string> class_names;
  std::vector<DataFile> files;          // in Keras order (shuffled unless options say not)
  std::vector<Skipped> not_images;      // files in class folders without an image extension
  std::vector<size_t> per_class;        // candidate images per class
  size_t num_validation = 0;            // the last num_validation files are the validation subset
  DatasetOptions options;
};

enum class Subset { Training, Validation, All };
Subset parse_subset(const std::string& s);  // "training" | "validation" | "all"; throws petal::Error
const char* subset_name(Subset s);

// Index DIR. Throws petal::Error (one line, says what to do) for a missing folder, no class folders,
// or a class folder without images. Files without an image extension go to `not_images`.
Dataset index_directory(const std::string& dir, const DatasetOptions& opt = {});

// Indices into `files` of a subset, in Keras order.
std::vector<size_t> subset_indices(const Dataset& d, Subset s);

// numpy.random.RandomState(seed).shuffle(x) for a 1-D sequence of length n, as a permutation:
// apply by x'[i] = x[perm[i]]. Exactly numpy's legacy algorithm (Fisher–Yates from the end with
// random_interval's bit-mask rejection on MT19937 32-bit outputs).
std::vector<size_t> numpy_shuffle_permutation(size_t n, uint32_t seed);

// Reading one photo of a data set: the bytes, or the reason it is skipped ("symlink loop",
// "the file is empty (0 bytes)", "unreadable: Permission denied", ...). Never throws for a bad file.
struct LoadedFile {
  std::vector<uint8_t> bytes;
  std::string error;
};
LoadedFile load_data_file(const std::string& path);

// How photos become backbone inputs. "caffe": Petal's (RGB→BGR minus ImageNet means) at the
// model's size; "raw": the Keras tutorial's (RGB 0–255 fed to ResNet50 as they are).
struct Preprocessing {
  std::string mode = "caffe";  // caffe | raw
  int size = 224;
  std::string key() const;     // e.g. "caffe224" (part of the feature cache key)
};
// decode (EXIF applied) → resize size×size → preprocess into out (size²·3 floats).
// `flipped_out`, when not null, receives the horizontally mirrored input. Throws petal::Error.
void photo_to_input(const uint8_t* data, size_t n, const Preprocessing& p, float* out, float* flipped_out = nullptr);

// Views of a photo for training: fixed (so cacheable) crops of the decoded photo, optionally
// mirrored, each resized to the model's input. View 0 is the photo as prediction sees it, view 1
// its mirror image; higher ids are the crops below. The id is part of the feature cache key.
struct View {
  const char* name;
  float crop;   // side of the crop as a fraction of the photo's width and height
  float x, y;   // where the crop sits: 0 = left/top edge, 0.5 = centred, 1 = right/bottom edge
  bool flip;
};
const std::vector<View>& all_views();
int view_id(const std::string& name);  // throws petal::Error listing the names
// One decode, then the input of each view in `views` into outs[i] (size²·3 floats each).
void photo_to_views(const uint8_t* data, size_t n, const Preprocessing& p, const std::vector<int>& views,
                    const std::vector<float*>& outs);

}  // namespace petal::cli
