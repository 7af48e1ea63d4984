/* The C API from C (gcc), two ways:
 *   c_api_check                      ctest: the API's contract on the fake backend (statuses, last
 *                                    error, buffer counts, null handles), no file needed
 *   c_api_check MODEL DIR            opens MODEL once and runs each case of DIR/cases, a line
 *                                    "KIND B H W" (KIND float: float32 (B, 3, H, W); frames: uint8
 *                                    (B, H, W, 3)), from DIR/<i>.src.bin and DIR/<i>.bgr.bin to
 *                                    DIR/<i>.pha.c.bin and DIR/<i>.fgr.c.bin (tests/runtime/cpp
 *                                    compares them with Python's Matter) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mattex/mattex.h"

void mattex_testing_register_fake_backend(void);
void mattex_testing_write_fake_model(const char* path, const char* dtype);

static int failures = 0;

static void expect_status(const char* name, mattex_status got, mattex_status want, const char* phrase) {
  const char* message = mattex_last_error();
  int ok = got == want && (phrase == NULL || strstr(message, phrase) != NULL);
  printf("%s %s: %s: %s\n", ok ? "ok  " : "FAIL", name, mattex_status_name(got), message);
  failures += !ok;
}

static void* read_file(const char* path, size_t bytes) {
  FILE* f = fopen(path, "rb");
  void* data = malloc(bytes);
  if (!f || !data || fread(data, 1, bytes, f) != bytes) {
    fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
    exit(2);
  }
  fclose(f);
  return data;
}

static void write_file(const char* path, const void* data, size_t bytes) {
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(data, 1, bytes, f) != bytes) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
  fclose(f);
}

/* One case of DIR/cases (a line "KIND B H W"): DIR/<i>.src.bin, DIR/<i>.bgr.bin in,
 * DIR/<i>.pha.c.bin, DIR/<i>.fgr.c.bin out. */
static mattex_status run_case(mattex_matter* matter, const char* dir, int i, const char* kind, int64_t b, int64_t h,
                              int64_t w) {
  int frames = strcmp(kind, "frames") == 0;
  size_t n = (size_t)(b * h * w), input = 3 * n, element = frames ? 1 : sizeof(float);
  char path[4096];
  snprintf(path, sizeof path, "%s/%d.src.bin", dir, i);
  void* src = read_file(path, input * element);
  snprintf(path, sizeof path, "%s/%d.bgr.bin", dir, i);
  void* bgr = read_file(path, input * element);
  float* pha = malloc(n * sizeof(float));
  float* fgr = malloc(3 * n * sizeof(float));
  mattex_status status = frames ? mattex_matte_frames(matter, src, bgr, input, b, h, w, pha, n, fgr, 3 * n)
                                : mattex_run(matter, src, bgr, input, b, h, w, pha, n, fgr, 3 * n);
  if (status == MATTEX_OK) {
    snprintf(path, sizeof path, "%s/%d.pha.c.bin", dir, i);
    write_file(path, pha, n * sizeof(float));
    snprintf(path, sizeof path, "%s/%d.fgr.c.bin", dir, i);
    write_file(path, fgr, 3 * n * sizeof(float));
  }
  free(src), free(bgr), free(pha), free(fgr);
  return status;
}

static int run_model(const char* model, const char* dir) {
  char path[4096], kind[16];
  long long b, h, w;
  snprintf(path, sizeof path, "%s/cases", dir);
  FILE* cases = fopen(path, "r");
  if (!cases) {
    fprintf(stderr, "cannot read %s\n", path);
    return 2;
  }
  mattex_matter* matter = NULL;
  mattex_status status = mattex_open(model, NULL, &matter);
  for (int i = 0; status == MATTEX_OK && fscanf(cases, "%15s %lld %lld %lld", kind, &b, &h, &w) == 4; ++i) {
    status = run_case(matter, dir, i, kind, b, h, w);
  }
  fclose(cases);
  mattex_close(matter);
  if (status != MATTEX_OK) {
    fprintf(stderr, "%s: %s\n", mattex_status_name(status), mattex_last_error());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3) return run_model(argv[1], argv[2]);
  if (argc != 1) {
    fprintf(stderr, "usage: %s [MODEL DIR]\n", argv[0]);
    return 2;
  }
  mattex_testing_register_fake_backend();
  char dir[] = "/tmp/mattex_c_api_XXXXXX";
  if (!mkdtemp(dir)) return 2;
  char model[256], frames_model[256];
  snprintf(model, sizeof model, "%s/m.fake", dir);
  snprintf(frames_model, sizeof frames_model, "%s/u8.fake", dir);
  mattex_testing_write_fake_model(model, "float32");
  mattex_testing_write_fake_model(frames_model, "uint8");

  mattex_matter* matter = (mattex_matter*)1;
  expect_status("missing file", mattex_open("/nonexistent/m.onnx", NULL, &matter), MATTEX_ERROR_MODEL_FILE,
                "no such model file: /nonexistent/m.onnx");
  failures += matter != NULL;  /* a failed open leaves no handle */
  expect_status("null path", mattex_open(NULL, NULL, &matter), MATTEX_ERROR_INVALID_ARGUMENT, "path");
  expect_status("null out", mattex_open(model, NULL, NULL), MATTEX_ERROR_INVALID_ARGUMENT, "null pointer");
  mattex_options options;
  mattex_options_init(&options);
  options.backend = "tensorrt";
  expect_status("backend for other files", mattex_open(model, &options, &matter), MATTEX_ERROR_CONFIG,
                "opens .engine, .plan files");
  mattex_options_init(&options);
  expect_status("open", mattex_open(model, &options, &matter), MATTEX_OK, NULL);

  enum { B = 2, H = 8, W = 12, N = B * H * W };
  static float src[3 * N], bgr[3 * N], pha[N], fgr[3 * N];
  static uint8_t src8[3 * N], bgr8[3 * N];
  for (int i = 0; i < 3 * N; ++i) {
    src[i] = 0.75f, bgr[i] = 0.25f, src8[i] = 191, bgr8[i] = 64;
  }
  expect_status("run", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N), MATTEX_OK, NULL);
  failures += !(pha[N - 1] == 0.5f && fgr[0] == 0.75f);
  expect_status("last error cleared by a success", MATTEX_OK, MATTEX_OK, "");
  failures += strlen(mattex_last_error()) != 0;
  expect_status("src too small", mattex_run(matter, src, bgr, 3 * N - 1, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INPUT_SHAPE, "src and bgr hold 575 values; batch 2 of 8x12 needs 576");
  expect_status("pha too small", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N - 1, fgr, 3 * N),
                MATTEX_ERROR_INPUT_SHAPE, "pha holds 191 values");
  expect_status("fgr too large", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N + 1),
                MATTEX_ERROR_INPUT_SHAPE, "fgr holds 577 values");
  expect_status("batch 0", mattex_run(matter, src, bgr, 0, 0, H, W, pha, 0, fgr, 0), MATTEX_ERROR_INPUT_SHAPE,
                "got batch 0, 8x12");
  expect_status("not divisible by 4", mattex_run(matter, src, bgr, 3 * 2 * 8 * 10, 2, 8, 10, pha, 160, fgr, 480),
                MATTEX_ERROR_INPUT_SHAPE, "divisible by 4, got 8x10");
  expect_status("null src", mattex_run(matter, NULL, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INVALID_ARGUMENT, "src is a null pointer");
  src[3] = 2.0f;
  expect_status("values outside [0, 1]", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INPUT_VALUE, "src has values outside [0, 1] (min 0.75, max 2)");
  expect_status("null handle", mattex_run(NULL, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INVALID_ARGUMENT, "null handle");
  expect_status("frames", mattex_matte_frames(matter, src8, bgr8, 3 * N, B, H, W, pha, N, fgr, 3 * N), MATTEX_OK, NULL);
  failures += !(fgr[0] == 191.0f / 255.0f);
  mattex_info info;
  expect_status("info", mattex_get_info(matter, &info), MATTEX_OK, NULL);
  failures += strcmp(info.backend, "fake") || strcmp(info.io, "float") || strcmp(info.precision, "fp32") ||
              info.size_multiple != 4;
  mattex_close(matter);
  mattex_close(NULL);

  expect_status("open uint8", mattex_open(frames_model, NULL, &matter), MATTEX_OK, NULL);
  expect_status("uint8 file from floats", mattex_run(matter, bgr, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_OK, NULL);
  failures += !(fgr[0] == 64.0f / 255.0f); /* 0.25 stored as the frame 64 (rint(63.75)) */
  mattex_close(matter);

  /* Options as a C caller may leave them: never initialised, zeroed but sized, out of range. */
  mattex_options zeroed = {0};
  expect_status("zeroed options", mattex_open(model, &zeroed, &matter), MATTEX_ERROR_INVALID_ARGUMENT,
                "options->struct_size is 0, not sizeof(mattex_options)");
  failures += matter != NULL;
  zeroed.struct_size = sizeof zeroed; /* every other zero is the safe default: value checks on */
  expect_status("open sized zero options", mattex_open(model, &zeroed, &matter), MATTEX_OK, NULL);
  src[3] = NAN;
  src[4] = 7.0f;
  expect_status("NaN with zero options", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INPUT_VALUE, "src has 1 NaN and 0 Inf values");
  src[3] = 0.75f;
  expect_status("7.0 with zero options", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_ERROR_INPUT_VALUE, "src has values outside [0, 1] (min 0.75, max 7)");
  mattex_close(matter);
  zeroed.skip_value_checks = 1;
  expect_status("open skipping value checks", mattex_open(model, &zeroed, &matter), MATTEX_OK, NULL);
  expect_status("7.0 unchecked when asked", mattex_run(matter, src, bgr, 3 * N, B, H, W, pha, N, fgr, 3 * N),
                MATTEX_OK, NULL);
  mattex_close(matter);
  src[4] = 0.75f;
  mattex_options_init(&options);
  options.threads = -1;
  expect_status("negative threads", mattex_open(model, &options, &matter), MATTEX_ERROR_CONFIG,
                "threads=-1: give a whole number of threads from 1 to ");
  options.threads = 1000000;
  expect_status("a million threads", mattex_open(model, &options, &matter), MATTEX_ERROR_CONFIG,
                "threads=1000000: give a whole number of threads from 1 to ");
  failures += strcmp(mattex_status_name(MATTEX_ERROR_RESOURCE), "ResourceError") != 0;
  failures += strcmp(mattex_status_name(MATTEX_ERROR_MODEL_FILE), "ModelFileError") != 0;
  failures += strlen(mattex_version()) == 0;

  snprintf(model, sizeof model, "rm -rf '%s'", dir);
  if (system(model) != 0) return 2;
  printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
