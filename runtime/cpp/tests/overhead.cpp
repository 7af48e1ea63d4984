// The C++ runtime's own cost per frame, for benchmarks/cpp_runtime.py (built with
// -DMATTEX_BUILD_BENCHMARKS=ON):
//   mattex_overhead MODEL H W ROUNDS -> "ms <run> <infer> <unchecked> <run - infer> <unchecked - infer>":
//   medians of Matter::run, the bare infer, Matter::run without the value scan (checkValues false),
//   and of the per-round differences (each round runs all three back to back, so a drift of the
//   machine's speed cancels out of a difference)
// The bare call is OpenVINO's infer on a model compiled with the backend's settings (f32,
// LATENCY, MATTEX_THREADS), on the same input tensors: what Matter::run adds is its checks, its
// value scan and the wrapping of the caller's buffers.
#include <openvino/openvino.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "../src/environment.hpp"
#include "mattex/matter.hpp"
#include "test_frames.hpp"

namespace {


double medianMs(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int measure(const char* model, int64_t h, int64_t w, int rounds) {
  auto matter = mattex::Matter::open(model);
  mattex::Options unchecked;
  unchecked.checkValues = false;
  auto uncheckedMatter = mattex::Matter::open(model, unchecked);
  std::vector<float> src, bgr, pha(static_cast<size_t>(h * w)), fgr(3 * pha.size());
  mattex::testing::frames(1, h, w, src, bgr);
  using Clock = std::chrono::steady_clock;
  std::vector<double> runMs, inferMs, uncheckedMs;
  // The bare OpenVINO call, compiled as the backend compiles it, on the same tensors.
  ov::Core core;
  core.set_property(ov::cache_dir(mattex::detail::defaultCacheDir()));
  ov::AnyMap config{ov::hint::inference_precision(ov::element::f32),
                    ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
  if (mattex::detail::defaultThreads() > 0) config.emplace(ov::inference_num_threads(mattex::detail::defaultThreads()));
  auto request = core.compile_model(model, "CPU", config).create_infer_request();
  const ov::Shape shape{1, 3, size_t(h), size_t(w)};
  request.set_tensor("src", ov::Tensor(ov::element::f32, shape, src.data()));
  request.set_tensor("bgr", ov::Tensor(ov::element::f32, shape, bgr.data()));
  for (int r = 0; r < rounds + 1; ++r) {  // round 0 warms both up
    auto start = Clock::now();
    matter->run(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
    if (r) runMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    request.infer();
    if (r) inferMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    uncheckedMatter->run(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
    if (r) uncheckedMs.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::vector<double> runOver, uncheckedOver;
  for (size_t i = 0; i < runMs.size(); ++i) {
    runOver.push_back(runMs[i] - inferMs[i]);
    uncheckedOver.push_back(uncheckedMs[i] - inferMs[i]);
  }
  std::cout << "ms " << medianMs(runMs) << " " << medianMs(inferMs) << " " << medianMs(uncheckedMs) << " "
            << medianMs(runOver) << " " << medianMs(uncheckedOver) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: mattex_overhead MODEL H W ROUNDS\n";
    return 2;
  }
  try {
    return measure(argv[1], std::atoll(argv[2]), std::atoll(argv[3]), std::atoi(argv[4]));
  } catch (const mattex::Error& e) {
    std::cerr << e.kind() << ": " << e.what() << "\n";
    return 1;
  }
}
