// Reading a mattex export's metadata_props with the rules of mattex.metadata (Python).
#include "metadata.hpp"

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace mattex::detail {
namespace {

using Json = nlohmann::json;

// ExportMetadata's fields without a default: a mattex export always writes them.
const char* const kRequired[] = {
    "mattex_version", "torch_version",  "backbone",
    "backbone_scale", "refine_mode",    "refine_sample_pixels",
    "refine_k",       "refine_threshold", "refine_kernel_size",
    "refine_prevent_oversampling", "weights", "precision",
    "opset",          "target",         "trace_size",
    "io_contract",    "export_config",
};
// Values that are JSON; selection and tensorrt_plugins are lists, the others objects.
const char* const kJsonObjects[] = {"io_contract", "export_config", "fp16", "int8_calibration"};
const char* const kJsonLists[] = {"selection", "tensorrt_plugins"};
const char* const kInts[] = {"refine_sample_pixels", "refine_k", "refine_kernel_size", "opset"};
const char* const kFloats[] = {"backbone_scale", "refine_threshold"};

[[noreturn]] void malformed(const std::string& source, const std::string& key, const std::string& why) {
  throw ModelFileError(source + ": its mattex metadata '" + key + "' is malformed (" + why.substr(0, 100) + ")");
}

bool parsesAsInt(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  std::strtoll(text.c_str(), &end, 10);
  while (end && (*end == ' ' || *end == '\n' || *end == '\t')) ++end;
  return !text.empty() && errno == 0 && end && *end == '\0';
}

bool parsesAsFloat(const std::string& text) {
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  while (end && (*end == ' ' || *end == '\n' || *end == '\t')) ++end;
  return !text.empty() && end && *end == '\0';
}

Json parseJson(const std::map<std::string, std::string>& props, const std::string& key, const std::string& source,
               bool list) {
  Json value;
  try {
    value = Json::parse(props.at(key));
  } catch (const Json::exception& e) {
    malformed(source, key, std::string("ValueError: ") + e.what());
  }
  if (list ? !value.is_array() : !value.is_object()) {
    malformed(source, key, list ? "TypeError: expected a JSON list" : "TypeError: expected a JSON dict");
  }
  return value;
}

}  // namespace

bool isUtf8(const std::string& text) {
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const auto first = static_cast<unsigned char>(text[i]);
    const size_t extra = first < 0x80 ? 0 : (first >> 5) == 0x6 ? 1 : (first >> 4) == 0xe ? 2 : (first >> 3) == 0x1e ? 3 : 4;
    if (extra == 4 || n - i <= extra) return false;  // a stray continuation byte, or cut short
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return false;
    }
    const auto second = extra ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (extra == 1 && first < 0xc2) return false;                                        // overlong
    if (extra == 2 && ((first == 0xe0 && second < 0xa0) || (first == 0xed && second >= 0xa0))) return false;
    if (extra == 3 && (first > 0xf4 || (first == 0xf0 && second < 0x90) || (first == 0xf4 && second >= 0x90))) {
      return false;  // overlong, or past U+10FFFF
    }
    i += extra + 1;
  }
  return true;
}

void readMetadata(const std::map<std::string, std::string>& props, const std::string& source, ModelInfo& info) {
  info.mattexExport = props.count("export_config") > 0;
  if (!info.mattexExport) return;  // still runs when its inputs are src and bgr, as in Python
  for (const char* key : kJsonObjects) {
    if (props.count(key)) parseJson(props, key, source, false);
  }
  for (const char* key : kJsonLists) {
    if (props.count(key)) parseJson(props, key, source, true);
  }
  for (const char* key : kInts) {
    if (props.count(key) && !parsesAsInt(props.at(key))) {
      malformed(source, key, "ValueError: invalid literal for int(): '" + props.at(key).substr(0, 20) + "'");
    }
  }
  for (const char* key : kFloats) {
    if (props.count(key) && !parsesAsFloat(props.at(key))) {
      malformed(source, key, "ValueError: could not convert string to float: '" + props.at(key).substr(0, 20) + "'");
    }
  }
  if (props.count("refine_prevent_oversampling")) {
    const std::string& text = props.at("refine_prevent_oversampling");
    if (text != "true" && text != "false") {
      malformed(source, "refine_prevent_oversampling", "ValueError: expected true or false, got '" + text.substr(0, 20) + "'");
    }
  }
  if (props.count("trace_size")) {
    const std::string& text = props.at("trace_size");
    const auto x = text.find_first_of("xX");
    if (x == std::string::npos || !parsesAsInt(text.substr(0, x)) || !parsesAsInt(text.substr(x + 1))) {
      malformed(source, "trace_size", "ValueError: expected HxW, got '" + text.substr(0, 20) + "'");
    }
    info.traceHeight = std::stoll(text.substr(0, x));
    info.traceWidth = std::stoll(text.substr(x + 1));
  }
  std::string missing;
  for (const char* key : kRequired) {
    if (!props.count(key)) missing += (missing.empty() ? "" : ", ") + std::string(key);
  }
  if (!missing.empty()) throw ModelFileError(source + ": its mattex metadata lacks " + missing);

  info.precision = props.at("precision");
  const Json config = Json::parse(props.at("export_config"));
  const Json contract = Json::parse(props.at("io_contract"));
  try {
    info.io = config.value("io", std::string("float"));
    info.ioDtype = info.io == "uint8" ? "uint8" : config.value("io_dtype", std::string("float32"));
    info.sizeMultiple = contract.value("height_width_multiple", int64_t{4});
  } catch (const Json::exception& e) {
    malformed(source, "export_config", std::string("TypeError: ") + e.what());
  }
  if (info.io != "float" && info.io != "uint8") malformed(source, "export_config", "io must be float or uint8");
  if (info.sizeMultiple < 1) malformed(source, "io_contract", "height_width_multiple must be 1 or more");
}

void requireInputs(const std::vector<std::string>& names, const std::string& source) {
  if (names == std::vector<std::string>{"src", "bgr"}) return;
  std::string listed;
  for (const auto& name : names) listed += (listed.empty() ? "'" : ", '") + name + "'";
  throw ModelFileError(source + " has inputs [" + listed + "], not a mattex model ['src', 'bgr']");
}

void settleInputDtype(const std::string& graphDtype, const std::string& source, ModelInfo& info) {
  if (info.mattexExport && graphDtype != info.ioDtype) {
    throw ModelFileError(source + ": its inputs are " + graphDtype + " but its mattex metadata says " + info.ioDtype +
                         " (a hand-edited file?)");
  }
  info.ioDtype = graphDtype;
  info.io = graphDtype == "uint8" ? "uint8" : "float";
}

}  // namespace mattex::detail
