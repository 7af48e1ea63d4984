// PNG files in and out for the examples (libpng), and the few image steps mattex run takes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace example {

struct Image {
  int64_t height = 0, width = 0, channels = 3;
  std::vector<uint8_t> pixels;  // (height, width, channels), row-major
};

// Any PNG (grey, palette, alpha, 16-bit) as (H, W, 3) 8-bit RGB.
Image readPng(const std::string& path);

// Written to a temporary name beside `path` and renamed, so a failure leaves no partial file.
void writePng(const std::string& path, const Image& image);

// A height x width RGB image of the reference's composite green (120, 255, 155), as mattex run's.
Image green(int64_t height, int64_t width);

// Edge-replicated to a multiple of `multiple` in height and width, as mattex run pads frames.
Image padToMultiple(const Image& image, int64_t multiple);

// float [0, 1] -> uint8, rounded half up, as mattex run's outputs (pipeline._to_uint8).
uint8_t toByte(float value);

// (B, 1, H, W) pha and (B, 3, H, W) fgr of frame n, cropped to height x width: com on `background`
// (fgr * pha + background * (1 - pha), in uint8 as Pillow's composite), pha and fgr images.
void compose(const float* pha, const float* fgr, int64_t n, int64_t paddedHeight, int64_t paddedWidth,
             const Image& background, Image& com, Image* alpha, Image* foreground);

}  // namespace example
