// Matte one frame against its captured background with a mattex engine.
//
//   matte_frame bgm_resnet50_hd.engine frame.ppm background.ppm alpha.pgm
//
// Reads binary PPM (P6) images, writes the alpha matte as a binary PGM (P5).
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "mattex/matter.hpp"

namespace {

// P6 -> planar float32 (3, H, W) in [0, 1].
std::vector<float> readPpm(const std::string& path, int& width, int& height) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int maxValue = 0;
  in >> magic >> width >> height >> maxValue;
  in.get();
  if (!in || magic != "P6" || maxValue != 255) throw mattex::Error(path + ": expected a binary 8-bit PPM (P6)");
  std::vector<unsigned char> rgb(static_cast<size_t>(width) * height * 3);
  in.read(reinterpret_cast<char*>(rgb.data()), static_cast<std::streamsize>(rgb.size()));
  std::vector<float> planar(rgb.size());
  const size_t plane = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < 3; ++c) planar[c * plane + i] = rgb[i * 3 + c] / 255.0f;
  }
  return planar;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: " << argv[0] << " ENGINE FRAME.ppm BACKGROUND.ppm ALPHA.pgm\n";
    return 2;
  }
  try {
    int w = 0, h = 0, bw = 0, bh = 0;
    const auto src = readPpm(argv[2], w, h);
    const auto bgr = readPpm(argv[3], bw, bh);
    if (w != bw || h != bh) throw mattex::Error("frame and background sizes differ");
    auto matter = mattex::Matter::open(argv[1]);
    std::vector<float> pha(static_cast<size_t>(w) * h), fgr(3 * pha.size());
    matter->run(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
    std::ofstream out(argv[4], std::ios::binary);
    out << "P5\n" << w << " " << h << "\n255\n";
    for (float a : pha) out.put(static_cast<char>(static_cast<uint8_t>(a * 255.0f + 0.5f)));
    std::cout << "wrote " << argv[4] << " (" << w << "x" << h << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
