#include "environment.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "mattex/matter.hpp"

namespace mattex {

int maxThreads() noexcept {
  // sysconf's online processors: what os.cpu_count() counts on Linux, so both runtimes agree.
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  return kThreadsPerCore * static_cast<int>(cores > 0 ? std::min(cores, 1L << 20) : 1);
}

}  // namespace mattex

namespace mattex::detail {

std::string threadsRule() {
  const int most = maxThreads();
  return "give a whole number of threads from 1 to " + std::to_string(most) + " (" + std::to_string(kThreadsPerCore) +
         " per core, " + std::to_string(most / kThreadsPerCore) + " cores here)";
}

int checkedThreads(int threads) {
  if (threads < 0 || threads > maxThreads()) {
    throw ConfigError("threads=" + std::to_string(threads) + ": " + threadsRule());
  }
  return threads;
}

int defaultThreads() {
  const char* raw = std::getenv("MATTEX_THREADS");
  std::string value = raw ? raw : "";
  const auto first = value.find_first_not_of(" \t\n\r");
  value = first == std::string::npos ? "" : value.substr(first, value.find_last_not_of(" \t\n\r") - first + 1);
  if (value.empty()) return 0;
  // ASCII digits only (std::isdigit would follow the locale); leading zeros dropped so that the
  // length bounds the number before it is converted.
  bool digits = true;
  for (char c : value) digits = digits && c >= '0' && c <= '9';
  const auto significant = value.find_first_not_of('0');
  const std::string number = significant == std::string::npos ? "0" : value.substr(significant);
  const int threads = digits && number.size() <= 9 ? std::atoi(number.c_str()) : -1;
  if (threads < 1 || threads > maxThreads()) throw ConfigError("MATTEX_THREADS='" + value + "': " + threadsRule());
  return threads;
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
