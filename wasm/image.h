// Photos in: decode (stb_image: JPEG, PNG, BMP, GIF first frame) from the user's bytes, honour
// the JPEG EXIF orientation, resize without keeping the aspect ratio (antialiased bilinear,
// computed as Pillow does), then Keras 'caffe' preprocessing (RGB→BGR, minus the ImageNet channel means).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace petal {

struct Image {  // 8-bit RGB, row-major
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Header-only probe: format name ("jpeg", "png", "bmp", "gif") and size; throws petal::Error
// for data that is no supported image, or an image over the limits, without decoding pixels.
struct ImageInfo {
  std::string format;
  int width = 0, height = 0;
};
ImageInfo probe_image(const uint8_t* data, size_t size);

// Decode with EXIF orientation applied. Throws petal::Error with a one-line reason.
Image decode_image(const uint8_t* data, size_t size);

// EXIF orientation (1..8) of a JPEG, 1 when absent or unreadable.
int exif_orientation(const uint8_t* data, size_t size);
Image apply_orientation(const Image& img, int orientation);

// Resize to w×h (aspect ratio not kept): antialiased bilinear, as Pillow's BILINEAR.
Image resize_image(const Image& img, int w, int h);

// Keras 'caffe' preprocessing into NHWC floats (BGR order); `flip` mirrors horizontally.
void preprocess_caffe(const Image& img, float* out, bool flip = false);

// decode → resize → preprocess in one call; returns size*size*3 floats.
std::vector<float> image_to_input(const uint8_t* data, size_t size, int input_h, int input_w, bool flip = false);
// The same from a decoded photo (the page also draws its thumbnail from that one decode).
std::vector<float> image_to_input(const Image& rgb, int input_h, int input_w, bool flip = false);

// A small RGB thumbnail (longest side `max_side`), for the page and the CLI's grid.
Image thumbnail(const Image& img, int max_side);

}  // namespace petal
