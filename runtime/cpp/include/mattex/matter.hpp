// mattex C++ runtime: matte frames with a mattex TensorRT engine.
//
//   auto matter = mattex::Matter::open("bgm_resnet50_hd.engine");   // reads bgm_resnet50_hd.engine.json
//   matter->run(src, bgr, 1, 1080, 1920, pha, fgr);                 // host float32 NCHW buffers
//
// Before deserializing, open() checks the engine against its JSON sidecar: the plan's sha256,
// the TensorRT version and the GPU it was built for. Errors are thrown as mattex::Error.
#pragma once

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
  std::string tensorrtVersion;
  std::string gpuName;
  int computeCapability[2] = {0, 0};
  bool versionCompatible = false;
  std::string hardwareCompatibility = "none";
  std::string planSha256;
  std::string precision;
  std::vector<Profile> profiles;

  static Sidecar load(const std::string& enginePath);  // reads <enginePath>.json
};

// SHA-256 of a file, lowercase hex.
std::string sha256File(const std::string& path);

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
