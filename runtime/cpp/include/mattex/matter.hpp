// mattex C++ runtime: matte frames with a mattex TensorRT engine.
//
//   auto matter = mattex::Matter::open("bgm_resnet50_hd.engine");   // reads bgm_resnet50_hd.engine.json
//   matter->run(src, bgr, 1, 1080, 1920, pha, fgr);                 // host float32 NCHW buffers
//
// Before deserializing, open() checks the engine against its JSON sidecar: the plan's sha256,
// the backend (the library is built against TensorRT or, with -DMATTEX_TENSORRT_RTX=ON, TensorRT
// for RTX), its version and the GPU the plan was built for or targets. Errors are thrown as
// mattex::Error.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mattex {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Profile {
  int64_t min[3];  // batch, height, width
  int64_t opt[3];
  int64_t max[3];
  bool accepts(int64_t batch, int64_t height, int64_t width) const;
};

struct Sidecar {
  std::string backend = "tensorrt";  // or "tensorrt-rtx"
  std::string tensorrtVersion;       // of the library that built the plan
  std::string gpuName;               // empty for TensorRT for RTX plans built without a GPU
  int computeCapability[2] = {0, 0};
  bool versionCompatible = false;
  std::string hardwareCompatibility = "none";
  // TensorRT for RTX: the compute capabilities the plan targets; empty with defaultTargets for
  // its default set (8.0, 8.6, 8.9, 12.0 and later).
  std::vector<std::array<int, 2>> targetComputeCapabilities;
  bool defaultTargets = true;
  std::string planSha256;
  std::string precision;
  std::vector<Profile> profiles;

  static Sidecar load(const std::string& enginePath);  // reads <enginePath>.json
};

// SHA-256 of a file, lowercase hex.
std::string sha256File(const std::string& path);

// Throws Error unless a runtime of `backend` ("tensorrt" or "tensorrt-rtx") at `version`, on a
// GPU named `gpuName` of compute capability ccMajor.ccMinor, can run the engine: the same rules
// as the Python runtime (mattex.runtime.sidecar.check_environment).
void checkEnvironment(const Sidecar& s, const std::string& backend, const std::string& version,
                      int ccMajor, int ccMinor, const std::string& gpuName);

class Matter {
 public:
  static std::unique_ptr<Matter> open(const std::string& enginePath, int device = 0);
  ~Matter();
  Matter(const Matter&) = delete;
  Matter& operator=(const Matter&) = delete;

  // src, bgr: host float32 (batch, 3, height, width) RGB in [0, 1]; pha: (batch, 1, H, W) and
  // fgr: (batch, 3, H, W) are written. height and width must be divisible by 4 and inside a
  // profile of the engine.
  void run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width,
           float* pha, float* fgr);

  // Zero copy: all pointers are device memory; the work is queued on `stream` (a cudaStream_t).
  void enqueue(const void* src, const void* bgr, int64_t batch, int64_t height, int64_t width,
               void* pha, void* fgr, void* stream);

  const Sidecar& sidecar() const;

 private:
  struct Impl;
  explicit Matter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mattex
