// Matte one image against its captured background: the C++ counterpart of
// `mattex run MODEL frame.png background.png --out OUT_DIR`.
//
//   matte_frame bgm_mobilenetv2_hd_fp32.onnx frame.png background.png out/
//
// Writes out/pha.png (alpha), out/fgr.png (foreground) and out/com.png (the foreground on the
// reference's green), each to a temporary name first. Frames whose sides are not a multiple of 4
// are edge-padded for the model and cropped back, as mattex run does.
#include <sys/stat.h>

#include <iostream>
#include <string>
#include <vector>

#include "mattex/matter.hpp"
#include "png_io.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0] << " MODEL FRAME.png BACKGROUND.png OUT_DIR\n"
              << "example: " << argv[0] << " bgm_mobilenetv2_hd_fp32.onnx frame.png background.png out/\n";
    return 2;
  }
  const std::string model = argv[1], outDir = argv[4];
  try {
    const example::Image src = example::readPng(argv[2]), bgr = example::readPng(argv[3]);
    if (src.height != bgr.height || src.width != bgr.width) {
      std::cerr << "error: the frame is " << src.width << "x" << src.height << " but the background is "
                << bgr.width << "x" << bgr.height << "; they must be the same size\n";
      return 2;
    }
    auto matter = mattex::Matter::open(model);
    const int64_t multiple = matter->info().sizeMultiple;
    const example::Image paddedSrc = example::padToMultiple(src, multiple);
    const example::Image paddedBgr = example::padToMultiple(bgr, multiple);
    const int64_t h = paddedSrc.height, w = paddedSrc.width;
    std::vector<float> pha(h * w), fgr(3 * h * w);
    matter->matteFrames(paddedSrc.pixels.data(), paddedBgr.pixels.data(), 1, h, w, pha.data(), fgr.data());

    const example::Image green = example::green(src.height, src.width);
    example::Image com, alpha, foreground;
    example::compose(pha.data(), fgr.data(), 0, h, w, green, com, &alpha, &foreground);
    mkdir(outDir.c_str(), 0777);  // an existing folder is fine; a failure shows when writing
    example::writePng(outDir + "/pha.png", alpha);
    example::writePng(outDir + "/fgr.png", foreground);
    example::writePng(outDir + "/com.png", com);
    std::cout << "matted " << src.width << "x" << src.height << " with " << matter->info().backend << " ("
              << matter->info().precision << ") into " << outDir << "\n";
    return 0;
  } catch (const mattex::Error& error) {
    std::cerr << "error: " << error.kind() << ": " << error.what() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
}
