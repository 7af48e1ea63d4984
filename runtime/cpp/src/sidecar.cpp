// Reading the JSON sidecar mattex writes beside every engine, and hashing the plan.
#include <openssl/evp.h>

#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mattex/matter.hpp"

namespace mattex {

bool Profile::accepts(int64_t batch, int64_t height, int64_t width) const {
  const int64_t value[3] = {batch, height, width};
  for (int i = 0; i < 3; ++i) {
    if (value[i] < min[i] || value[i] > max[i]) return false;
  }
  return true;
}

Sidecar Sidecar::load(const std::string& enginePath) {
  const std::string path = enginePath + ".json";
  std::ifstream file(path);
  if (!file) {
    throw Error("no sidecar " + path + ": mattex engines are built with `mattex build`, which writes it");
  }
  nlohmann::json j;
  try {
    file >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + " is not a readable mattex sidecar: " + e.what());
  }
  if (j.value("format", "") != "mattex-engine-sidecar/1") {
    throw Error(path + " is not a mattex sidecar");
  }
  Sidecar s;
  try {
    s.tensorrtVersion = j.at("tensorrt_version").get<std::string>();
    s.gpuName = j.at("gpu_name").get<std::string>();
    s.computeCapability[0] = j.at("compute_capability").at(0).get<int>();
    s.computeCapability[1] = j.at("compute_capability").at(1).get<int>();
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
    throw Error(path + " is missing a field: " + e.what());
  }
  return s;
}

std::string sha256File(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("cannot read " + path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> block(1 << 20);
  while (file) {
    file.read(block.data(), static_cast<std::streamsize>(block.size()));
    EVP_DigestUpdate(ctx.get(), block.data(), static_cast<size_t>(file.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::ostringstream hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex << std::hex << std::setw(2) << std::setfill('0') << static_cast<int>(digest[i]);
  }
  return hex.str();
}

}  // namespace mattex
