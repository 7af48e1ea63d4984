// mattex C++ runtime: matte frames against a captured background with a mattex export.
//
//   auto matter = mattex::Matter::open("bgm_mobilenetv2_hd_fp32.onnx");  // OpenVINO (CPU)
//   auto matter = mattex::Matter::open("bgm_resnet50_hd_fp16.engine");  // TensorRT / TensorRT for RTX
//   matter->run(src, bgr, 1, 1080, 1920, pha, fgr);                  // float32 (B, 3, H, W) in [0, 1]
//   matter->matteFrames(srcFrames, bgrFrames, 1, 1080, 1920, pha, fgr);  // uint8 (B, H, W, 3) RGB
//
// The same checks as the Python runtime (mattex.runtime.Matter), from the file's own metadata:
// its I/O contract, the sizes it accepts, an engine's profiles and its sidecar; failures are
// typed errors (subclasses of mattex::Error) whose messages say what Python's say. This header
// names no backend's types: OpenVINO, TensorRT and CUDA stay private to the library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mattex/errors.hpp"  // generated (MATTEX_CXX_API: what the library exports)
#include "mattex/limits.hpp"  // generated: the numbers shared with Python

namespace mattex {

// Status, statusName and the error classes (Error and one per mattex.errors class the runtime
// raises) live in mattex/errors.hpp, generated from mattex/shared_facts.json with the C API's
// status codes: the one list of them both runtimes share.

struct Options {
  // "" picks by file: .onnx -> "openvino"; .engine/.plan -> the backend its sidecar names
  // ("tensorrt" or "tensorrt-rtx").
  std::string backend;
  // OpenVINO's arithmetic for float files: "f32", or "bf16" on CPUs with AMX or AVX-512 BF16
  // (refused elsewhere, as Python refuses it: OpenVINO would quietly run f32).
  std::string inferencePrecision = "f32";
  // CPU threads; 0: MATTEX_THREADS where set, else one per core (the backend's choice). Else
  // 1..maxThreads() (ConfigError otherwise, negative values included), as in Python.
  int threads = 0;
  // The compiled-model cache; "": $MATTEX_CACHE or $XDG_CACHE_HOME/mattex (~/.cache/mattex), then
  // openvino/ - the Python runtime's, with the same entry per file (docs/runtime.md, the model cache).
  std::string cacheDir;
  // Float frames must be finite and in [0, 1] (InputValueError otherwise), as in Python.
  bool checkValues = true;
  int device = 0;  // CUDA device (engines)
};

struct MATTEX_CXX_API Profile {
  int64_t min[3];  // batch, height, width
  int64_t opt[3];
  int64_t max[3];
  bool accepts(int64_t batch, int64_t height, int64_t width) const;
};

// What an opened file takes and gives, read from its metadata (ONNX metadata_props or the
// engine's sidecar) and checked against the graph.
struct ModelInfo {
  std::string path;
  std::string backend;     // openvino | tensorrt | tensorrt-rtx
  std::string precision;   // fp32 | fp16 | int8 (fp32 for an ONNX file mattex did not export)
  std::string io;          // "float": (B, 3, H, W) inputs; "uint8": (B, H, W, 3) frames
  std::string ioDtype;     // float32 | float16 | uint8
  std::string arithmetic;  // "bf16" when OpenVINO runs a float file in bf16, else ""
  std::vector<std::string> outputs;  // pha, fgr and the debug outputs the file has
  std::vector<Profile> profiles;     // an engine's; empty: any batch and size
  int64_t sizeMultiple = kSizeMultiple;  // H and W must be divisible by it (the I/O contract)
  int64_t traceHeight = 64;          // the size the file was exported at (64x64 when unknown)
  int64_t traceWidth = 64;
  bool mattexExport = false;         // false: an ONNX file with src and bgr inputs, no metadata
};

class MATTEX_CXX_API Matter {
 public:
  static std::unique_ptr<Matter> open(const std::string& path, const Options& options = Options());
  ~Matter();
  Matter(const Matter&) = delete;
  Matter& operator=(const Matter&) = delete;

  // src, bgr: host float32 (batch, 3, height, width) RGB in [0, 1], whatever the file takes (as
  // Python's Matter.matte_floats: cast for fp16-I/O files, rounded to frames for uint8 files).
  // pha (batch, 1, H, W) and fgr (batch, 3, H, W) float32 are written.
  void run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width, float* pha,
           float* fgr);

  // src, bgr: host uint8 (batch, height, width, 3) RGB frames as decoders give them, whatever the
  // file takes (as Python's Matter.matte_frames). Same outputs as run().
  void matteFrames(const uint8_t* src, const uint8_t* bgr, int64_t batch, int64_t height, int64_t width,
                   float* pha, float* fgr);

  // Engines only, zero copy: every pointer is device memory in the file's own dtypes and
  // layouts; the work is queued on `stream` (a cudaStream_t).
  void enqueue(const void* src, const void* bgr, int64_t batch, int64_t height, int64_t width, void* pha,
               void* fgr, void* stream);

  const ModelInfo& info() const;

  // Thread safety: run and matteFrames may be called on one Matter from several threads at once
  // (OpenVINO: each call takes an infer request of its own; TensorRT: calls take turns).

  struct Impl;  // private: defined in src/matter.cpp, not exported

 private:
  explicit Matter(std::unique_ptr<Impl> impl);
  static std::unique_ptr<Matter> openChecked(const std::string& path, const Options& options);
  std::unique_ptr<Impl> impl_;
};

// The backends this library was built with, e.g. {"openvino"}.
MATTEX_CXX_API std::vector<std::string> builtBackends();

// The most CPU threads a threads option or MATTEX_THREADS may ask for on this machine:
// kThreadsPerCore (mattex/limits.hpp) per online core (mattex.runtime.backends.base.max_threads).
MATTEX_CXX_API int maxThreads() noexcept;

// The library's version (mattex's).
MATTEX_CXX_API const char* version() noexcept;

}  // namespace mattex
