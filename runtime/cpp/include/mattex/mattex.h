/* mattex C API: the C++ runtime behind opaque handles and status codes, for C, Rust, Go, C#,
 * Java (anything with a C FFI). Nothing is thrown across it; a failed call returns its status and
 * leaves a message for mattex_last_error().
 *
 *   mattex_matter* matter = NULL;
 *   if (mattex_open("bgm_mobilenetv2_hd_fp32.onnx", NULL, &matter) != MATTEX_OK) {
 *     fprintf(stderr, "%s\n", mattex_last_error());
 *   }
 *   mattex_matte_frames(matter, src, bgr, n, 1, 1080, 1920, pha, 1080 * 1920, fgr, 3 * 1080 * 1920);
 *   mattex_close(matter);
 */
#ifndef MATTEX_H
#define MATTEX_H

#include <stddef.h>
#include <stdint.h>

/* mattex_status (MATTEX_OK, MATTEX_ERROR_MODEL_FILE, ...): generated from mattex/shared_facts.json,
 * the list the C++ runtime's mattex::Status and the Python runtime's errors share. */
#include "mattex/mattex_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MATTEX_API __declspec(dllexport)
#else
#define MATTEX_API __attribute__((visibility("default")))
#endif

typedef struct mattex_matter mattex_matter;

/* Fill with mattex_options_init, then set what you need. struct_size must be
 * sizeof(mattex_options), which mattex_options_init sets: a struct never initialised (`= {0}`,
 * or left as the stack had it) is refused with MATTEX_ERROR_INVALID_ARGUMENT. Every other field's
 * zero or NULL is the default and the safe choice (mattex::Options).
 * The struct grows only at its end: a program built against an older mattex.h passes its smaller
 * struct_size, and the fields it lacks take their defaults; a struct_size larger than this
 * library's (a newer mattex.h) is refused. Only C types cross this API. */
typedef struct mattex_options {
  size_t struct_size;              /* sizeof(mattex_options) */
  const char* backend;             /* NULL: by file */
  const char* inference_precision; /* NULL: "f32"; or "bf16" */
  int threads;                     /* 0: MATTEX_THREADS, else one per core; at most 4 per core */
  const char* cache_dir;           /* NULL: the Python runtime's */
  int skip_value_checks;           /* 0: float frames must be finite and in [0, 1]; 1 skips it */
  int device;                      /* CUDA device (engines) */
} mattex_options;

/* What an opened file takes and gives; the strings live as long as the handle. */
typedef struct mattex_info {
  const char* backend;   /* openvino | tensorrt | tensorrt-rtx */
  const char* precision; /* fp32 | fp16 | int8 */
  const char* io;        /* float: (B, 3, H, W) inputs | uint8: (B, H, W, 3) frames */
  const char* io_dtype;  /* float32 | float16 | uint8 */
  int64_t size_multiple; /* H and W must be divisible by it */
} mattex_info;

MATTEX_API void mattex_options_init(mattex_options* options);

/* Opens `path` (.onnx, .engine or .plan); options may be NULL. On success *matter is a handle
 * for mattex_close; on failure it is NULL. */
MATTEX_API mattex_status mattex_open(const char* path, const mattex_options* options, mattex_matter** matter);

/* float32 (batch, 3, height, width) RGB in [0, 1] in; pha (batch, 1, H, W) and fgr
 * (batch, 3, H, W) float32 out. input_count is the number of floats in src (and in bgr); every
 * count must be what batch, height and width make (MATTEX_ERROR_INPUT_SHAPE otherwise). */
MATTEX_API mattex_status mattex_run(mattex_matter* matter, const float* src, const float* bgr, size_t input_count,
                                    int64_t batch, int64_t height, int64_t width, float* pha, size_t pha_count,
                                    float* fgr, size_t fgr_count);

/* uint8 (batch, height, width, 3) RGB frames in (input_count bytes each); outputs as mattex_run. */
MATTEX_API mattex_status mattex_matte_frames(mattex_matter* matter, const uint8_t* src, const uint8_t* bgr,
                                             size_t input_count, int64_t batch, int64_t height, int64_t width,
                                             float* pha, size_t pha_count, float* fgr, size_t fgr_count);

MATTEX_API mattex_status mattex_get_info(const mattex_matter* matter, mattex_info* info);

/* Closes the handle; NULL is ignored. */
MATTEX_API void mattex_close(mattex_matter* matter);

/* The message of this thread's last failed call ("" when none); valid until its next call. */
MATTEX_API const char* mattex_last_error(void);

/* "ModelFileError", "InputShapeError", ... ("Ok" for MATTEX_OK). */
MATTEX_API const char* mattex_status_name(mattex_status status);

MATTEX_API const char* mattex_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MATTEX_H */
