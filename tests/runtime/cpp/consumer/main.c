/* consumer_c MODEL: the same frame as main.cpp through the C API. */
#include <mattex/mattex.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  enum { H = 64, W = 64 };
  static uint8_t src[H * W * 3], bgr[H * W * 3];
  static float pha[H * W], fgr[3 * H * W];
  if (argc != 2) return 2;
  memset(bgr, 100, sizeof bgr);
  memcpy(src, bgr, sizeof src);
  for (int y = 16; y < 48; ++y)
    for (int x = 16; x < 48; ++x) memset(&src[(y * W + x) * 3], 220, 3);
  mattex_matter* matter = NULL;
  mattex_status status = mattex_open(argv[1], NULL, &matter);
  if (status == MATTEX_OK) {
    status = mattex_matte_frames(matter, src, bgr, sizeof src, 1, H, W, pha, H * W, fgr, 3 * H * W);
  }
  if (status != MATTEX_OK) {
    printf("%s: %s\n", mattex_status_name(status), mattex_last_error());
    mattex_close(matter);
    return 1;
  }
  double sum = 0;
  for (int i = 0; i < H * W; ++i) sum += pha[i];
  printf("%s %.9f\n", mattex_version(), sum / (H * W));
  mattex_close(matter);
  return 0;
}
