// The registry of engines (as mattex.runtime.backends.BACKENDS): every backend the C++ runtime
// knows, each built in or not; one that is not names the CMake option that builds it.
#include <stdexcept>

#include "backend.hpp"
#include "mattex_facts.hpp"  // generated from mattex/shared_facts.json: the backends' ranks

namespace mattex::detail {

#ifdef MATTEX_WITH_OPENVINO
std::unique_ptr<Backend> openOpenVino(const std::string& path, const Options& options, const Sidecar* sidecar);
#define MATTEX_OPENVINO_FACTORY openOpenVino
#else
#define MATTEX_OPENVINO_FACTORY nullptr
#endif

#ifdef MATTEX_WITH_TENSORRT
std::unique_ptr<Backend> openTensorRT(const std::string& path, const Options& options, const Sidecar* sidecar);
#ifdef MATTEX_TENSORRT_RTX  // one library links one of them: they share TensorRT's C++ names
#define MATTEX_TENSORRT_FACTORY nullptr
#define MATTEX_TENSORRT_RTX_FACTORY openTensorRT
#else
#define MATTEX_TENSORRT_FACTORY openTensorRT
#define MATTEX_TENSORRT_RTX_FACTORY nullptr
#endif
#else
#define MATTEX_TENSORRT_FACTORY nullptr
#define MATTEX_TENSORRT_RTX_FACTORY nullptr
#endif

namespace {

// A backend the C++ runtime implements: its files and rank from the shared facts (as Python's
// registry has them), how to build it in and its factory from here.
BackendEntry known(const std::string& name, const char* buildOption, Factory factory) {
  for (const auto& backend : facts::kBackends) {
    if (backend.name != name) continue;
    std::vector<std::string> suffixes;
    for (const char* suffix : backend.suffixes) {
      if (suffix) suffixes.push_back(suffix);
    }
    return {name, suffixes, buildOption, factory, backend.rank};
  }
  throw std::logic_error("backend " + name + " is not in mattex/shared_facts.json");
}

std::vector<BackendEntry>& registry() {
  static std::vector<BackendEntry> entries = {
      known("openvino", "-DMATTEX_WITH_OPENVINO=ON (and -DOpenVINO_DIR=<openvino>/cmake)", MATTEX_OPENVINO_FACTORY),
      known("tensorrt", "-DMATTEX_WITH_TENSORRT=ON (and -DTENSORRT_ROOT=<prefix>)", MATTEX_TENSORRT_FACTORY),
      known("tensorrt-rtx", "-DMATTEX_WITH_TENSORRT=ON -DMATTEX_TENSORRT_RTX=ON (and -DTENSORRT_ROOT=<TensorRT for RTX>)",
            MATTEX_TENSORRT_RTX_FACTORY),
  };
  return entries;
}

}  // namespace

const std::vector<BackendEntry>& backends() { return registry(); }

const BackendEntry& backend(const std::string& name) {
  std::string known;
  for (const auto& entry : registry()) {
    if (entry.name == name) return entry;
    known += (known.empty() ? "" : ", ") + entry.name;
  }
  throw ConfigError("unknown backend '" + name + "' for the C++ runtime; known: " + known);
}

void registerBackend(BackendEntry entry) {
  for (const auto& existing : registry()) {
    if (existing.name == entry.name) throw std::logic_error("backend " + entry.name + " is registered twice");
  }
  registry().push_back(std::move(entry));
}

}  // namespace mattex::detail

namespace mattex {

std::vector<std::string> builtBackends() {
  std::vector<std::string> names;
  for (const auto& entry : detail::backends()) {
    if (entry.factory) names.push_back(entry.name);
  }
  return names;
}

}  // namespace mattex
