// Reading a mattex export's metadata_props with the rules of mattex.metadata (Python).
#include "metadata.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "mattex_facts.hpp"  // generated from mattex/shared_facts.json: the configuration's fields, the messages
#include "message.hpp"

namespace mattex::detail {
namespace {

using Json = nlohmann::json;

// ExportMetadata's fields without a default (a mattex export always writes them) and the values that
// are JSON objects or lists: facts::kRequiredProps, kJsonObjects and kJsonLists.
// The export configuration's entries every reader may rely on are facts::kConfigFields (mattex.metadata's
// CONFIG_TYPES, from the same source). The flat keys beside export_config are derived from it and never read.
using facts::Kind;

[[noreturn]] void malformed(const std::string& source, const std::string& key, const std::string& why) {
  throw ModelFileError(source + ": its mattex metadata '" + key + "' is malformed (" + why.substr(0, 100) + ")");
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

void checkConfig(const Json& config, const std::string& source) {
  std::string missing;
  for (const auto& field : facts::kConfigFields) {
    if (!config.contains(field.key)) missing += (missing.empty() ? "" : ", ") + std::string(field.key);
  }
  if (!missing.empty()) {
    throw ModelFileError(fillMessage(facts::kConfigMessage_lacks, {{"source", source}, {"missing", missing}}));
  }
  for (const auto& field : facts::kConfigFields) {
    const Json& value = config.at(field.key);
    const bool typed = field.kind == Kind::String  ? value.is_string()
                       : field.kind == Kind::Float ? value.is_number()
                       : field.kind == Kind::Int   ? value.is_number_integer()
                                                   : value.is_boolean();
    if (!typed) {
      throw ModelFileError(fillMessage(facts::kConfigMessage_type, {{"source", source},
                                                                    {"key", field.key},
                                                                    {"kind", field.kindName},
                                                                    {"got", value.dump().substr(0, 20)}}));
    }
  }
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
  for (const char* key : facts::kJsonObjects) {
    if (props.count(key)) parseJson(props, key, source, false);
  }
  for (const char* key : facts::kJsonLists) {
    if (props.count(key)) parseJson(props, key, source, true);
  }
  std::string missing;
  for (const char* key : facts::kRequiredProps) {
    if (!props.count(key)) missing += (missing.empty() ? "" : ", ") + std::string(key);
  }
  if (!missing.empty()) throw ModelFileError(source + ": its mattex metadata lacks " + missing);

  const Json config = Json::parse(props.at("export_config"));
  const Json contract = Json::parse(props.at("io_contract"));
  checkConfig(config, source);
  info.precision = config.at("precision").get<std::string>();
  info.traceHeight = config.at("height").get<int64_t>();
  info.traceWidth = config.at("width").get<int64_t>();
  try {
    info.io = config.value("io", std::string("float"));
    info.ioDtype = info.io == "uint8" ? "uint8" : config.value("io_dtype", std::string("float32"));
    info.sizeMultiple = contract.value("height_width_multiple", facts::kSizeMultiple);
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
