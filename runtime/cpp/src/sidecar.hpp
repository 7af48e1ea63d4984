// The JSON sidecar mattex writes beside every engine (mattex.runtime.sidecar), read and checked
// with the Python runtime's rules (private: not installed).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "mattex/matter.hpp"

namespace mattex::detail {

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

  static Sidecar load(const std::string& enginePath);  // reads <enginePath>.json; CorruptEngineError
};

// SHA-256 of a file, lowercase hex.
std::string sha256File(const std::string& path);
// The same of a string's bytes (the model cache's entry key).
std::string sha256Text(const std::string& text);

// CorruptEngineError unless the plan is the very file the sidecar describes.
void checkPlan(const std::string& enginePath, const Sidecar& sidecar);

// EngineMismatchError unless a runtime of `backend` ("tensorrt" or "tensorrt-rtx") at `version`,
// on a GPU named `gpuName` of compute capability ccMajor.ccMinor, can run the engine: the rules
// of mattex.runtime.sidecar.check_environment.
void checkEnvironment(const Sidecar& s, const std::string& backend, const std::string& version, int ccMajor,
                      int ccMinor, const std::string& gpuName);

}  // namespace mattex::detail
