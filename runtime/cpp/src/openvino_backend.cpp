// mattex's .onnx files on OpenVINO's CPU plugin, read as they are (as
// mattex.runtime.backends.openvino): the same compile settings, cache folder, refusals and
// messages, and the same static shapes: a file is compiled once per input shape it meets (only
// then does OpenVINO fold the refiner's layout changes), the last kStaticShapesKept kept.
// Inputs and float32 outputs are wrapped, not copied: OpenVINO reads and writes the caller's
// buffers.
#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>

#include "backend.hpp"
#include "environment.hpp"
#include "half.hpp"
#include "metadata.hpp"
#include "model_cache.hpp"
#include "mattex_facts.hpp"

namespace mattex::detail {
namespace {

const char* const kDevice = "CPU";
const size_t kStaticShapesKept = facts::kOpenVinoStaticShapesKept;  // generated from mattex/shared_facts.json
const ov::Shape kAsDeclared{};        // compile with the input shapes the file declares
const char* const kInt8Refusal = facts::kOpenVinoInt8Refusal;  // mattex.runtime.backends.openvino.INT8_REFUSAL

std::string baseName(const std::string& path) { return std::filesystem::path(path).filename().string(); }

std::string lastLine(const std::string& text) {
  std::string line, last;
  for (char c : text) {
    if (c == '\n') {
      if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
      line.clear();
    } else {
      line += c;
    }
  }
  if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  const auto first = last.find_first_not_of(" \t");
  return first == std::string::npos ? std::string("OpenVINO error") : last.substr(first);
}

std::string dtypeName(const ov::element::Type& type) {
  if (type == ov::element::f32) return "float32";
  if (type == ov::element::f16) return "float16";
  if (type == ov::element::u8) return "uint8";
  return type.get_type_name();
}

ov::element::Type elementType(const std::string& dtype) {
  return dtype == "uint8" ? ov::element::u8 : dtype == "float16" ? ov::element::f16 : ov::element::f32;
}

class OpenVinoBackend : public Backend {
 public:
  OpenVinoBackend(const std::string& path, const Options& options) {
    const std::string name = baseName(path);
    const std::string cpu = core_.get_property(kDevice, ov::device::full_name);
    const auto hint = inferencePrecision(options.inferencePrecision, cpu);
    const std::string cacheDir = options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir;

    const auto model = read(path);
    info.precision = "fp32";
    readMetadata(metadataProps(*model, name), name, info);
    if (info.precision == "int8") throw BackendUnavailableError(name + ": " + kInt8Refusal);
    std::vector<std::string> inputs;
    for (const auto& input : model->inputs()) inputs.push_back(anyName(input));
    requireInputs(inputs, name);
    settleInputDtype(dtypeName(model->inputs()[0].get_element_type()), name, info);
    for (const auto& output : model->outputs()) info.outputs.push_back(anyName(output));
    for (const char* needed : {"pha", "fgr"}) {
      if (std::find(info.outputs.begin(), info.outputs.end(), needed) == info.outputs.end()) {
        throw ModelFileError(name + " has no output named " + needed + ": not a mattex model");
      }
    }

    config_ = ov::AnyMap{ov::hint::inference_precision(hint),
                         ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
    const int threads = options.threads > 0 ? options.threads : defaultThreads();  // both checked for bounds
    if (threads > 0) config_.emplace(ov::inference_num_threads(threads));
    model_ = model;
    path_ = path;
    cacheDir_ = cacheDir;
    info.arithmetic = options.inferencePrecision == "bf16" ? "bf16" : "";
    for (const auto& output : model->outputs()) {
      if (anyName(output) == "pha" || anyName(output) == "fgr") {
        outputIsF32_[anyName(output)] = output.get_element_type() == ov::element::f32;
      }
    }
    // Shapes are fixed per input shape only for mattex's exports that leave them free; compiled
    // at open for the size the file was exported at (as Python does), so a file OpenVINO cannot
    // compile fails here, and the common case compiles once.
    for (const auto& input : model->inputs()) freeShapes_ = freeShapes_ || input.get_partial_shape().is_dynamic();
    freeShapes_ = freeShapes_ && info.mattexExport;
    const size_t h = size_t(info.traceHeight), w = size_t(info.traceWidth);
    std::lock_guard<std::mutex> lock(mutex_);
    compiledFor(!freeShapes_ ? kAsDeclared : info.io == "uint8" ? ov::Shape{1, h, w, 3} : ov::Shape{1, 3, h, w});
  }

  void infer(const void* src, const void* bgr, int64_t b, int64_t h, int64_t w, float* pha, float* fgr) override {
    const ov::Shape input = info.io == "uint8" ? ov::Shape{size_t(b), size_t(h), size_t(w), 3}
                                               : ov::Shape{size_t(b), 3, size_t(h), size_t(w)};
    const ov::element::Type type = elementType(info.ioDtype);
    Lease lease(*this, freeShapes_ ? input : kAsDeclared);
    ov::InferRequest& request = lease.request;
    request.set_tensor("src", ov::Tensor(type, input, const_cast<void*>(src)));
    request.set_tensor("bgr", ov::Tensor(type, input, const_cast<void*>(bgr)));
    const ov::Shape shapes[2] = {{size_t(b), 1, size_t(h), size_t(w)}, {size_t(b), 3, size_t(h), size_t(w)}};
    float* outputs[2] = {pha, fgr};
    const char* names[2] = {"pha", "fgr"};
    for (int i = 0; i < 2; ++i) {  // float32 outputs are written straight into the caller's buffers
      if (outputIsF32_[names[i]]) request.set_tensor(names[i], ov::Tensor(ov::element::f32, shapes[i], outputs[i]));
    }
    request.infer();
    for (int i = 0; i < 2; ++i) {
      if (outputIsF32_[names[i]]) continue;
      const ov::Tensor tensor = request.get_tensor(names[i]);
      const auto* half = static_cast<const uint16_t*>(tensor.data());
      std::transform(half, half + tensor.get_size(), outputs[i], halfToFloat);
    }
  }

 private:
  // The model compiled for one input shape, with its idle infer requests.
  struct Compiled {
    ov::CompiledModel model;
    std::vector<ov::InferRequest> idle;
  };

  // The model compiled for inputs of `shape` (kAsDeclared: as the file declares them), compiled
  // now if it is new (mutex_ held).
  std::shared_ptr<Compiled> compiledFor(const ov::Shape& shape) {
    auto found = byShape_.find(shape);
    if (found == byShape_.end()) {
      auto compiled = std::make_shared<Compiled>();
      try {
        auto model = model_;
        if (shape != kAsDeclared) {
          model = model_->clone();
          model->reshape(std::map<std::string, ov::PartialShape>{{"src", shape}, {"bgr", shape}});
        }
        const CacheEntry entry(cacheDir_, path_);  // held while OpenVINO compiles into it or reads it
        core_.set_property(ov::cache_dir(entry.folder()));
        compiled->model = core_.compile_model(model, kDevice, config_);
      } catch (const ov::Exception& e) {  // OpenVINO's shape inference or compilation refused it
        if (!exhaustedResource(e).empty()) throw;  // the machine refused, not the file: Matter names it
        throw ModelFileError("OpenVINO cannot compile " + baseName(path_) + ": " + lastLine(e.what()));
      }
      found = byShape_.emplace(shape, compiled).first;
      recent_.push_back(shape);
      if (recent_.size() > kStaticShapesKept) {  // a Lease in flight keeps its model alive
        byShape_.erase(recent_.front());
        recent_.pop_front();
      }
    } else {
      recent_.remove(shape);
      recent_.push_back(shape);
    }
    return found->second;
  }

  // One infer request per call in flight: a Matter shared by several threads runs them at once.
  struct Lease {
    Lease(OpenVinoBackend& owner, const ov::Shape& shape) : owner(owner) {
      std::lock_guard<std::mutex> lock(owner.mutex_);
      compiled = owner.compiledFor(shape);
      if (compiled->idle.empty()) {
        request = compiled->model.create_infer_request();
      } else {
        request = std::move(compiled->idle.back());
        compiled->idle.pop_back();
      }
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(owner.mutex_);
      compiled->idle.push_back(std::move(request));
    }
    OpenVinoBackend& owner;
    std::shared_ptr<Compiled> compiled;
    ov::InferRequest request;
  };

  ov::element::Type inferencePrecision(const std::string& precision, const std::string& cpu) {
    if (precision != "f32" && precision != "bf16") {
      throw ConfigError("unknown OpenVINO inference precision '" + precision + "'; known: f32, bf16");
    }
    if (precision == "f32") return ov::element::f32;
    const auto capabilities = core_.get_property(kDevice, ov::device::capabilities);
    if (std::find(capabilities.begin(), capabilities.end(), "BF16") == capabilities.end()) {
      std::string offered;
      for (const auto& c : capabilities) offered += (offered.empty() ? "" : ", ") + c;
      throw BackendUnavailableError("inference precision bf16 needs a CPU with BF16 (AMX or AVX-512 BF16); " + cpu +
                                    " offers " + offered + ": use f32");
    }
    return ov::element::bf16;
  }

  // The ONNX file through OpenVINO's ONNX frontend only, as Python reads it (core.read_model would
  // also try its TensorFlow and Paddle readers on a file that is not ONNX, and print their errors).
  std::shared_ptr<ov::Model> read(const std::string& path) {
    try {
      const auto onnx = frontends_.load_by_framework("onnx");
      return onnx->convert(onnx->load(path));
    } catch (const std::exception& e) {
      if (!exhaustedResource(e).empty()) throw;  // the machine refused, not the file: Matter names it
      const std::string message = e.what();
      if (message.find("trt.plugins") != std::string::npos || message.find("TopkLastDim") != std::string::npos) {
        throw BackendUnavailableError(baseName(path) +
                                      " calls a TensorRT plugin (exported with `topk` plugin): it runs on TensorRT "
                                      "only (mattex build); export with `topk` onnx for OpenVINO");
      }
      throw ModelFileError(path + " is not a loadable ONNX model (OpenVINO: " + lastLine(message) + ")");
    }
  }

  // The ONNX file's metadata_props, which OpenVINO's ONNX reader keeps under "framework".
  static std::map<std::string, std::string> metadataProps(const ov::Model& model, const std::string& name) {
    std::map<std::string, std::string> props;
    const auto& info = model.get_rt_info();
    const auto framework = info.find("framework");
    if (framework == info.end()) return props;
    for (const auto& [key, value] : framework->second.as<ov::AnyMap>()) {
      const std::string text = value.as<std::string>();
      if (!isUtf8(text) || !isUtf8(key)) {
        throw ModelFileError(name + " is not a readable ONNX file: its metadata is not UTF-8");
      }
      props[key] = text;
    }
    return props;
  }

  template <typename Port>
  static std::string anyName(const Port& port) {
    const auto& names = port.get_names();
    return names.empty() ? std::string() : port.get_any_name();
  }

  ov::frontend::FrontEndManager frontends_;  // declared before the model it reads: outlives it
  ov::Core core_;
  std::shared_ptr<ov::Model> model_;
  ov::AnyMap config_;
  std::string path_, cacheDir_;
  std::map<std::string, bool> outputIsF32_;
  bool freeShapes_ = false;  // a mattex export with free batch/height/width: compiled per shape
  std::mutex mutex_;  // guards byShape_, recent_ and every Compiled's idle requests
  std::map<ov::Shape, std::shared_ptr<Compiled>> byShape_;
  std::list<ov::Shape> recent_;  // least recently used first
};

}  // namespace

std::unique_ptr<Backend> openOpenVino(const std::string& path, const Options& options, const Sidecar*) {
  try {
    return std::make_unique<OpenVinoBackend>(path, options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // ov::Exception while compiling: the file's graph, not the caller
    if (!exhaustedResource(e).empty()) throw;  // threads or memory the machine refused: Matter names them
    throw ModelFileError(path + " is not a loadable ONNX model (OpenVINO: " + lastLine(e.what()) + ")");
  }
}

}  // namespace mattex::detail
