// The one interface every engine implements, and the registry Matter::open picks from
// (private: not installed). As in the Python runtime (mattex.runtime.backends): a backend opens
// one file and fills its ModelInfo; Matter checks every input once before a backend sees it.
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "mattex/matter.hpp"

namespace mattex::detail {

struct Sidecar;

class Backend {
 public:
  virtual ~Backend() = default;

  // src, bgr: host memory in the file's own dtype and layout (info.ioDtype; info.io "uint8":
  // (B, H, W, 3), else (B, 3, H, W)), already checked; pha, fgr: float32 host memory to write.
  virtual void infer(const void* src, const void* bgr, int64_t batch, int64_t height, int64_t width, float* pha,
                     float* fgr) = 0;

  // Device memory in and out, queued on a CUDA stream: engines only.
  virtual void enqueue(const void*, const void*, int64_t, int64_t, int64_t, void*, void*, void*) {
    throw BackendUnavailableError("the " + info.backend + " backend takes host memory; enqueue() is for engines");
  }

  ModelInfo info;
};

// sidecar: the engine's, read and checked against the plan by Matter::open; null for .onnx files.
using Factory = std::unique_ptr<Backend> (*)(const std::string& path, const Options& options, const Sidecar* sidecar);

struct BackendEntry {
  std::string name;
  std::vector<std::string> suffixes;
  std::string buildOption;  // how to build it in: the CMake option, named in the error
  Factory factory;          // null: not built into this library
  // Where the automatic choice ranks it among the backends of a file's suffix (lower first; -1:
  // never chosen automatically, as engines, which their sidecar names): the Python registry's
  // ranks, from mattex/shared_facts.json.
  int rank = -1;
};

// Every backend the C++ runtime knows, built in or not, and any a test registered.
const std::vector<BackendEntry>& backends();
const BackendEntry& backend(const std::string& name);  // ConfigError for an unknown name
// Adds a backend (tests: a fake one); a name already registered is a logic_error.
void registerBackend(BackendEntry entry);

// The resource a foreign exception says the machine could not give: "threads" (EAGAIN, "Resource
// temporarily unavailable": a process or thread limit), "memory" (std::bad_alloc, ENOMEM), or ""
// when it says something else. Backends let such exceptions through for Matter to name.
std::string exhaustedResource(const std::exception& e);

}  // namespace mattex::detail
