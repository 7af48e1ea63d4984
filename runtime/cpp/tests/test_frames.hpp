// The deterministic frames the test programs run (mattex_probe, mattex_overhead).
#pragma once

#include <cstdint>
#include <vector>

namespace mattex::testing {

// A deterministic frame and background, float32 (B, 3, H, W) in [0, 1].
inline void frames(int64_t b, int64_t h, int64_t w, std::vector<float>& src, std::vector<float>& bgr) {
  src.resize(static_cast<size_t>(b * 3 * h * w));
  bgr.resize(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    bgr[i] = static_cast<float>((i * 7919) % 1000) / 999.0f;
    src[i] = (i / static_cast<size_t>(w)) % 3 ? bgr[i] : static_cast<float>((i * 104729) % 997) / 996.0f;
  }
}

}  // namespace mattex::testing
