// consumer MODEL: mattes a 64x64 frame (a bright square on grey) and prints what it computed.
#include <mattex/matter.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    auto matter = mattex::Matter::open(argv[1]);
    const int64_t h = 64, w = 64;
    std::vector<uint8_t> bgr(h * w * 3, 100), src = bgr;
    for (int64_t y = 16; y < 48; ++y)
      for (int64_t x = 16; x < 48; ++x)
        for (int c = 0; c < 3; ++c) src[(y * w + x) * 3 + c] = 220;
    std::vector<float> pha(h * w), fgr(3 * h * w);
    matter->matteFrames(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
    double sum = 0;
    for (float a : pha) sum += a;
    std::printf("%s %s %s %.9f\n", mattex::version(), matter->info().backend.c_str(),
                matter->info().precision.c_str(), sum / pha.size());
    return 0;
  } catch (const mattex::Error& e) {
    std::printf("%s: %s\n", e.kind(), e.what());
    return 1;
  }
}
