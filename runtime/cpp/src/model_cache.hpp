// mattex's compiled-model cache, as mattex.runtime.model_cache lays it out (private): one entry
// folder per model file, named by the same key, a shared lock held while OpenVINO compiles or
// reads it, and a marker whose mtime is the entry's last use. Eviction (the size cap) is the
// Python runtime's and `mattex cache prune`'s; an entry this runtime holds is never evicted.
#pragma once

#include <string>

namespace mattex::detail {

class CacheEntry {
 public:
  // Creates (or reuses) the entry for `modelPath` under `cacheDir`, holds it and marks it used.
  // Where the cache cannot be used (read-only, a file, a full disk), folder() is empty, which turns
  // OpenVINO's cache off, and stderr says so once per process.
  CacheEntry(const std::string& cacheDir, const std::string& modelPath);
  ~CacheEntry();  // releases the hold
  CacheEntry(const CacheEntry&) = delete;
  CacheEntry& operator=(const CacheEntry&) = delete;

  const std::string& folder() const { return folder_; }

 private:
  std::string folder_;
  int lock_ = -1;
};

// "<stem>-<first 16 hex of sha256(resolved path \0 size \0 mtime in ns)>" (model_cache.entry_key).
std::string cacheEntryName(const std::string& modelPath);

}  // namespace mattex::detail
