// mattex_align_probe: the C++ aligner (mattex::align::PlateAligner) frame by frame over PNG files,
// for tests/runtime/cpp/test_align_cpp.py, which runs Python's PlateAligner on the same frames.
//
//   mattex_align_probe [--threads N] [--in-order] PLATE.png OUT FRAME.png[:ALPHA.png] ...
//
// Each frame is aligned with the alpha given beside it (a grey PNG, 0..255; none: the aligner's
// first-frame path). Writes OUT/steps.jsonl (a JSON object per frame: homography, inliers,
// fallback, shift_px, gains, offsets, large_motion) and OUT/plates.npy (uint8, frames x H x W x 3,
// numpy's .npy format). A mattex error prints "Kind: message" and exits 2.
#include <png.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "mattex/errors.hpp"
#include "plate_aligner.hpp"

namespace {

// A PNG as 8-bit RGB (CV_8UC3) or grey (CV_8U).
cv::Mat readPng(const std::string& path, bool grey) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    throw std::runtime_error(path + ": not a readable PNG (" + png.message + ")");
  }
  png.format = grey ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  cv::Mat image(static_cast<int>(png.height), static_cast<int>(png.width), grey ? CV_8U : CV_8UC3);
  if (!png_image_finish_read(&png, nullptr, image.data, 0, nullptr)) {
    png_image_free(&png);
    throw std::runtime_error(path + ": " + png.message);
  }
  return image;
}

// numpy's .npy (version 1.0) of uint8 frames x H x W x 3.
void writeNpy(const std::string& path, const std::vector<cv::Mat>& plates) {
  const int height = plates.empty() ? 0 : plates[0].rows, width = plates.empty() ? 0 : plates[0].cols;
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(plates.size()) + ", " +
                       std::to_string(height) + ", " + std::to_string(width) + ", 3), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  const unsigned char length[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                   static_cast<unsigned char>(header.size() >> 8)};
  out.write(reinterpret_cast<const char*>(length), 2);
  out << header;
  for (const cv::Mat& plate : plates) {
    const cv::Mat packed = plate.isContinuous() ? plate : plate.clone();
    out.write(reinterpret_cast<const char*>(packed.data), static_cast<std::streamsize>(packed.total() * 3));
  }
  if (!out) throw std::runtime_error("cannot write " + path);
}

nlohmann::json stepJson(const mattex::align::AlignStep& step) {
  nlohmann::json homography = nlohmann::json::array();
  for (int r = 0; r < 3; ++r) {
    homography.push_back({step.homography(r, 0), step.homography(r, 1), step.homography(r, 2)});
  }
  return {{"homography", homography}, {"inliers", step.inliers},
          {"fallback", step.fallback}, {"shift_px", step.shiftPx},
          {"gains", step.gains},       {"offsets", step.offsets},
          {"large_motion", step.largeMotion}};
}

}  // namespace

int main(int argc, char** argv) {
  mattex::align::AlignOptions options;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      options.threads = std::stoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--in-order")) {
      options.inOrder = true;
    } else {
      args.emplace_back(argv[i]);
    }
  }
  if (args.size() < 3) {
    std::cerr << "usage: mattex_align_probe [--threads N] [--in-order] PLATE.png OUT FRAME.png[:ALPHA.png] ...\n";
    return 1;
  }
  try {
    mattex::align::PlateAligner aligner(readPng(args[0], false), options);
    const std::string out = args[1];
    std::ofstream steps(out + "/steps.jsonl");
    std::vector<cv::Mat> plates;
    for (size_t i = 2; i < args.size(); ++i) {
      const size_t colon = args[i].find(':');
      const cv::Mat frame = readPng(args[i].substr(0, colon), false);
      const cv::Mat alpha = colon == std::string::npos ? cv::Mat() : readPng(args[i].substr(colon + 1), true);
      mattex::align::AlignStep step;
      plates.push_back(aligner.align(frame, alpha, &step));
      steps << stepJson(step).dump() << "\n";
    }
    if (!steps.flush()) throw std::runtime_error("cannot write " + out + "/steps.jsonl");
    writeNpy(out + "/plates.npy", plates);
    std::cout << "frames " << plates.size() << " fallbacks " << aligner.stats().fallbacks << "\n";
  } catch (const mattex::Error& e) {
    std::cerr << e.kind() << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
