// Reading the JSON sidecar mattex writes beside every engine, and hashing the plan.
#include <openssl/evp.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend.hpp"
#include "mattex_facts.hpp"  // generated from mattex/shared_facts.json: the rules' values and messages
#include "message.hpp"
#include "sidecar.hpp"

namespace mattex::detail {
namespace {

std::string baseName(const std::string& path);

// Python's repr of what a sidecar's "format" holds, as its message quotes it.
std::string describeFormat(const nlohmann::json& j) {
  if (!j.is_object()) {  // Python names the type: repr(type(data).__name__)
    return j.is_array() ? "'list'" : j.is_string() ? "'str'" : j.is_boolean() ? "'bool'" : j.is_number_integer() ? "'int'"
           : j.is_number() ? "'float'" : "'NoneType'";
  }
  const auto found = j.find("format");
  if (found == j.end() || found->is_null()) return "None";
  return found->is_string() ? "'" + found->get<std::string>() + "'" : found->dump();
}

bool readableFormat(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("format") || !j.at("format").is_string()) return false;
  for (const char* format : facts::kSidecarFormats) {
    if (j.at("format").get<std::string>() == format) return true;
  }
  return false;
}

// The engine backends (those opening .engine files), as Python's BACKENDS.engine_backends() names them.
std::string engineBackends() {
  std::string names;
  for (const auto& entry : backends()) {
    if (std::count(entry.suffixes.begin(), entry.suffixes.end(), ".engine")) names += (names.empty() ? "" : " or ") + entry.name;
  }
  return names;
}

// What makes a profile impossible, in mattex.runtime.sidecar._profile_problem's words; "" for a sensible one.
std::string profileProblem(const Profile& p) {
  for (const int64_t* values : {p.min, p.opt, p.max}) {
    for (int axis = 0; axis < 3; ++axis) {
      if (values[axis] < 1 || values[axis] > facts::kMaxProfileValue) {
        return fillMessage(facts::kSidecarMessage_profile_out_of_range, {{"max", std::to_string(facts::kMaxProfileValue)}});
      }
    }
  }
  const char* const axes[] = {"batch", "height", "width"};
  for (int axis = 0; axis < 3; ++axis) {
    if (!(p.min[axis] <= p.opt[axis] && p.opt[axis] <= p.max[axis])) {
      return fillMessage(facts::kSidecarMessage_profile_order,
                         {{"axis", axes[axis]}, {"low", std::to_string(p.min[axis])}, {"opt", std::to_string(p.opt[axis])},
                          {"high", std::to_string(p.max[axis])}});
    }
  }
  return "";
}

// Python's repr of the profiles as mattex build writes them ([{'min': [..], 'opt': [..], 'max': [..]}]).
std::string profilesRepr(const std::vector<Profile>& profiles) {
  const auto list = [](const int64_t* v) {
    return "[" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ", " + std::to_string(v[2]) + "]";
  };
  std::string text;
  for (const auto& p : profiles) {
    text += (text.empty() ? "" : ", ") + std::string("{'min': ") + list(p.min) + ", 'opt': " + list(p.opt) +
            ", 'max': " + list(p.max) + "}";
  }
  return "[" + text + "]";
}

// Python's repr of a JSON value as json.loads gives it (None, True, 'text', [1, 2], {'k': v}), as the
// field message quotes it. Objects list their keys sorted (nlohmann keeps no order), Python in file order.
std::string pyRepr(const nlohmann::json& value) {
  using Type = nlohmann::json::value_t;
  switch (value.type()) {
    case Type::null: return "None";
    case Type::boolean: return value.get<bool>() ? "True" : "False";
    case Type::string: {
      const std::string text = value.get<std::string>();
      const char quote = text.find('\'') != std::string::npos && text.find('"') == std::string::npos ? '"' : '\'';
      std::string out(1, quote);
      for (const unsigned char c : text) {
        if (c == '\\' || c == static_cast<unsigned char>(quote)) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c == '\n') {
          out += "\\n";
        } else if (c == '\r') {
          out += "\\r";
        } else if (c == '\t') {
          out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
          const char* hex = "0123456789abcdef";
          out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
      }
      return out + quote;
    }
    case Type::array: {
      std::string out;
      for (const auto& item : value) out += (out.empty() ? "" : ", ") + pyRepr(item);
      return "[" + out + "]";
    }
    case Type::object: {
      std::string out;
      for (const auto& [key, item] : value.items()) {
        out += (out.empty() ? "" : ", ") + pyRepr(nlohmann::json(key)) + ": " + pyRepr(item);
      }
      return "{" + out + "}";
    }
    default: return value.dump();  // numbers: JSON's shortest form, as Python's repr
  }
}

bool isIntList(const nlohmann::json& value, size_t length) {
  if (!value.is_array() || value.size() != length) return false;
  for (const auto& item : value) {
    if (!item.is_number_integer()) return false;
  }
  return true;
}

// CorruptEngineError unless `ok`: field `key` must be `want`, quoting what it holds as Python does.
void requireField(bool ok, const nlohmann::json& j, const char* key, const char* want, const std::string& path) {
  if (ok) return;
  const std::string got = pyRepr(j.contains(key) ? j.at(key) : nlohmann::json()).substr(0, 60);
  const std::string why = fillMessage(facts::kSidecarMessage_field, {{"key", key}, {"want", want}, {"got", got}});
  throw CorruptEngineError(fillMessage(facts::kSidecarMessage_unreadable, {{"path", path}, {"why", why}}));
}

// The rules of mattex.runtime.sidecar._check_fields (and the TensorRT backend's own), in order and in
// their words: CorruptEngineError naming the first field that is not what `mattex build` writes.
void checkFields(const nlohmann::json& j, const std::string& backend, const std::string& path) {
  const auto need = [&](bool ok, const char* key, const char* want) { requireField(ok, j, key, want, path); };
  const auto nullOr = [&](const char* key, bool (*ok)(const nlohmann::json&)) {
    return !j.contains(key) || j.at(key).is_null() || ok(j.at(key));
  };
  const auto isString = [](const nlohmann::json& v) { return v.is_string(); };
  for (const char* key : facts::kSidecarStringFields) need(j.contains(key) && j.at(key).is_string(), key, facts::kSidecarWant_string);
  need(nullOr("gpu_name", isString), "gpu_name", facts::kSidecarWant_string_or_null);
  const auto cc = j.value("compute_capability", nlohmann::json());
  if (backend == "tensorrt") need(isIntList(cc, 2), "compute_capability", facts::kSidecarWant_cc);
  need(cc.is_null() || isIntList(cc, 2), "compute_capability", facts::kSidecarWant_cc_or_null);
  const auto profiles = j.value("profiles", nlohmann::json());
  bool typed = profiles.is_array() && !profiles.empty();
  for (const auto& p : typed ? profiles : nlohmann::json::array()) {
    typed = typed && p.is_object();
    for (const char* key : {"min", "opt", "max"}) typed = typed && p.contains(key) && isIntList(p.at(key), 3);
  }
  need(typed, "profiles", facts::kSidecarWant_profiles);
  need(j.contains("io") && j.at("io").is_array(), "io", facts::kSidecarWant_list);
  need(!j.contains("version_compatible") || j.at("version_compatible").is_boolean(), "version_compatible",
       facts::kSidecarWant_bool);
}

// The fields _check_fields checks after hardware_compatibility.
void checkLaterFields(const nlohmann::json& j, const std::string& path) {
  const auto need = [&](bool ok, const char* key, const char* want) { requireField(ok, j, key, want, path); };
  const auto absentOrNull = [&](const char* key) { return !j.contains(key) || j.at(key).is_null(); };
  need(!j.contains("export_metadata") || j.at("export_metadata").is_object(), "export_metadata", facts::kSidecarWant_object);
  need(absentOrNull("onnx_file") || j.at("onnx_file").is_string(), "onnx_file", facts::kSidecarWant_string_or_null);
  bool targets = absentOrNull("target_compute_capabilities");
  if (!targets && j.at("target_compute_capabilities").is_array()) {
    targets = true;
    for (const auto& cc : j.at("target_compute_capabilities")) targets = targets && isIntList(cc, 2);
  }
  need(targets, "target_compute_capabilities", facts::kSidecarWant_targets);
}

// A string field that must be one of `allowed` ("a or b or c"); CorruptEngineError in Python's words.
std::string oneOf(const nlohmann::json& j, const char* key, const char* fallback, const std::string& allowed,
                  const std::string& path) {
  const auto value = j.value(key, nlohmann::json(fallback));
  if (value.is_string() && (" or " + allowed + " or ").find(" or " + value.get<std::string>() + " or ") != std::string::npos) {
    return value.get<std::string>();
  }
  const std::string got = value.is_string() ? "'" + value.get<std::string>() + "'" : value.dump();
  const std::string why = fillMessage(facts::kSidecarMessage_field, {{"key", key}, {"want", allowed}, {"got", got.substr(0, 60)}});
  throw CorruptEngineError(fillMessage(facts::kSidecarMessage_unreadable, {{"path", path}, {"why", why}}));
}

}  // namespace

Sidecar Sidecar::load(const std::string& enginePath) {
  const std::string path = enginePath + ".json";
  std::ifstream file(path);
  if (!file) {
    throw CorruptEngineError(
        fillMessage(facts::kSidecarMessage_missing, {{"sidecar", baseName(path)}, {"engine", baseName(enginePath)}}));
  }
  nlohmann::json j;
  try {
    file >> j;
  } catch (const nlohmann::json::exception& e) {
    throw CorruptEngineError(fillMessage(facts::kSidecarMessage_unreadable, {{"path", path}, {"why", e.what()}}));
  }
  if (!readableFormat(j)) {
    throw CorruptEngineError(fillMessage(facts::kSidecarMessage_foreign, {{"path", path}, {"found", describeFormat(j)}}));
  }
  Sidecar s;
  try {
    s.backend = oneOf(j, "backend", facts::kSidecarDefaultBackend, engineBackends(), path);
    checkFields(j, s.backend, path);
    std::string hardware;
    for (const char* value : facts::kHardwareCompatibility) hardware += (hardware.empty() ? "" : " or ") + std::string(value);
    s.hardwareCompatibility = oneOf(j, "hardware_compatibility", facts::kHardwareCompatibility[0], hardware, path);
    checkLaterFields(j, path);
    s.tensorrtVersion = j.at("tensorrt_version").get<std::string>();
    const auto gpuName = j.value("gpu_name", nlohmann::json()), cc = j.value("compute_capability", nlohmann::json());
    if (!gpuName.is_null()) s.gpuName = gpuName.get<std::string>();  // both may be absent, as in Python
    if (!cc.is_null()) {
      s.computeCapability[0] = cc.at(0).get<int>();
      s.computeCapability[1] = cc.at(1).get<int>();
    }
    const auto targets = j.value("target_compute_capabilities", nlohmann::json());
    s.defaultTargets = targets.is_null();
    for (const auto& cc : targets) s.targetComputeCapabilities.push_back({cc.at(0).get<int>(), cc.at(1).get<int>()});
    s.versionCompatible = j.value("version_compatible", false);
    s.planSha256 = j.at("plan_sha256").get<std::string>();
    s.precision = j.value("precision", std::string("fp32"));
    for (const auto& p : j.at("profiles")) {
      Profile profile{};
      for (int i = 0; i < 3; ++i) {
        profile.min[i] = p.at("min").at(i).get<int64_t>();
        profile.opt[i] = p.at("opt").at(i).get<int64_t>();
        profile.max[i] = p.at("max").at(i).get<int64_t>();
      }
      s.profiles.push_back(profile);
    }
    for (size_t i = 0; i < s.profiles.size(); ++i) {
      const std::string problem = profileProblem(s.profiles[i]);
      if (problem.empty()) continue;
      const std::string want = fillMessage(facts::kSidecarMessage_profile_sensible, {{"problem", problem}, {"index", std::to_string(i)}});
      const std::string why = fillMessage(facts::kSidecarMessage_field,
                                          {{"key", "profiles"}, {"want", want}, {"got", profilesRepr(s.profiles).substr(0, 60)}});
      throw CorruptEngineError(fillMessage(facts::kSidecarMessage_unreadable, {{"path", path}, {"why", why}}));
    }
  } catch (const nlohmann::json::exception& e) {
    throw CorruptEngineError(fillMessage(facts::kSidecarMessage_unreadable, {{"path", path}, {"why", e.what()}}));
  }
  return s;
}

namespace {

// As Python's _version_tuple: the first three dot-separated parts, those that are all digits.
std::vector<long> versionParts(const std::string& version) {
  std::vector<long> parts;
  std::istringstream in(version);
  std::string token;
  for (int i = 0; i < 3 && std::getline(in, token, '.'); ++i) {
    const bool digits = !token.empty() && token.size() < 10 &&
                        token.find_first_not_of("0123456789") == std::string::npos;
    if (digits) parts.push_back(std::stol(token));
  }
  return parts;
}

std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string ccText(int major, int minor) { return std::to_string(major) + "." + std::to_string(minor); }

// TensorRT for RTX's default targets (mattex.contract.RTX_DEFAULT_TARGETS and RTX_ANY_FROM_MAJOR).
bool inRtxDefaults(int major, int minor) {
  for (const auto& cc : facts::kRtxDefaultTargets) {
    if (cc[0] == major && cc[1] == minor) return true;
  }
  return major >= facts::kRtxAnyFromMajor;
}

bool rtxRunsOn(const Sidecar& s, int major, int minor) {
  if (s.defaultTargets) return inRtxDefaults(major, minor);
  for (const auto& cc : s.targetComputeCapabilities) {
    if (cc[0] == major && cc[1] == minor) return true;
  }
  return false;
}

// What the plan targets, as mattex.runtime.sidecar.describe_targets says it.
std::string describeTargets(const Sidecar& s) {
  if (s.defaultTargets) return fillMessage(facts::kSidecarMessage_rtx_default_targets, {{"targets", facts::kRtxDefaultTargetsText}});
  std::string text;
  for (const auto& cc : s.targetComputeCapabilities) text += (text.empty() ? "" : ", ") + ccText(cc[0], cc[1]);
  return text;
}

// The rules of mattex.runtime.sidecar._check_rtx_environment, in its words.
void checkRtxEnvironment(const Sidecar& s, const std::vector<long>& built, const std::vector<long>& running,
                         const std::string& version, int ccMajor, int ccMinor, const std::string& gpuName) {
  if (built != running) {
    throw EngineMismatchError(
        fillMessage(facts::kSidecarMessage_rtx_version, {{"built", s.tensorrtVersion}, {"running", version}}));
  }
  if (!rtxRunsOn(s, ccMajor, ccMinor)) {
    const bool documented = inRtxDefaults(ccMajor, ccMinor) || (ccMajor == 7 && ccMinor == 5);
    throw EngineMismatchError(fillMessage(facts::kSidecarMessage_rtx_target, {{"gpu", gpuName},
                                                                               {"cc", ccText(ccMajor, ccMinor)},
                                                                               {"targets", describeTargets(s)}}) +
                              (documented ? "" : facts::kSidecarMessage_rtx_undocumented));
  }
}

}  // namespace

void checkEnvironment(const Sidecar& s, const std::string& backend, const std::string& version,
                      int ccMajor, int ccMinor, const std::string& gpuName) {
  if (s.backend != backend) {
    throw BackendUnavailableError("engine built with " + s.backend + ", but this mattex runtime runs " + backend +
                (s.backend == "tensorrt-rtx" ? ": build the C++ runtime with -DMATTEX_WITH_TENSORRT=ON -DMATTEX_TENSORRT_RTX=ON"
                                             : ": build the C++ runtime against TensorRT"));
  }
  const auto built = versionParts(s.tensorrtVersion), running = versionParts(version);
  if (s.backend == "tensorrt-rtx") return checkRtxEnvironment(s, built, running, version, ccMajor, ccMinor, gpuName);
  // The rules of mattex.runtime.sidecar.check_environment, in its words.
  const auto major = [](const std::vector<long>& v) { return std::vector<long>(v.begin(), v.begin() + (v.empty() ? 0 : 1)); };
  const bool versionOk = s.versionCompatible ? (major(running) == major(built) && running >= built) : (running == built);
  if (!versionOk) {
    const char* rule = s.versionCompatible ? facts::kSidecarMessage_version_rule_compatible
                                           : facts::kSidecarMessage_version_rule_exact;
    throw EngineMismatchError(fillMessage(facts::kSidecarMessage_version,
                                          {{"built", s.tensorrtVersion}, {"running", version}, {"rule", rule}}));
  }
  const bool ampere = s.hardwareCompatibility == "ampere+";
  const bool ccOk = ampere ? ccMajor >= 8 : (ccMajor == s.computeCapability[0] && ccMinor == s.computeCapability[1]);
  if (!ccOk) {
    const char* rule = ampere ? facts::kSidecarMessage_gpu_rule_ampere : facts::kSidecarMessage_gpu_rule_same_cc;
    throw EngineMismatchError(fillMessage(facts::kSidecarMessage_gpu,
                                          {{"built_gpu", s.gpuName},
                                           {"built_cc", ccText(s.computeCapability[0], s.computeCapability[1])},
                                           {"gpu", gpuName},
                                           {"cc", ccText(ccMajor, ccMinor)},
                                           {"rule", rule}}));
  }
  if (s.hardwareCompatibility == "none" && s.gpuName != gpuName) {
    // Same architecture, other model: TensorRT's tactics were timed on the other GPU.
    throw EngineMismatchError(fillMessage(facts::kSidecarMessage_gpu_model, {{"built_gpu", s.gpuName}, {"gpu", gpuName}}));
  }
}

namespace {

using DigestContext = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestContext sha256Context() {
  DigestContext ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  return ctx;
}

std::string hexDigest(EVP_MD_CTX* ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx, digest, &length);
  std::ostringstream hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex << std::hex << std::setw(2) << std::setfill('0') << static_cast<int>(digest[i]);
  }
  return hex.str();
}

}  // namespace

std::string sha256File(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw CorruptEngineError("cannot read " + path);
  const DigestContext ctx = sha256Context();
  std::vector<char> block(1 << 20);
  while (file) {
    file.read(block.data(), static_cast<std::streamsize>(block.size()));
    EVP_DigestUpdate(ctx.get(), block.data(), static_cast<size_t>(file.gcount()));
  }
  return hexDigest(ctx.get());
}

std::string sha256Text(const std::string& text) {
  const DigestContext ctx = sha256Context();
  EVP_DigestUpdate(ctx.get(), text.data(), text.size());
  return hexDigest(ctx.get());
}

void checkPlan(const std::string& enginePath, const Sidecar& sidecar) {
  const std::string digest = sha256File(enginePath);
  if (digest != sidecar.planSha256) {
    throw CorruptEngineError(fillMessage(facts::kSidecarMessage_plan_changed, {{"engine", baseName(enginePath)},
                                                                                {"digest", digest.substr(0, 12)},
                                                                                {"recorded", sidecar.planSha256.substr(0, 12)}}));
  }
}

}  // namespace mattex::detail
