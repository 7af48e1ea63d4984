// What the process environment decides, as the Python runtime reads it (private).
#pragma once

#include <string>

namespace mattex::detail {

// Threads for a CPU backend whose caller named none: MATTEX_THREADS (0 when unset: the backend's
// choice); ConfigError for a value that is not ASCII digits making 1..maxThreads(), in the words
// of mattex.runtime.backends.base.default_threads.
int defaultThreads();

// Options::threads as given (0: unset) when it is 0..maxThreads(); ConfigError otherwise.
int checkedThreads(int threads);

// "give a whole number of threads from 1 to N (4 per core, C cores here)": the rule both
// runtimes state (mattex.runtime.backends.base.threads_rule).
std::string threadsRule();

// OpenVINO's compiled-model cache: $MATTEX_CACHE or $XDG_CACHE_HOME/mattex (~/.cache/mattex),
// then openvino/ (mattex.runtime.model_cache.openvino_cache_dir).
std::string defaultCacheDir();

}  // namespace mattex::detail
