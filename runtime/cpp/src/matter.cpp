// mattex::Matter over the TensorRT 10/11 C++ API: IRuntime -> deserializeCudaEngine ->
// IExecutionContext; I/O by tensor name, setInputShape, setTensorAddress, enqueueV3.
#include <NvInfer.h>
#ifdef MATTEX_WITH_PLUGINS
#include <NvInferPlugin.h>
#endif
#include <cuda_runtime_api.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "mattex/matter.hpp"

// The backend this library runs: CMake defines it from -DMATTEX_TENSORRT_RTX.
#ifndef MATTEX_BACKEND
#define MATTEX_BACKEND "tensorrt"
#endif

namespace mattex {
namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string(what) + ": " + cudaGetErrorString(status));
  }
}

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << message << "\n";
  }
};

std::string runningTensorRTVersion() {
  const int v = getInferLibVersion();  // major * 10000 + minor * 100 + patch
  std::ostringstream s;
  s << v / 10000 << "." << (v / 100) % 100 << "." << v % 100;
  return s.str();
}

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  void ensure(size_t needed) {
    if (needed <= bytes) return;
    if (ptr) cudaFree(ptr);
    check(cudaMalloc(&ptr, needed), "cudaMalloc");
    bytes = needed;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
};

nvinfer1::Dims nchw(int64_t b, int64_t c, int64_t h, int64_t w) {
  nvinfer1::Dims d{};
  d.nbDims = 4;
  d.d[0] = b;
  d.d[1] = c;
  d.d[2] = h;
  d.d[3] = w;
  return d;
}

}  // namespace

struct Matter::Impl {
  Sidecar sidecar;
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cudaStream_t stream = nullptr;
  int profile = 0;
  DeviceBuffer src, bgr, pha, fgr;

  ~Impl() {
    context.reset();
    engine.reset();
    runtime.reset();
    if (stream) cudaStreamDestroy(stream);
  }

  void prepare(int64_t batch, int64_t height, int64_t width, void* s) {
    if (height % 4 || width % 4) {
      throw Error("src and bgr height and width must be divisible by 4, got " +
                  std::to_string(height) + "x" + std::to_string(width));
    }
    int index = -1;
    for (size_t i = 0; i < sidecar.profiles.size(); ++i) {
      if (sidecar.profiles[i].accepts(batch, height, width)) {
        index = static_cast<int>(i);
        break;
      }
    }
    if (index < 0) {
      throw Error("src/bgr shape (batch " + std::to_string(batch) + ", height " +
                  std::to_string(height) + ", width " + std::to_string(width) +
                  ") is outside the engine's profiles");
    }
    if (index != profile) {
      if (!context->setOptimizationProfileAsync(index, static_cast<cudaStream_t>(s))) {
        throw Error("setOptimizationProfileAsync failed");
      }
      profile = index;
    }
    for (const char* name : {"src", "bgr"}) {
      if (!context->setInputShape(name, nchw(batch, 3, height, width))) {
        throw Error(std::string("setInputShape failed for ") + name);
      }
    }
  }

  void bindAndRun(const void* s, const void* b, void* p, void* f, void* streamPtr) {
    const bool ok = context->setTensorAddress("src", const_cast<void*>(s)) &&
                    context->setTensorAddress("bgr", const_cast<void*>(b)) &&
                    context->setTensorAddress("pha", p) && context->setTensorAddress("fgr", f);
    if (!ok) throw Error("setTensorAddress failed");
    if (!context->enqueueV3(static_cast<cudaStream_t>(streamPtr))) throw Error("enqueueV3 failed");
  }
};

Matter::Matter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Matter::~Matter() = default;

const Sidecar& Matter::sidecar() const { return impl_->sidecar; }

std::unique_ptr<Matter> Matter::open(const std::string& enginePath, int device) {
  auto impl = std::make_unique<Impl>();
  impl->sidecar = Sidecar::load(enginePath);
  const std::string digest = sha256File(enginePath);
  if (digest != impl->sidecar.planSha256) {
    throw Error(enginePath + " changed since it was built (sha256 mismatch with its sidecar)");
  }
  check(cudaSetDevice(device), "cudaSetDevice");
  cudaDeviceProp gpu{};
  check(cudaGetDeviceProperties(&gpu, device), "cudaGetDeviceProperties");
  checkEnvironment(impl->sidecar, MATTEX_BACKEND, runningTensorRTVersion(), gpu.major, gpu.minor, gpu.name);

  std::ifstream file(enginePath, std::ios::binary);
  const std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
#ifdef MATTEX_WITH_PLUGINS
  // Plans exported with --topk plugin call libnvinfer_plugin's TopkLastDim: register its
  // creators before deserializing (harmless for plans without plugins).
  initLibNvInferPlugins(&impl->logger, "");
#endif
  impl->runtime.reset(nvinfer1::createInferRuntime(impl->logger));
  if (impl->sidecar.versionCompatible) impl->runtime->setEngineHostCodeAllowed(true);
  impl->engine.reset(impl->runtime->deserializeCudaEngine(plan.data(), plan.size()));
  if (!impl->engine) throw Error("TensorRT could not deserialize " + enginePath);
  for (const char* name : {"src", "bgr", "pha", "fgr"}) {
    bool found = false;
    for (int i = 0; i < impl->engine->getNbIOTensors(); ++i) {
      found = found || std::string(impl->engine->getIOTensorName(i)) == name;
    }
    if (!found) throw Error(enginePath + " has no I/O tensor named " + name);
    if (impl->engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT) {
      throw Error(std::string("this example runtime takes float32 I/O; ") + name + " is not");
    }
  }
  impl->context.reset(impl->engine->createExecutionContext());
  if (!impl->context) throw Error("createExecutionContext failed");
  check(cudaStreamCreate(&impl->stream), "cudaStreamCreate");
  return std::unique_ptr<Matter>(new Matter(std::move(impl)));
}

void Matter::run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width,
                 float* pha, float* fgr) {
  Impl& m = *impl_;
  m.prepare(batch, height, width, m.stream);
  const size_t plane = static_cast<size_t>(batch * height * width) * sizeof(float);
  m.src.ensure(3 * plane);
  m.bgr.ensure(3 * plane);
  m.pha.ensure(plane);
  m.fgr.ensure(3 * plane);
  check(cudaMemcpyAsync(m.src.ptr, src, 3 * plane, cudaMemcpyHostToDevice, m.stream), "copy src");
  check(cudaMemcpyAsync(m.bgr.ptr, bgr, 3 * plane, cudaMemcpyHostToDevice, m.stream), "copy bgr");
  m.bindAndRun(m.src.ptr, m.bgr.ptr, m.pha.ptr, m.fgr.ptr, m.stream);
  check(cudaMemcpyAsync(pha, m.pha.ptr, plane, cudaMemcpyDeviceToHost, m.stream), "copy pha");
  check(cudaMemcpyAsync(fgr, m.fgr.ptr, 3 * plane, cudaMemcpyDeviceToHost, m.stream), "copy fgr");
  check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
}

void Matter::enqueue(const void* src, const void* bgr, int64_t batch, int64_t height, int64_t width,
                     void* pha, void* fgr, void* stream) {
  impl_->prepare(batch, height, width, stream);
  impl_->bindAndRun(src, bgr, pha, fgr, stream);
}

}  // namespace mattex
