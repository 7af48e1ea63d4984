#include "environment.hpp"

#include <cctype>
#include <cstdlib>

#include "mattex/matter.hpp"

namespace mattex::detail {

int defaultThreads() {
  const char* raw = std::getenv("MATTEX_THREADS");
  std::string value = raw ? raw : "";
  const auto first = value.find_first_not_of(" \t\n\r");
  value = first == std::string::npos ? "" : value.substr(first, value.find_last_not_of(" \t\n\r") - first + 1);
  if (value.empty()) return 0;
  bool digits = value.size() <= 6;
  for (char c : value) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (!digits || std::atoi(value.c_str()) < 1) {
    throw ConfigError("MATTEX_THREADS='" + value + "': give a whole number of threads, 1 or more");
  }
  return std::atoi(value.c_str());
}

std::string defaultCacheDir() {
  const char* mattex = std::getenv("MATTEX_CACHE");
  if (mattex && *mattex) return std::string(mattex) + "/openvino";
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/mattex/openvino";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/mattex/openvino";
}

}  // namespace mattex::detail
