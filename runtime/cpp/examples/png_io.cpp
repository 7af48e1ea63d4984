#include "png_io.hpp"

#include <png.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace example {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

}  // namespace

Image readPng(const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    throw std::runtime_error(path + ": not a readable PNG (" + png.message + ")");
  }
  png.format = PNG_FORMAT_RGB;
  Image image;
  image.height = png.height;
  image.width = png.width;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    png_image_free(&png);
    throw std::runtime_error(path + ": " + png.message);
  }
  return image;
}

void writePng(const std::string& path, const Image& image) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  const std::string partial = path + ".partial";
  {
    File file(std::fopen(partial.c_str(), "wb"));
    if (!file) throw std::runtime_error("cannot write " + partial);
    const bool written = png_image_write_to_stdio(&png, file.get(), 0, image.pixels.data(), 0, nullptr) &&
                         std::fflush(file.get()) == 0;
    if (!written) {
      file.reset();
      std::remove(partial.c_str());
      throw std::runtime_error("cannot write " + path + (png.message[0] ? std::string(": ") + png.message : ""));
    }
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) {
    std::remove(partial.c_str());
    throw std::runtime_error("cannot rename " + partial + " to " + path);
  }
}

Image green(int64_t height, int64_t width) {
  Image image{height, width, 3, std::vector<uint8_t>(height * width * 3)};
  const uint8_t colour[3] = {120, 255, 155};  // mattex.runtime.media.GREEN
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = colour[i % 3];
  return image;
}

Image padToMultiple(const Image& image, int64_t multiple) {
  Image padded;
  padded.channels = image.channels;
  padded.height = (image.height + multiple - 1) / multiple * multiple;
  padded.width = (image.width + multiple - 1) / multiple * multiple;
  padded.pixels.resize(padded.height * padded.width * padded.channels);
  for (int64_t y = 0; y < padded.height; ++y) {
    const int64_t sy = std::min(y, image.height - 1);
    for (int64_t x = 0; x < padded.width; ++x) {
      const int64_t sx = std::min(x, image.width - 1);
      for (int64_t c = 0; c < image.channels; ++c) {
        padded.pixels[(y * padded.width + x) * padded.channels + c] =
            image.pixels[(sy * image.width + sx) * image.channels + c];
      }
    }
  }
  return padded;
}

uint8_t toByte(float value) {
  const float scaled = std::fmin(std::fmax(value * 255.0f, 0.0f), 255.0f) + 0.5f;
  return static_cast<uint8_t>(scaled);
}

void compose(const float* pha, const float* fgr, int64_t n, int64_t paddedHeight, int64_t paddedWidth,
             const Image& background, Image& com, Image* alpha, Image* foreground) {
  const int64_t height = background.height, width = background.width, plane = paddedHeight * paddedWidth;
  const float* a = pha + n * plane;
  const float* f = fgr + n * 3 * plane;
  com = Image{height, width, 3, std::vector<uint8_t>(height * width * 3)};
  if (alpha) *alpha = Image{height, width, 1, std::vector<uint8_t>(height * width)};
  if (foreground) *foreground = Image{height, width, 3, std::vector<uint8_t>(height * width * 3)};
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      const int64_t at = y * paddedWidth + x, pixel = y * width + x;
      const unsigned alphaByte = toByte(a[at]);
      if (alpha) alpha->pixels[pixel] = static_cast<uint8_t>(alphaByte);
      for (int64_t c = 0; c < 3; ++c) {
        const unsigned fg = toByte(f[c * plane + at]), bg = background.pixels[pixel * 3 + c];
        if (foreground) foreground->pixels[pixel * 3 + c] = static_cast<uint8_t>(fg);
        // Pillow's Image.composite: (fg * a + bg * (255 - a)) / 255, rounded, in integers.
        const unsigned blend = fg * alphaByte + bg * (255 - alphaByte) + 128;
        com.pixels[pixel * 3 + c] = static_cast<uint8_t>((blend + (blend >> 8)) >> 8);
      }
    }
  }
}

}  // namespace example
