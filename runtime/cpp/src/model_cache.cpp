#include "model_cache.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "mattex/matter.hpp"
#include "sidecar.hpp"

namespace mattex::detail {
namespace fs = std::filesystem;

namespace {
// A cache that cannot be used (read-only, a file, under a file, a full disk) costs compile time
// only: the model runs without it, said once per process on stderr in the Python runtime's words
// (mattex.runtime.model_cache), never an error that stops every OpenVINO open.
void warnUnusable(const std::string& cacheDir, const std::string& reason) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::fprintf(stderr,
                 "mattex: warning: the model cache %s cannot be used (%s): the model runs without it and is "
                 "compiled again at each launch; point $MATTEX_CACHE at a writable folder to keep compiled models\n",
                 cacheDir.c_str(), reason.c_str());
  });
}
}  // namespace

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
  std::string unusable;  // why the cache cannot be used, if it cannot
  for (int attempt = 0; attempt < 3 && lock_ < 0 && unusable.empty(); ++attempt) {  // a pruner may rename it away
    std::error_code error;
    fs::create_directories(folder_, error);
    if (error) {
      unusable = error.message();
      break;
    }
    const int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (errno != ENOENT) unusable = std::strerror(errno);
      continue;
    }
    struct stat held {}, named {};
    if (::flock(fd, LOCK_SH) == 0 && ::fstat(fd, &held) == 0 && ::stat(lockPath.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      lock_ = fd;
    } else {
      ::close(fd);
    }
  }
  if (!unusable.empty()) {  // an empty folder() turns OpenVINO's cache off
    warnUnusable(cacheDir, unusable);
    folder_.clear();
    return;
  }
  if (lock_ < 0) throw ConfigError("the model cache keeps losing the entry " + folder_ + ": is it shared oddly?");
  // The marker (what the entry holds; its mtime: the last use), written then renamed.
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string partial = folder_ + "/.mattex-entry." + std::to_string(::getpid()) + ".cpp";
  std::ofstream marker(partial);
  marker << nlohmann::json{{"model", fs::canonical(modelPath).string()}, {"used", now}}.dump();
  marker.close();
  std::error_code error;
  if (marker.fail()) {  // a full disk: no half-written marker stays, and the model runs without the cache
    fs::remove(partial, error);
    // Nor an empty entry, where no other process holds it (a waiting one sees its lock file gone and retries).
    if (::flock(lock_, LOCK_EX | LOCK_NB) == 0 && !fs::exists(folder_ + "/.mattex-entry", error)) {
      fs::remove(lockPath, error);
      fs::remove(folder_, error);  // only if empty
    }
    ::close(lock_);
    lock_ = -1;
    warnUnusable(cacheDir, "its entry's marker could not be written: a full disk?");
    folder_.clear();
    return;
  }
  fs::rename(partial, folder_ + "/.mattex-entry", error);
  if (error) fs::remove(partial, error);
}

CacheEntry::~CacheEntry() {
  if (lock_ >= 0) ::close(lock_);  // closing the descriptor releases the flock
}

}  // namespace mattex::detail
