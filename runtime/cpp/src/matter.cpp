// mattex::Matter: picks a backend by file (as mattex.runtime.Matter.open), checks every input
// once with the Python runtime's rules and messages, and converts between what the caller holds
// (float32 (B, 3, H, W) or uint8 (B, H, W, 3) frames) and what the file takes.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <system_error>
#include <vector>

#include "backend.hpp"
#include "environment.hpp"
#include "half.hpp"
#include "mattex_facts.hpp"  // generated from mattex/shared_facts.json: the status names
#include "sidecar.hpp"

#ifndef MATTEX_VERSION
#define MATTEX_VERSION "0.0.0"
#endif

namespace mattex {

const char* statusName(Status status) noexcept {
  const char* name = detail::facts::statusName(static_cast<int>(status));
  return name ? name : "UnknownStatus";
}

const char* version() noexcept { return MATTEX_VERSION; }

bool Profile::accepts(int64_t batch, int64_t height, int64_t width) const {
  const int64_t value[3] = {batch, height, width};
  for (int i = 0; i < 3; ++i) {
    if (value[i] < min[i] || value[i] > max[i]) return false;
  }
  return true;
}

namespace {

std::string baseName(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string lowerSuffix(const std::string& path) {
  const std::string name = baseName(path);
  const auto dot = name.find_last_of('.');
  std::string suffix = dot == std::string::npos || dot == 0 ? "" : name.substr(dot);
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  return suffix;
}

bool isEngineSuffix(const std::string& suffix) { return suffix == ".engine" || suffix == ".plan"; }

// What a path that is not a regular file is, in mattex.files.check_model_file's words; reading a
// FIFO would wait for a writer forever and a device never ends, so neither is ever opened.
std::string notAModelFile(const std::string& path, const struct stat& st) {
  if (S_ISDIR(st.st_mode)) return "no such model file: " + path + " (a folder)";
  const char* kind = S_ISFIFO(st.st_mode)   ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  return path + " is " + kind + ", not a model file";
}

void checkModelFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ELOOP) throw ModelFileError(path + " is a symbolic link loop, not a model file");
    throw ModelFileError("no such model file: " + path);
  }
  if (!S_ISREG(st.st_mode)) throw ModelFileError(notAModelFile(path, st));
  if (st.st_size == 0) throw ModelFileError(path + " is empty (0 bytes): an interrupted export, build or copy?");
}

// The last line of what an exception said that holds any text (OpenVINO's stack their context
// above the system's own words), trimmed.
std::string lastWords(const std::string& said) {
  const auto end = said.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return said;
  const auto newline = said.find_last_of('\n', end);
  const auto begin = said.find_first_not_of(" \t\r", newline == std::string::npos ? 0 : newline + 1);
  return said.substr(begin, end - begin + 1);
}

// What `asking` (opening a file, a batch of frames) could not get, in mattex.runtime.matter's
// words for ResourceError.
std::string resourceMessage(const std::string& resource, const std::string& asking, const std::string& what) {
  const std::string said = lastWords(what);
  if (resource == "threads") {
    return "threads: " + asking + " needs threads this machine would not start (" + said +
           "): a process or thread limit (ulimit -u) is reached";
  }
  return "memory: " + asking + " could not be allocated on this machine (" + said + ")";
}

// Runs `body` so that only mattex::Error leaves the C++ API: the machine's refusals (a buffer
// that cannot be allocated, a thread that cannot start) become ResourceError naming what asked,
// anything else a backend or the standard library threw becomes InternalError.
template <typename Body>
auto onlyMattexErrors(const std::string& asking, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string resource = detail::exhaustedResource(e);
    if (!resource.empty()) throw ResourceError(resourceMessage(resource, asking, e.what()));
    throw Error(Status::Internal, e.what());
  } catch (...) {
    throw Error(Status::Internal, "unknown error (not a std::exception) from " + asking);
  }
}

// "batch 2 of 1080x1920 (buffers of 49766400 bytes each)": the float32 frames a call converts.
std::string framesAsked(int64_t batch, int64_t height, int64_t width) {
  const double bytes = 4.0 * 3.0 * static_cast<double>(batch) * static_cast<double>(height) * static_cast<double>(width);
  char text[160];
  std::snprintf(text, sizeof text, "batch %lld of %lldx%lld (buffers of %.0f bytes each)", static_cast<long long>(batch),
                static_cast<long long>(height), static_cast<long long>(width), bytes);
  return text;
}

// The automatic choice for a `suffix` file, as the Python registry's: the lowest-ranked backend built
// in, else the lowest-ranked one at all (whose refusal names how to build it in); "" for none.
std::string automaticBackend(const std::string& suffix) {
  const detail::BackendEntry* best = nullptr;
  for (const auto& entry : detail::backends()) {
    if (entry.rank < 0 || !std::count(entry.suffixes.begin(), entry.suffixes.end(), suffix)) continue;
    const auto key = [](const detail::BackendEntry* e) { return std::make_pair(e->factory == nullptr, e->rank); };
    if (!best || key(&entry) < key(best)) best = &entry;
  }
  return best ? best->name : "";
}

// The backend Options and the file's suffix ask for (Matter.open's choice).
const detail::BackendEntry& chooseBackend(const std::string& path, const std::string& suffix, std::string asked,
                                          const detail::Sidecar* sidecar) {
  if (sidecar) {
    if (!asked.empty() && asked != sidecar->backend) {
      throw ConfigError(baseName(path) + " was built for " + sidecar->backend + "; it cannot run on " + asked);
    }
    asked = sidecar->backend;
  }
  if (asked.empty()) {
    asked = automaticBackend(suffix);
    if (asked.empty()) throw ConfigError(baseName(path) + ": expected a .onnx model or a .engine/.plan engine");
  }
  const auto& entry = detail::backend(asked);
  if (!std::count(entry.suffixes.begin(), entry.suffixes.end(), suffix)) {
    std::string suffixes;
    for (const auto& s : entry.suffixes) suffixes += (suffixes.empty() ? "" : ", ") + s;
    throw ConfigError("backend " + asked + " opens " + suffixes + " files, not " + baseName(path));
  }
  if (!entry.factory) {
    throw BackendUnavailableError("this mattex C++ runtime was built without the " + entry.name +
                                  " backend: configure runtime/cpp with " + entry.buildOption);
  }
  return entry;
}

std::string describe(const Profile& p) {
  return "batch " + std::to_string(p.min[0]) + ".." + std::to_string(p.max[0]) + ", height " +
         std::to_string(p.min[1]) + ".." + std::to_string(p.max[1]) + ", width " + std::to_string(p.min[2]) + ".." +
         std::to_string(p.max[2]);
}

std::string formatG(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

// Float frames must be finite and in [0, 1] (mattex.runtime.io_spec.check_values).
void checkValues(const char* name, const float* x, size_t count) {
  // One branch-free pass the compiler vectorizes (2.5x faster than counting with &&: 1.4 ms per
  // HD input at -O3); NaN compares false both ways. The counting pass runs only on bad frames.
  unsigned bad = 0;
  for (size_t i = 0; i < count; ++i) {
    bad |= static_cast<unsigned>(!(x[i] >= 0.0f)) | static_cast<unsigned>(!(x[i] <= 1.0f));
  }
  if (!bad) return;
  size_t nan = 0, inf = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < count; ++i) {
    nan += std::isnan(x[i]);
    inf += std::isinf(x[i]);
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  const std::string skip = " (mattex::Options::checkValues = false skips this check)";
  if (nan || inf) {
    throw InputValueError(std::string(name) + " has " + std::to_string(nan) + " NaN and " + std::to_string(inf) +
                          " Inf values: frames must be finite" + skip);
  }
  throw InputValueError(std::string(name) + " has values outside [0, 1] (min " + formatG(lo) + ", max " +
                        formatG(hi) + "): pass frames scaled to [0, 1], e.g. uint8 / 255" + skip);
}

}  // namespace

// Hidden: matter.hpp declares it in the exported Matter, but it is no part of the API.
struct __attribute__((visibility("hidden"))) Matter::Impl {
  std::unique_ptr<detail::Backend> backend;
  Options options;

  void run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width, float* pha, float* fgr);
  void matteFrames(const uint8_t* src, const uint8_t* bgr, int64_t batch, int64_t height, int64_t width, float* pha,
                   float* fgr);

  // mattex.runtime.io_spec.check_inputs for sizes and profiles.
  void checkShape(const void* src, const void* bgr, const void* pha, const void* fgr, int64_t b, int64_t h,
                  int64_t w) const {
    if (b < 1 || h < 4 || w < 4) {
      throw InputShapeError("src and bgr need a batch of at least 1 and at least 4x4 pixels, got batch " +
                            std::to_string(b) + ", " + std::to_string(h) + "x" + std::to_string(w));
    }
    const int64_t m = backend->info.sizeMultiple;
    if (h % m || w % m) {
      throw InputShapeError("src and bgr height and width must be divisible by " + std::to_string(m) + ", got " +
                            std::to_string(h) + "x" + std::to_string(w));
    }
    const auto& profiles = backend->info.profiles;
    if (!profiles.empty() &&
        std::none_of(profiles.begin(), profiles.end(), [&](const Profile& p) { return p.accepts(b, h, w); })) {
      std::string accepted;
      for (const auto& p : profiles) accepted += (accepted.empty() ? "" : "; ") + describe(p);
      throw InputShapeError("src/bgr shape (batch " + std::to_string(b) + ", height " + std::to_string(h) +
                            ", width " + std::to_string(w) + ") is outside the engine's profiles: " + accepted);
    }
    // Sizes whose element counts overflow what a buffer can hold are refused, not wrapped.
    if (b > (int64_t{1} << 20) || h > (int64_t{1} << 20) || w > (int64_t{1} << 20) ||
        static_cast<double>(b) * h * w * 3 > 1e12) {
      throw InputShapeError("src/bgr shape (batch " + std::to_string(b) + ", height " + std::to_string(h) +
                            ", width " + std::to_string(w) + ") is larger than any frame buffer");
    }
    // After the sizes: an empty batch's buffers may well be null (an empty std::vector's are).
    const char* names[] = {"src", "bgr", "pha", "fgr"};
    const void* pointers[] = {src, bgr, pha, fgr};
    for (int i = 0; i < 4; ++i) {
      if (!pointers[i]) throw Error(Status::InvalidArgument, std::string(names[i]) + " is a null pointer");
    }
  }
};

Matter::Matter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Matter::~Matter() = default;

const ModelInfo& Matter::info() const { return impl_->backend->info; }

std::unique_ptr<Matter> Matter::open(const std::string& path, const Options& options) {
  return onlyMattexErrors("opening " + baseName(path), [&] { return openChecked(path, options); });
}

std::unique_ptr<Matter> Matter::openChecked(const std::string& path, const Options& options) {
  detail::checkedThreads(options.threads);
  checkModelFile(path);
  const std::string suffix = lowerSuffix(path);
  std::unique_ptr<detail::Sidecar> sidecar;
  if (isEngineSuffix(suffix)) {
    sidecar = std::make_unique<detail::Sidecar>(detail::Sidecar::load(path));
    detail::checkPlan(path, *sidecar);  // before any backend reads a byte of it
  }
  const auto& entry = chooseBackend(path, suffix, options.backend, sidecar.get());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->backend = entry.factory(path, options, sidecar.get());
  impl->backend->info.path = path;
  impl->backend->info.backend = entry.name;
  if (sidecar) impl->backend->info.profiles = sidecar->profiles;
  return std::unique_ptr<Matter>(new Matter(std::move(impl)));
}

void Matter::run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width, float* pha,
                 float* fgr) {
  onlyMattexErrors(framesAsked(batch, height, width), [&] { impl_->run(src, bgr, batch, height, width, pha, fgr); });
}

void Matter::Impl::run(const float* src, const float* bgr, int64_t batch, int64_t height, int64_t width, float* pha,
                       float* fgr) {
  Impl& m = *this;
  m.checkShape(src, bgr, pha, fgr, batch, height, width);
  const size_t count = static_cast<size_t>(batch * 3 * height * width);
  if (m.options.checkValues) {
    checkValues("src", src, count);
    checkValues("bgr", bgr, count);
  }
  const std::string& dtype = m.backend->info.ioDtype;
  if (dtype == "float32") {
    m.backend->infer(src, bgr, batch, height, width, pha, fgr);
  } else if (dtype == "float16") {  // as numpy's astype(float16)
    std::vector<uint16_t> s(count), b(count);
    std::transform(src, src + count, s.begin(), detail::floatToHalf);
    std::transform(bgr, bgr + count, b.begin(), detail::floatToHalf);
    m.backend->infer(s.data(), b.data(), batch, height, width, pha, fgr);
  } else {  // uint8 frames: the frames this image would be stored as (io_spec.float_to_input)
    const size_t plane = static_cast<size_t>(height * width);
    std::vector<uint8_t> s(count), b(count);
    for (int64_t n = 0; n < batch; ++n) {
      for (size_t c = 0; c < 3; ++c) {
        const size_t from = (static_cast<size_t>(n) * 3 + c) * plane;
        for (size_t i = 0; i < plane; ++i) {
          const size_t to = (static_cast<size_t>(n) * plane + i) * 3 + c;
          s[to] = static_cast<uint8_t>(std::nearbyint(std::clamp(src[from + i], 0.0f, 1.0f) * 255.0f));
          b[to] = static_cast<uint8_t>(std::nearbyint(std::clamp(bgr[from + i], 0.0f, 1.0f) * 255.0f));
        }
      }
    }
    m.backend->infer(s.data(), b.data(), batch, height, width, pha, fgr);
  }
}

void Matter::matteFrames(const uint8_t* src, const uint8_t* bgr, int64_t batch, int64_t height, int64_t width,
                         float* pha, float* fgr) {
  onlyMattexErrors(framesAsked(batch, height, width),
                   [&] { impl_->matteFrames(src, bgr, batch, height, width, pha, fgr); });
}

void Matter::Impl::matteFrames(const uint8_t* src, const uint8_t* bgr, int64_t batch, int64_t height, int64_t width,
                               float* pha, float* fgr) {
  Impl& m = *this;
  m.checkShape(src, bgr, pha, fgr, batch, height, width);
  const std::string& dtype = m.backend->info.ioDtype;
  if (dtype == "uint8") {
    m.backend->infer(src, bgr, batch, height, width, pha, fgr);
    return;
  }
  // (B, H, W, 3) -> (B, 3, H, W) in [0, 1], u / 255 in float32 as a uint8 file's graph computes
  // it (io_spec.frames_to_input); frames made so are finite and in [0, 1]: no value check.
  const size_t plane = static_cast<size_t>(height * width), count = static_cast<size_t>(batch) * 3 * plane;
  std::vector<float> s(count), b(count);
  for (int64_t n = 0; n < batch; ++n) {
    for (size_t i = 0; i < plane; ++i) {
      const size_t from = (static_cast<size_t>(n) * plane + i) * 3;
      for (size_t c = 0; c < 3; ++c) {
        const size_t to = (static_cast<size_t>(n) * 3 + c) * plane + i;
        s[to] = static_cast<float>(src[from + c]) / 255.0f;
        b[to] = static_cast<float>(bgr[from + c]) / 255.0f;
      }
    }
  }
  if (dtype == "float16") {
    std::vector<uint16_t> sh(count), bh(count);
    std::transform(s.begin(), s.end(), sh.begin(), detail::floatToHalf);
    std::transform(b.begin(), b.end(), bh.begin(), detail::floatToHalf);
    m.backend->infer(sh.data(), bh.data(), batch, height, width, pha, fgr);
    return;
  }
  m.backend->infer(s.data(), b.data(), batch, height, width, pha, fgr);
}

void Matter::enqueue(const void* src, const void* bgr, int64_t batch, int64_t height, int64_t width, void* pha,
                     void* fgr, void* stream) {
  onlyMattexErrors(framesAsked(batch, height, width), [&] {
    impl_->checkShape(src, bgr, pha, fgr, batch, height, width);
    impl_->backend->enqueue(src, bgr, batch, height, width, pha, fgr, stream);
  });
}

}  // namespace mattex

namespace mattex::detail {

std::string exhaustedResource(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "memory";
  if (const auto* failed = dynamic_cast<const std::system_error*>(&e)) {
    if (failed->code() == std::errc::resource_unavailable_try_again) return "threads";
    if (failed->code() == std::errc::not_enough_memory) return "memory";
  }
  // Backends wrap what the system said in their own exceptions (OpenVINO: ov::Exception).
  const std::string said = e.what();
  if (said.find(std::strerror(EAGAIN)) != std::string::npos) return "threads";
  if (said.find(std::strerror(ENOMEM)) != std::string::npos || said.find("bad_alloc") != std::string::npos) {
    return "memory";
  }
  return "";
}

}  // namespace mattex::detail
