#include "fake_backend.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "../src/backend.hpp"
#include "../src/half.hpp"
#include "../src/metadata.hpp"

namespace mattex::testing {
namespace {

class FakeBackend : public detail::Backend {
 public:
  explicit FakeBackend(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    std::ifstream file(path);
    std::map<std::string, std::string> props;
    std::vector<std::string> inputs;
    std::string dtype, line;
    while (std::getline(file, line)) {
      std::istringstream words(line);
      std::string kind;
      words >> kind;
      if (kind == "dtype") {
        words >> dtype;
      } else if (kind == "inputs") {
        for (std::string input; words >> input;) inputs.push_back(input);
      } else if (kind == "prop") {
        std::string key, value;
        words >> key >> std::ws;
        std::getline(words, value);
        props[key] = value;
      } else if (kind == "profile") {
        Profile profile{};
        for (int64_t* value : {&profile.min[0], &profile.min[1], &profile.min[2], &profile.opt[0], &profile.opt[1],
                               &profile.opt[2], &profile.max[0], &profile.max[1], &profile.max[2]}) {
          words >> *value;
        }
        if (!words) throw ModelFileError(name + " is not a loadable fake model (a profile needs 9 numbers)");
        info.profiles.push_back(profile);
      } else if (!kind.empty()) {
        throw ModelFileError(name + " is not a loadable fake model (unknown line '" + kind + "')");
      }
    }
    if (dtype.empty() || inputs.empty()) {
      throw ModelFileError(name + " is not a loadable fake model (no dtype or inputs line)");
    }
    info.precision = "fp32";
    detail::readMetadata(props, name, info);
    if (info.precision == "int8") throw BackendUnavailableError(name + ": the fake backend refuses int8 files");
    detail::requireInputs(inputs, name);
    detail::settleInputDtype(dtype, name, info);
    info.outputs = {"pha", "fgr"};
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
  std::call_once(once, [] { detail::registerBackend({"fake", {".fake"}, "(tests only)", openFake, 0}); });
}

std::string writeFakeModel(const std::string& path, const std::string& dtype, const Props& props,
                           const std::vector<std::string>& inputs, bool mattexExport,
                           const std::vector<Profile>& profiles) {
  std::map<std::string, std::string> metadata;
  // The export configuration (JSON value text by key): the facts every reader takes from the
  // file. A prop named `config.KEY` changes its entry KEY (kRemove deletes it).
  const std::string io = dtype == "uint8" ? "uint8" : "float";
  std::map<std::string, std::string> config = {
      {"backbone", "\"mobilenetv2\""}, {"backbone_scale", "0.25"}, {"refine_mode", "\"sampling\""},
      {"sample_pixels", "1600"},       {"threshold", "0.1"},       {"kernel_size", "3"},
      {"prevent_oversampling", "true"}, {"height", "96"},           {"width", "128"},
      {"opset", "17"},                 {"target", "\"onnxruntime\""}, {"precision", "\"fp32\""},
      {"io", "\"" + io + "\""},        {"io_dtype", "\"" + (io == "uint8" ? std::string("float32") : dtype) + "\""}};
  for (const auto& [key, value] : props) {
    if (key.rfind("config.", 0) != 0) continue;
    if (value == kRemove) {
      config.erase(key.substr(7));
    } else {
      config[key.substr(7)] = value;
    }
  }
  if (mattexExport) {
    std::string json;
    for (const auto& [key, value] : config) json += (json.empty() ? "{\"" : ", \"") + key + "\": " + value;
    metadata = {{"mattex_version", "0.1.0"}, {"torch_version", "2.13.0"}, {"weights", "demo 00"},
                {"backbone", "mobilenetv2"}, {"precision", "fp32"}, {"trace_size", "96x128"},
                {"io_contract", "{\"outputs\": [\"pha\", \"fgr\"], \"height_width_multiple\": 4}"},
                {"export_config", json + "}"}};
  }
  for (const auto& [key, value] : props) {
    if (key.rfind("config.", 0) == 0) continue;
    if (value == kRemove) {
      metadata.erase(key);
    } else {
      metadata[key] = value;
    }
  }
  std::ofstream file(path);
  file << "dtype " << dtype << "\ninputs";
  for (const auto& input : inputs) file << " " << input;
  file << "\n";
  for (const auto& p : profiles) {
    file << "profile";
    for (const int64_t* values : {p.min, p.opt, p.max}) file << " " << values[0] << " " << values[1] << " " << values[2];
    file << "\n";
  }
  for (const auto& [key, value] : metadata) file << "prop " << key << " " << value << "\n";
  return path;
}

}  // namespace mattex::testing

// For the C test (c_api_check.c).
extern "C" void mattex_testing_register_fake_backend(void) { mattex::testing::registerFakeBackend(); }
extern "C" void mattex_testing_write_fake_model(const char* path, const char* dtype) {
  mattex::testing::writeFakeModel(path, dtype);
}
