#include "model_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mattex/matter.hpp"
#include "sidecar.hpp"

namespace mattex::detail {
namespace fs = std::filesystem;

std::string cacheEntryName(const std::string& modelPath) {
  struct stat st {};
  if (::stat(modelPath.c_str(), &st) != 0) throw ModelFileError("no such model file: " + modelPath);
  const long long mtimeNs = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  const std::string identity = fs::canonical(modelPath).string() + '\0' + std::to_string(st.st_size) + '\0' +
                               std::to_string(mtimeNs);
  return fs::path(modelPath).stem().string() + "-" + sha256Text(identity).substr(0, 16);
}

CacheEntry::CacheEntry(const std::string& cacheDir, const std::string& modelPath)
    : folder_((fs::path(cacheDir) / cacheEntryName(modelPath)).string()) {
  const std::string lockPath = folder_ + "/.lock";
  for (int attempt = 0; attempt < 3 && lock_ < 0; ++attempt) {  // a pruner may rename it away meanwhile
    std::error_code error;
    fs::create_directories(folder_, error);
    if (error) throw ConfigError("cannot create the model cache entry " + folder_ + ": " + error.message());
    const int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) continue;
    struct stat held {}, named {};
    if (::flock(fd, LOCK_SH) == 0 && ::fstat(fd, &held) == 0 && ::stat(lockPath.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      lock_ = fd;
    } else {
      ::close(fd);
    }
  }
  if (lock_ < 0) throw ConfigError("the model cache keeps losing the entry " + folder_ + ": is it shared oddly?");
  // The marker (what the entry holds; its mtime: the last use), written then renamed.
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string partial = folder_ + "/.mattex-entry." + std::to_string(::getpid()) + ".cpp";
  std::ofstream(partial) << nlohmann::json{{"model", fs::canonical(modelPath).string()}, {"used", now}}.dump();
  std::error_code error;
  fs::rename(partial, folder_ + "/.mattex-entry", error);
  if (error) fs::remove(partial, error);
}

CacheEntry::~CacheEntry() {
  if (lock_ >= 0) ::close(lock_);  // closing the descriptor releases the flock
}

}  // namespace mattex::detail
