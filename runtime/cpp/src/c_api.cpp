// The C API over mattex::Matter: opaque handles, status codes and a per-thread last error;
// nothing is thrown across it.
#include <cstddef>
#include <limits>
#include <new>
#include <string>

#include "mattex/matter.hpp"
#include "mattex/mattex.h"

struct mattex_matter {
  std::unique_ptr<mattex::Matter> matter;
  mattex_info info{};
};

namespace {

thread_local std::string lastError;

mattex_status fail(mattex::Status status, const std::string& message) {
  lastError = message;
  return static_cast<mattex_status>(status);
}

// Runs `body`, turning every exception into a status and this thread's last error.
template <typename Body>
mattex_status guarded(Body&& body) noexcept {
  try {
    body();
    lastError.clear();
    return MATTEX_OK;
  } catch (const mattex::Error& e) {
    return fail(e.status(), e.what());
  } catch (const std::bad_alloc&) {  // the handle itself (Matter names the buffers it allocates)
    return fail(mattex::Status::Resource, "memory: the C API could not allocate a handle or a message");
  } catch (const std::exception& e) {
    return fail(mattex::Status::Internal, e.what());
  } catch (...) {
    return fail(mattex::Status::Internal, "unknown error");
  }
}

const char* text(const char* value, const char* fallback) { return value ? value : fallback; }

// The element counts batch, height and width make, or an error naming the first wrong buffer.
void checkCounts(size_t input, size_t pha, size_t fgr, int64_t batch, int64_t height, int64_t width) {
  if (batch < 1 || height < 1 || width < 1) return;  // Matter's checks name the shape
  const double plane = static_cast<double>(batch) * static_cast<double>(height) * static_cast<double>(width);
  if (3 * plane > static_cast<double>(std::numeric_limits<size_t>::max() / 4)) {
    throw mattex::InputShapeError("batch " + std::to_string(batch) + " of " + std::to_string(height) + "x" +
                                  std::to_string(width) + " is larger than any buffer");
  }
  const size_t n = static_cast<size_t>(batch) * static_cast<size_t>(height) * static_cast<size_t>(width);
  const struct {
    const char* subject;  // "src and bgr hold", "pha holds"
    size_t got, want;
  } buffers[] = {{"src and bgr hold", input, 3 * n}, {"pha holds", pha, n}, {"fgr holds", fgr, 3 * n}};
  for (const auto& b : buffers) {
    if (b.got != b.want) {
      throw mattex::InputShapeError(std::string(b.subject) + " " + std::to_string(b.got) + " values; batch " +
                                    std::to_string(batch) + " of " + std::to_string(height) + "x" +
                                    std::to_string(width) + " needs " + std::to_string(b.want));
    }
  }
}

mattex_status nullHandle() { return fail(mattex::Status::InvalidArgument, "matter is a null handle"); }

// mattex_options grows at its end: a program built against an older mattex.h passes its smaller
// struct_size, and a field past it takes its default. The first version ended with `device`.
constexpr size_t kFirstOptionsSize = offsetof(mattex_options, device) + sizeof(int);

// Whether the caller's struct (of options->struct_size bytes) holds the field at `offset`.
bool holds(const mattex_options* options, size_t offset, size_t size) { return offset + size <= options->struct_size; }
#define MATTEX_HOLDS(options, field) holds(options, offsetof(mattex_options, field), sizeof((options)->field))

// "" for a struct_size this library reads, else why not.
std::string optionsSizeProblem(size_t size) {
  if (size >= kFirstOptionsSize && size <= sizeof(mattex_options)) return "";
  const std::string said = "options->struct_size is " + std::to_string(size);
  if (size > sizeof(mattex_options)) {
    return said + ", larger than this library's mattex_options (" + std::to_string(sizeof(mattex_options)) +
           "): the program was built against a newer mattex.h than this libmattex; use that release's library";
  }
  return said + ", not sizeof(mattex_options) " + std::to_string(sizeof(mattex_options)) +
         ": fill the options with mattex_options_init";
}

}  // namespace

extern "C" {

void mattex_options_init(mattex_options* options) {
  if (!options) return;
  *options = mattex_options{};
  options->struct_size = sizeof(mattex_options);
}

mattex_status mattex_open(const char* path, const mattex_options* options, mattex_matter** matter) {
  if (!matter) return fail(mattex::Status::InvalidArgument, "matter (the handle to fill) is a null pointer");
  *matter = nullptr;
  if (!path) return fail(mattex::Status::InvalidArgument, "path is a null pointer");
  const std::string problem = options ? optionsSizeProblem(options->struct_size) : "";
  if (!problem.empty()) return fail(mattex::Status::InvalidArgument, problem);
  return guarded([&] {
    mattex::Options o;
    if (options) {
      o.backend = text(options->backend, "");
      o.inferencePrecision = text(options->inference_precision, "f32");
      o.threads = options->threads;
      o.cacheDir = text(options->cache_dir, "");
      o.checkValues = options->skip_value_checks == 0;
      if (MATTEX_HOLDS(options, device)) o.device = options->device;  // every field from here on: so
    }
    auto handle = std::make_unique<mattex_matter>();
    handle->matter = mattex::Matter::open(path, o);
    const auto& info = handle->matter->info();
    handle->info = {info.backend.c_str(), info.precision.c_str(), info.io.c_str(), info.ioDtype.c_str(),
                    info.sizeMultiple};
    *matter = handle.release();
  });
}

mattex_status mattex_run(mattex_matter* matter, const float* src, const float* bgr, size_t input_count,
                         int64_t batch, int64_t height, int64_t width, float* pha, size_t pha_count, float* fgr,
                         size_t fgr_count) {
  if (!matter) return nullHandle();
  return guarded([&] {
    checkCounts(input_count, pha_count, fgr_count, batch, height, width);
    matter->matter->run(src, bgr, batch, height, width, pha, fgr);
  });
}

mattex_status mattex_matte_frames(mattex_matter* matter, const uint8_t* src, const uint8_t* bgr, size_t input_count,
                                  int64_t batch, int64_t height, int64_t width, float* pha, size_t pha_count,
                                  float* fgr, size_t fgr_count) {
  if (!matter) return nullHandle();
  return guarded([&] {
    checkCounts(input_count, pha_count, fgr_count, batch, height, width);
    matter->matter->matteFrames(src, bgr, batch, height, width, pha, fgr);
  });
}

mattex_status mattex_get_info(const mattex_matter* matter, mattex_info* info) {
  if (!matter) return nullHandle();
  if (!info) return fail(mattex::Status::InvalidArgument, "info is a null pointer");
  *info = matter->info;
  return MATTEX_OK;
}

void mattex_close(mattex_matter* matter) { delete matter; }

const char* mattex_last_error(void) { return lastError.c_str(); }

const char* mattex_status_name(mattex_status status) {
  return mattex::statusName(static_cast<mattex::Status>(status));
}

const char* mattex_version(void) { return mattex::version(); }

}  // extern "C"
