// Reading the JSON sidecar mattex writes beside every engine, and hashing the plan.
#include <openssl/evp.h>

#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sidecar.hpp"

namespace mattex::detail {
namespace {
std::string baseName(const std::string& path);
}  // namespace

Sidecar Sidecar::load(const std::string& enginePath) {
  const std::string path = enginePath + ".json";
  std::ifstream file(path);
  if (!file) {
    throw CorruptEngineError("no sidecar " + baseName(path) + " beside " + baseName(enginePath) +
                             ": mattex engines are built with `mattex build`, which writes it (the plan alone "
                             "does not say what it was built for)");
  }
  nlohmann::json j;
  try {
    file >> j;
  } catch (const nlohmann::json::exception& e) {
    throw CorruptEngineError(path + " is not a readable mattex sidecar: " + e.what());
  }
  const std::string format = j.is_object() ? j.value("format", "") : "";
  if (format != "mattex-engine-sidecar/1" && format != "mattex-engine-sidecar/2") {
    throw CorruptEngineError(path + " is not a mattex sidecar (format '" + format + "')");
  }
  Sidecar s;
  try {
    s.backend = j.value("backend", std::string("tensorrt"));
    if (s.backend != "tensorrt" && s.backend != "tensorrt-rtx") {
      throw CorruptEngineError(path + " is not a readable mattex sidecar: field 'backend' must be tensorrt or tensorrt-rtx, got " + s.backend);
    }
    s.tensorrtVersion = j.at("tensorrt_version").get<std::string>();
    if (!j.at("gpu_name").is_null()) s.gpuName = j.at("gpu_name").get<std::string>();
    if (!j.at("compute_capability").is_null()) {
      s.computeCapability[0] = j.at("compute_capability").at(0).get<int>();
      s.computeCapability[1] = j.at("compute_capability").at(1).get<int>();
    }
    const auto targets = j.value("target_compute_capabilities", nlohmann::json());
    s.defaultTargets = targets.is_null();
    for (const auto& cc : targets) s.targetComputeCapabilities.push_back({cc.at(0).get<int>(), cc.at(1).get<int>()});
    s.versionCompatible = j.value("version_compatible", false);
    s.hardwareCompatibility = j.value("hardware_compatibility", std::string("none"));
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
  } catch (const nlohmann::json::exception& e) {
    throw CorruptEngineError(path + " is not a readable mattex sidecar: " + e.what());
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

// TensorRT for RTX's default targets: compute capability 8.0, 8.6, 8.9, 12.0 and later.
bool rtxRunsOn(const Sidecar& s, int major, int minor) {
  if (s.defaultTargets) {
    return (major == 8 && (minor == 0 || minor == 6 || minor == 9)) || major >= 12;
  }
  for (const auto& cc : s.targetComputeCapabilities) {
    if (cc[0] == major && cc[1] == minor) return true;
  }
  return false;
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
  if (s.backend == "tensorrt-rtx") {
    if (built != running) {
      throw EngineMismatchError("engine built with TensorRT for RTX " + s.tensorrtVersion + ", running " + version +
                  ": its engines run only on the release that built them; rebuild it with this one");
    }
    if (!rtxRunsOn(s, ccMajor, ccMinor)) {
      throw EngineMismatchError(gpuName + " has compute capability " + ccText(ccMajor, ccMinor) +
                  ", which the engine does not target: rebuild it with `mattex build --backend "
                  "tensorrt-rtx --compute-capability " + ccText(ccMajor, ccMinor) + "`");
    }
    return;
  }
  const auto major = [](const std::vector<long>& v) { return std::vector<long>(v.begin(), v.begin() + (v.empty() ? 0 : 1)); };
  const bool versionOk = s.versionCompatible ? (major(running) == major(built) && running >= built) : (running == built);
  if (!versionOk) {
    throw EngineMismatchError("engine built with TensorRT " + s.tensorrtVersion + ", running TensorRT " + version +
                (s.versionCompatible ? ": needs the same major version, same or newer"
                                     : ": rebuild it here, or build with --version-compatible"));
  }
  const bool sameCc = ccMajor == s.computeCapability[0] && ccMinor == s.computeCapability[1];
  const std::string where = "engine built for " + s.gpuName + " (compute capability " +
                            ccText(s.computeCapability[0], s.computeCapability[1]) + "), running on " + gpuName;
  if (s.hardwareCompatibility == "ampere+") {
    if (ccMajor < 8) throw EngineMismatchError(where + ": an ampere+ engine needs compute capability 8.0 or newer");
  } else if (!sameCc) {
    throw EngineMismatchError(where + ": rebuild it on this GPU, or build with --hardware-compat ampere+");
  } else if (s.hardwareCompatibility == "none" && s.gpuName != gpuName) {
    throw EngineMismatchError(where + ": TensorRT plans are tuned to the GPU model; rebuild here");
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
    throw CorruptEngineError(baseName(enginePath) + " changed since it was built (sha256 " + digest.substr(0, 12) +
                             "... but the sidecar recorded " + sidecar.planSha256.substr(0, 12) +
                             "...): rebuild it with `mattex build`");
  }
}

}  // namespace mattex::detail
