// mattex C++ runtime: matte frames against a captured background with a mattex export.
//
//   auto matter = mattex::Matter::open("bgm_mobilenetv2_hd.onnx");   // OpenVINO (CPU)
//   auto matter = mattex::Matter::open("bgm_resnet50_hd.engine");    // TensorRT / TensorRT for RTX
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
#include <stdexcept>
#include <string>
#include <vector>

namespace mattex {

// What went wrong, as the C API's mattex_status reports it; the names are mattex.errors' classes.
enum class Status : int {
  Ok = 0,
  ModelFile = 1,           // ModelFileError: missing, empty, truncated, not ONNX, not a mattex export
  CorruptEngine = 2,       // CorruptEngineError: an engine or its sidecar unreadable or changed
  EngineMismatch = 3,      // EngineMismatchError: built for another TensorRT release or GPU
  BackendUnavailable = 4,  // BackendUnavailableError: a backend not built in, not installed, refused
  Config = 5,              // ConfigError: an option outside what the runtime supports
  InputShape = 6,          // InputShapeError: batch, size or buffer the file does not take
  InputValue = 7,          // InputValueError: NaN, Inf or values outside [0, 1] in float frames
  InvalidArgument = 8,     // a null pointer or handle (C API)
  Internal = 9,            // anything else a backend threw
  Resource = 10,           // ResourceError: the machine could not give threads or memory (appended: codes are ABI)
};

// The Python class name of a status ("ModelFileError", ...).
const char* statusName(Status status) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }
  const char* kind() const noexcept { return statusName(status_); }

 private:
  Status status_;
};

struct ModelFileError : Error {
  explicit ModelFileError(const std::string& message) : Error(Status::ModelFile, message) {}
};
struct CorruptEngineError : Error {
  explicit CorruptEngineError(const std::string& message) : Error(Status::CorruptEngine, message) {}
};
struct EngineMismatchError : Error {
  explicit EngineMismatchError(const std::string& message) : Error(Status::EngineMismatch, message) {}
};
struct BackendUnavailableError : Error {
  explicit BackendUnavailableError(const std::string& message) : Error(Status::BackendUnavailable, message) {}
};
struct ConfigError : Error {
  explicit ConfigError(const std::string& message) : Error(Status::Config, message) {}
};
struct InputShapeError : Error {
  explicit InputShapeError(const std::string& message) : Error(Status::InputShape, message) {}
};
struct InputValueError : Error {
  explicit InputValueError(const std::string& message) : Error(Status::InputValue, message) {}
};
// The machine could not give what a call needs (threads: a process or thread limit; memory: a
// buffer too large to allocate); the message names the resource. The input may be fine elsewhere.
struct ResourceError : Error {
  explicit ResourceError(const std::string& message) : Error(Status::Resource, message) {}
};

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

struct Profile {
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
  int64_t sizeMultiple = 4;          // H and W must be divisible by it (the I/O contract)
  int64_t traceHeight = 64;          // the size the file was exported at (64x64 when unknown)
  int64_t traceWidth = 64;
  bool mattexExport = false;         // false: an ONNX file with src and bgr inputs, no metadata
};

class Matter {
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

  struct Impl;  // private: src/matter_impl.hpp

 private:
  explicit Matter(std::unique_ptr<Impl> impl);
  static std::unique_ptr<Matter> openChecked(const std::string& path, const Options& options);
  std::unique_ptr<Impl> impl_;
};

// The backends this library was built with, e.g. {"openvino"}.
std::vector<std::string> builtBackends();

// The most CPU threads a threads option or MATTEX_THREADS may ask for on this machine:
// kThreadsPerCore per online core (mattex.runtime.backends.base.max_threads).
inline constexpr int kThreadsPerCore = 4;
int maxThreads() noexcept;

// The library's version (mattex's).
const char* version() noexcept;

}  // namespace mattex
