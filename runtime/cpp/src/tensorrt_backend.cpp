// Engines (raw TensorRT plans) over the TensorRT 10/11 C++ API, or TensorRT for RTX's (the same
// API, -DMATTEX_TENSORRT_RTX=ON): IRuntime -> deserializeCudaEngine -> IExecutionContext; I/O by
// tensor name, setInputShape, setTensorAddress, enqueueV3 on the backend's own stream. Matter::open
// has read the sidecar and checked the plan against it; this checks the environment (release,
// GPU) with the Python runtime's rules before deserializing.
#include <NvInfer.h>
#if defined(MATTEX_WITH_PLUGINS) && !defined(MATTEX_TENSORRT_RTX)
#include <NvInferPlugin.h>
#endif
#include <cuda_runtime_api.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>

#include "backend.hpp"
#include "half.hpp"
#include "sidecar.hpp"

namespace mattex::detail {
namespace {

#ifdef MATTEX_TENSORRT_RTX
const char* const kBackend = "tensorrt-rtx";
#else
const char* const kBackend = "tensorrt";
#endif

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw BackendUnavailableError(std::string(what) + ": " + cudaGetErrorString(status));
}

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << message << "\n";
  }
};

std::string runningVersion() {
  const int v = getInferLibVersion();  // major * 10000 + minor * 100 + patch
  std::ostringstream s;
  s << v / 10000 << "." << (v / 100) % 100 << "." << v % 100;
  return s.str();
}

size_t elementSize(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kUINT8: return 1;
    default: return 0;
  }
}

std::string dtypeName(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kUINT8: return "uint8";
    default: return "an unsupported type";
  }
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  void ensure(size_t needed) {
    if (needed <= bytes) return;
    if (ptr) cudaFree(ptr);
    ptr = nullptr;
    bytes = 0;
    check(cudaMalloc(&ptr, needed), "cudaMalloc");
    bytes = needed;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

nvinfer1::Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d) {
  nvinfer1::Dims dims{};
  dims.nbDims = 4;
  dims.d[0] = a;
  dims.d[1] = b;
  dims.d[2] = c;
  dims.d[3] = d;
  return dims;
}

class TensorRTBackend : public Backend {
 public:
  TensorRTBackend(const std::string& path, const Options& options, const Sidecar& sidecar) : sidecar_(sidecar) {
    check(cudaSetDevice(options.device), "cudaSetDevice");
    cudaDeviceProp gpu{};
    check(cudaGetDeviceProperties(&gpu, options.device), "cudaGetDeviceProperties");
    checkEnvironment(sidecar_, kBackend, runningVersion(), gpu.major, gpu.minor, gpu.name);

    std::ifstream file(path, std::ios::binary);
    const std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
#if defined(MATTEX_WITH_PLUGINS) && !defined(MATTEX_TENSORRT_RTX)
    // Plans exported with --topk plugin call libnvinfer_plugin's TopkLastDim: register its
    // creators before deserializing (harmless for plans without plugins).
    initLibNvInferPlugins(&logger_, "");
#endif
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw BackendUnavailableError("TensorRT could not create a runtime");
    if (sidecar_.versionCompatible) runtime_->setEngineHostCodeAllowed(true);
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) throw CorruptEngineError("TensorRT could not deserialize " + path);
    for (const char* name : {"src", "bgr", "pha", "fgr"}) {
      bool found = false;
      for (int i = 0; i < engine_->getNbIOTensors(); ++i) found = found || std::string(engine_->getIOTensorName(i)) == name;
      if (!found) throw CorruptEngineError(path + " has no I/O tensor named " + name + ": not a mattex engine");
    }
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      if (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kOUTPUT) info.outputs.push_back(name);
    }
    inputType_ = engine_->getTensorDataType("src");
    phaType_ = engine_->getTensorDataType("pha");
    fgrType_ = engine_->getTensorDataType("fgr");
    for (auto type : {inputType_, phaType_, fgrType_}) {
      if (!elementSize(type) || (type == nvinfer1::DataType::kUINT8 && type != inputType_)) {
        throw BackendUnavailableError(path + " has I/O of " + dtypeName(type) +
                                      ": the C++ runtime takes float32, float16 and uint8 inputs, float outputs");
      }
    }
    info.ioDtype = dtypeName(inputType_);
    info.io = inputType_ == nvinfer1::DataType::kUINT8 ? "uint8" : "float";
    info.precision = sidecar_.precision;
    info.mattexExport = true;
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw BackendUnavailableError("createExecutionContext failed");
    check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }

  ~TensorRTBackend() override {
    context_.reset();
    engine_.reset();
    runtime_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  void infer(const void* src, const void* bgr, int64_t b, int64_t h, int64_t w, float* pha, float* fgr) override {
    std::lock_guard<std::mutex> lock(mutex_);  // one execution context: calls take turns
    const size_t plane = static_cast<size_t>(b * h * w);
    const size_t inputBytes = 3 * plane * elementSize(inputType_);
    const size_t phaBytes = plane * elementSize(phaType_), fgrBytes = 3 * plane * elementSize(fgrType_);
    src_.ensure(inputBytes);
    bgr_.ensure(inputBytes);
    pha_.ensure(phaBytes);
    fgr_.ensure(fgrBytes);
    check(cudaMemcpyAsync(src_.ptr, src, inputBytes, cudaMemcpyHostToDevice, stream_), "copy src");
    check(cudaMemcpyAsync(bgr_.ptr, bgr, inputBytes, cudaMemcpyHostToDevice, stream_), "copy bgr");
    prepare(b, h, w, stream_);
    bind(src_.ptr, bgr_.ptr, pha_.ptr, fgr_.ptr, stream_);
    download(pha_.ptr, phaType_, plane, pha, phaHost_);
    download(fgr_.ptr, fgrType_, 3 * plane, fgr, fgrHost_);
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (phaType_ == nvinfer1::DataType::kHALF) std::transform(phaHost_.begin(), phaHost_.begin() + plane, pha, halfToFloat);
    if (fgrType_ == nvinfer1::DataType::kHALF) {
      std::transform(fgrHost_.begin(), fgrHost_.begin() + 3 * plane, fgr, halfToFloat);
    }
  }

  void enqueue(const void* src, const void* bgr, int64_t b, int64_t h, int64_t w, void* pha, void* fgr,
               void* stream) override {
    std::lock_guard<std::mutex> lock(mutex_);
    prepare(b, h, w, static_cast<cudaStream_t>(stream));
    bind(src, bgr, pha, fgr, static_cast<cudaStream_t>(stream));
  }

 private:
  void prepare(int64_t b, int64_t h, int64_t w, cudaStream_t stream) {
    int index = 0;
    for (size_t i = 0; i < sidecar_.profiles.size(); ++i) {
      if (sidecar_.profiles[i].accepts(b, h, w)) {
        index = static_cast<int>(i);
        break;
      }
    }
    if (index != profile_) {
      if (!context_->setOptimizationProfileAsync(index, stream)) throw BackendUnavailableError("setOptimizationProfileAsync failed");
      profile_ = index;
    }
    const auto input = info.io == "uint8" ? dims4(b, h, w, 3) : dims4(b, 3, h, w);
    for (const char* name : {"src", "bgr"}) {
      if (!context_->setInputShape(name, input)) throw InputShapeError(std::string("TensorRT refused the shape of ") + name);
    }
  }

  void bind(const void* s, const void* b, void* p, void* f, cudaStream_t stream) {
    const bool ok = context_->setTensorAddress("src", const_cast<void*>(s)) &&
                    context_->setTensorAddress("bgr", const_cast<void*>(b)) && context_->setTensorAddress("pha", p) &&
                    context_->setTensorAddress("fgr", f);
    if (!ok) throw BackendUnavailableError("setTensorAddress failed");
    // Engines with debug outputs: TensorRT writes every output, so each gets a scratch buffer.
    for (size_t i = 0; i < info.outputs.size(); ++i) {
      const std::string& name = info.outputs[i];
      if (name == "pha" || name == "fgr") continue;
      const auto shape = context_->getTensorShape(name.c_str());
      size_t bytes = elementSize(engine_->getTensorDataType(name.c_str()));
      for (int d = 0; d < shape.nbDims; ++d) bytes *= static_cast<size_t>(std::max<int64_t>(shape.d[d], 1));
      debug_[name].ensure(bytes);
      if (!context_->setTensorAddress(name.c_str(), debug_[name].ptr)) throw BackendUnavailableError("setTensorAddress failed");
    }
    if (!context_->enqueueV3(stream)) throw BackendUnavailableError("TensorRT enqueueV3 failed (see the TensorRT log)");
  }

  void download(const void* device, nvinfer1::DataType type, size_t count, float* out, std::vector<uint16_t>& staging) {
    if (type == nvinfer1::DataType::kFLOAT) {
      check(cudaMemcpyAsync(out, device, count * 4, cudaMemcpyDeviceToHost, stream_), "copy output");
      return;
    }
    staging.resize(count);
    check(cudaMemcpyAsync(staging.data(), device, count * 2, cudaMemcpyDeviceToHost, stream_), "copy output");
  }

  Sidecar sidecar_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  int profile_ = 0;
  nvinfer1::DataType inputType_{}, phaType_{}, fgrType_{};
  DeviceBuffer src_, bgr_, pha_, fgr_;
  std::map<std::string, DeviceBuffer> debug_;
  std::vector<uint16_t> phaHost_, fgrHost_;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<Backend> openTensorRT(const std::string& path, const Options& options, const Sidecar* sidecar) {
  return std::make_unique<TensorRTBackend>(path, options, *sidecar);
}

}  // namespace mattex::detail
