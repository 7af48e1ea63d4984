#include "fake_backend.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "../src/backend.hpp"
#include "../src/half.hpp"
#include "../src/metadata.hpp"

namespace mattex::testing {
namespace {

using Json = nlohmann::json;

class FakeBackend : public detail::Backend {
 public:
  explicit FakeBackend(const std::string& path) {
    std::ifstream file(path);
    Json j;
    try {
      file >> j;
    } catch (const Json::exception& e) {
      throw ModelFileError(path + " is not a loadable fake model (" + e.what() + ")");
    }
    std::map<std::string, std::string> props;
    const Json metadata = j.value("metadata_props", Json::object());  // kept: items() does not own it
    for (const auto& [key, value] : metadata.items()) {
      props[key] = value.get<std::string>();
    }
    const std::string name = path.substr(path.find_last_of('/') + 1);
    info.precision = "fp32";
    detail::readMetadata(props, name, info);
    if (info.precision == "int8") throw BackendUnavailableError(name + ": the fake backend refuses int8 files");
    detail::requireInputs(j.at("inputs").get<std::vector<std::string>>(), name);
    detail::settleInputDtype(j.at("dtype").get<std::string>(), name, info);
    info.outputs = {"pha", "fgr"};
    for (const auto& p : j.value("profiles", Json::array())) {  // as an engine's sidecar lists them
      Profile profile{};
      for (int i = 0; i < 3; ++i) {
        profile.min[i] = p.at(0).at(i).get<int64_t>();
        profile.opt[i] = p.at(1).at(i).get<int64_t>();
        profile.max[i] = p.at(2).at(i).get<int64_t>();
      }
      info.profiles.push_back(profile);
    }
  }

  void infer(const void* src, const void* bgr, int64_t b, int64_t h, int64_t w, float* pha, float* fgr) override {
    const size_t plane = static_cast<size_t>(h * w);
    for (int64_t n = 0; n < b; ++n) {
      for (size_t i = 0; i < plane; ++i) {
        float sum = 0;
        for (size_t c = 0; c < 3; ++c) {
          const float s = value(src, n, c, i, plane), g = value(bgr, n, c, i, plane);
          sum += std::fabs(s - g);
          fgr[(n * 3 + c) * plane + i] = s;
        }
        pha[n * plane + i] = std::min(sum / 3.0f, 1.0f);
      }
    }
  }

 private:
  float value(const void* data, int64_t n, size_t c, size_t i, size_t plane) const {
    if (info.ioDtype == "uint8") return static_cast<const uint8_t*>(data)[(n * plane + i) * 3 + c] / 255.0f;
    const size_t at = (n * 3 + c) * plane + i;
    if (info.ioDtype == "float16") return detail::halfToFloat(static_cast<const uint16_t*>(data)[at]);
    return static_cast<const float*>(data)[at];
  }
};

std::unique_ptr<detail::Backend> openFake(const std::string& path, const Options&, const detail::Sidecar*) {
  return std::make_unique<FakeBackend>(path);
}

}  // namespace

void registerFakeBackend() {
  static std::once_flag once;
  std::call_once(once, [] { detail::registerBackend({"fake", {".fake"}, "(tests only)", openFake}); });
}

std::string writeFakeModel(const std::string& path, const std::string& dtype, const std::string& extraProps,
                           const std::string& inputs, bool mattexExport, const std::string& profiles) {
  Json props = Json::object();
  if (mattexExport) {
    const std::string io = dtype == "uint8" ? "uint8" : "float";
    props = {{"mattex_version", "0.1.0"}, {"torch_version", "2.13.0"}, {"backbone", "mobilenetv2"},
             {"backbone_scale", "0.25"}, {"refine_mode", "sampling"}, {"refine_sample_pixels", "1600"},
             {"refine_k", "100"}, {"refine_threshold", "0.1"}, {"refine_kernel_size", "3"},
             {"refine_prevent_oversampling", "true"}, {"weights", "demo 00"}, {"precision", "fp32"},
             {"opset", "17"}, {"target", "onnxruntime"}, {"trace_size", "96x128"},
             {"io_contract", "{\"outputs\": [\"pha\", \"fgr\"], \"height_width_multiple\": 4}"},
             {"export_config", "{\"io\": \"" + io + "\", \"io_dtype\": \"" + (io == "uint8" ? "float32" : dtype) + "\"}"}};
  }
  if (!extraProps.empty()) {
    const Json extra = Json::parse("{" + extraProps + "}");  // kept: items() does not own it
    for (const auto& [key, value] : extra.items()) {
      if (value.is_null()) {
        props.erase(key);
      } else {
        props[key] = value;
      }
    }
  }
  Json model = {{"inputs", Json::parse(inputs)}, {"dtype", dtype}, {"metadata_props", props}};
  if (!profiles.empty()) model["profiles"] = Json::parse(profiles);
  std::ofstream(path) << model.dump();
  return path;
}

}  // namespace mattex::testing

// For the C test (c_api_check.c).
extern "C" void mattex_testing_register_fake_backend(void) { mattex::testing::registerFakeBackend(); }
extern "C" void mattex_testing_write_fake_model(const char* path, const char* dtype) {
  mattex::testing::writeFakeModel(path, dtype);
}
