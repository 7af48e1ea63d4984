// What the process environment decides, as the Python runtime reads it (private).
#pragma once

#include <string>

namespace mattex::detail {

// Threads for a CPU backend whose caller named none: MATTEX_THREADS (0 when unset: the backend's
// choice); ConfigError for a value that is not a whole number of 1 or more.
int defaultThreads();

// OpenVINO's compiled-model cache: $MATTEX_CACHE or $XDG_CACHE_HOME/mattex (~/.cache/mattex),
// then openvino/ (mattex.runtime.model_cache.openvino_cache_dir).
std::string defaultCacheDir();

}  // namespace mattex::detail
