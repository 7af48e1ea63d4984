// The `mattex` GStreamer element: mattes each frame against a captured background (the plate)
// with mattex::Matter, inside a pipeline (docs/gstreamer.md).
//
//   ... ! videoconvert ! mattex model=m.onnx background=plate.png output=rgba ! compositor ...
//
// A GstVideoFilter (one frame in, one frame out): RGB, RGBA, BGR, BGRx, I420 or NV12 in, converted
// once to the packed RGB frames Matter::matteFrames takes; out RGBA (the foreground with its alpha),
// GRAY8 (the alpha) or RGB (composited over a colour or an image). The model opens on READY to
// PAUSED; the frame size is tried on the model at negotiation (a warm-up run, whose time answers
// the latency query), so a size the file cannot take fails there with the runtime's reason. Every
// failure is an element error whose text is mattex's typed message ("ModelFileError: ...").
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>
#include <gst/video/video.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "mattex/matter.hpp"
#ifdef MATTEX_WITH_ALIGN
#include "plate_aligner.hpp"
#endif

GST_DEBUG_CATEGORY_STATIC(gst_mattex_debug);
#define GST_CAT_DEFAULT gst_mattex_debug

namespace {

enum Output { OUTPUT_RGBA = 0, OUTPUT_ALPHA = 1, OUTPUT_COMPOSITE = 2 };

const char* kInputFormats = "{ RGB, RGBA, BGR, BGRx, I420, NV12 }";
const char* kOutputFormats = "{ RGBA, GRAY8, RGB }";
const uint8_t kGreen[3] = {120, 255, 155};  // mattex.runtime.media.GREEN: the reference's composite colour
const guint64 kDecodeTimeout = 10 * GST_SECOND;
const int kLatencyWindow = 30;  // frames: a second of a 30 fps camera

const char* outputFormat(int output) {
  return output == OUTPUT_RGBA ? "RGBA" : output == OUTPUT_ALPHA ? "GRAY8" : "RGB";
}

// A packed RGB image, rows contiguous (what Matter::matteFrames takes).
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  bool empty() const { return rgb.empty(); }
};

#ifdef MATTEX_WITH_ALIGN
// align=true: the plate brought to each frame (camera motion, exposure) by the clean-plate aligner
// of `mattex run --align` (runtime/cpp/align), with the previous frame's alpha as the subject to
// leave out. One OpenCV thread, as mattex run gives it: the model has the cores.
struct Aligner {
  std::unique_ptr<mattex::align::PlateAligner> aligner;
  cv::Mat plate;                  // the last frame's aligned plate
  bool previousAlpha = false;     // the alpha buffer holds the previous frame's matte
  void reset(const Image& background) {  // a new plate, a restart or a flush: the motion so far is gone
    // OpenCV's pool is the process's, and rebuilding it while another thread uses it can crash
    // (TBB, Debian's OpenCV): set once per process, never again at a reset in a streaming thread
    static std::once_flag oneThread;
    std::call_once(oneThread, [] { cv::setNumThreads(1); });
    mattex::align::AlignOptions options;
    options.threads = -1;  // as they are: one, above
    options.inOrder = true;
    cv::Mat rgb(background.height, background.width, CV_8UC3, const_cast<uint8_t*>(background.rgb.data()));
    aligner = std::make_unique<mattex::align::PlateAligner>(rgb, options);
    previousAlpha = false;
  }
  void clear() {
    aligner.reset();
    previousAlpha = false;
  }
  bool ready() const { return aligner != nullptr; }
  const uint8_t* align(std::vector<uint8_t>& frame, std::vector<float>& alpha, int height, int width) {
    const cv::Mat previous = previousAlpha ? cv::Mat(height, width, CV_32F, alpha.data()) : cv::Mat();
    plate = aligner->align(cv::Mat(height, width, CV_8UC3, frame.data()), previous);
    return plate.data;
  }
};
#else
struct Aligner {  // built without OpenCV: align=true is refused at start
  bool previousAlpha = false;
  void reset(const Image&) {}
  void clear() {}
  bool ready() const { return false; }
  const uint8_t* align(std::vector<uint8_t>&, std::vector<float>&, int, int) { return nullptr; }
};
#endif

// Properties (under the object lock) and what start()/set_info() made of them (streaming thread).
struct State {
  std::string model, background, composite = "green", backend;
  int threads = 0;
  int output = OUTPUT_RGBA;
  bool align = false;

  bool aligning = false;                  // align, as start() read it
  Aligner aligner;                        // aligning: made with the plate
  std::atomic<bool> flushed{false};       // a flush: the aligner starts again

  std::unique_ptr<mattex::Matter> matter;
  Image plate;            // the background: the file's, or a captured frame
  Image compositeImage;   // composite=<image file>
  uint8_t compositeColour[3] = {kGreen[0], kGreen[1], kGreen[2]};  // composite=green or white
  std::atomic<bool> capture{false};  // capture-background: the next frame becomes the plate
  GstVideoConverter* converter = nullptr;  // input -> packed RGB, when the input is not RGB
  GstVideoInfo rgbInfo;
  GstBuffer* rgbBuffer = nullptr;
  std::vector<uint8_t> frame;             // the current frame, packed RGB
  std::vector<float> pha, fgr;
  std::atomic<GstClockTime> latency{0};   // reported: the slowest inference of a recent window
  int windowFrames = 0;
  GstClockTime windowSlowest = 0;
};

// [0, 1] -> 0..255 rounded, as mattex run writes its images (runtime/frames.py _to_uint8).
inline uint8_t toUint8(float x) {
  float scaled = x * 255.0f;
  scaled = std::min(std::max(scaled, 0.0f), 255.0f);
  return static_cast<uint8_t>(scaled + 0.5f);
}

// Pillow's Image.composite (paste with an L mask): fg * a + bg * (255 - a), divided by 255 and
// rounded the way Pillow does, so `output=composite` equals mattex run's com.
inline uint8_t blend(uint8_t fg, uint8_t bg, uint8_t alpha) {
  unsigned tmp = fg * alpha + bg * (255u - alpha) + 128u;
  return static_cast<uint8_t>(((tmp >> 8) + tmp) >> 8);
}

bool isFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// An image file decoded by GStreamer itself (decodebin: PNG, JPEG, ...) to packed RGB at its own
// size. Returns "" or what went wrong.
std::string decodeImage(const std::string& path, Image& image) {
  if (!isFile(path)) return "no such file";
  GError* error = nullptr;
  GstElement* pipeline = gst_parse_launch(
      "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false", &error);
  if (!pipeline) {
    std::string message = error ? error->message : "could not make a decoding pipeline";
    g_clear_error(&error);
    return message;
  }
  g_clear_error(&error);  // a warning (a missing plugin shows at PAUSED)
  GstElement* file = gst_bin_get_by_name(GST_BIN(pipeline), "file");
  g_object_set(file, "location", path.c_str(), nullptr);
  gst_object_unref(file);
  std::string problem;
  gst_element_set_state(pipeline, GST_STATE_PAUSED);
  GstBus* bus = gst_element_get_bus(pipeline);
  GstMessage* message = gst_bus_timed_pop_filtered(
      bus, kDecodeTimeout, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_ASYNC_DONE));
  if (!message) {
    problem = "decoding took over 10 s";
  } else if (GST_MESSAGE_TYPE(message) == GST_MESSAGE_ERROR) {
    GError* decodeError = nullptr;
    gst_message_parse_error(message, &decodeError, nullptr);
    problem = std::string("not an image GStreamer can decode (") + decodeError->message + ")";
    g_clear_error(&decodeError);
  } else {
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
    GstSample* sample = gst_app_sink_pull_preroll(GST_APP_SINK(sink));
    GstVideoInfo info;
    GstVideoFrame frame;
    if (!sample || !gst_video_info_from_caps(&info, gst_sample_get_caps(sample)) ||
        !gst_video_frame_map(&frame, &info, gst_sample_get_buffer(sample), GST_MAP_READ)) {
      problem = "decoded to no frame";
    } else {
      image.width = GST_VIDEO_INFO_WIDTH(&info);
      image.height = GST_VIDEO_INFO_HEIGHT(&info);
      image.rgb.resize(static_cast<size_t>(image.width) * image.height * 3);
      const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(&frame, 0);
      const auto* pixels = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(&frame, 0));
      for (int y = 0; y < image.height; ++y) {
        std::copy_n(pixels + static_cast<size_t>(y) * stride, image.width * 3, &image.rgb[size_t(y) * image.width * 3]);
      }
      gst_video_frame_unmap(&frame);
    }
    if (sample) gst_sample_unref(sample);
    gst_object_unref(sink);
  }
  if (message) gst_message_unref(message);
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return problem;
}

}  // namespace

G_BEGIN_DECLS
#define GST_TYPE_MATTEX (gst_mattex_get_type())
G_DECLARE_FINAL_TYPE(GstMattex, gst_mattex, GST, MATTEX, GstVideoFilter)
struct _GstMattex {
  GstVideoFilter parent;
  State* state;
};
G_END_DECLS

G_DEFINE_TYPE(GstMattex, gst_mattex, GST_TYPE_VIDEO_FILTER)

enum { PROP_0, PROP_MODEL, PROP_BACKGROUND, PROP_OUTPUT, PROP_COMPOSITE, PROP_BACKEND, PROP_THREADS, PROP_ALIGN };
enum { SIGNAL_CAPTURE_BACKGROUND, N_SIGNALS };
static guint signals[N_SIGNALS];

#define GST_TYPE_MATTEX_OUTPUT (gst_mattex_output_get_type())
static GType gst_mattex_output_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {OUTPUT_RGBA, "RGBA: the foreground with its alpha (for compositor or a keyer)", "rgba"},
      {OUTPUT_ALPHA, "GRAY8: the alpha alone", "alpha"},
      {OUTPUT_COMPOSITE, "RGB: the foreground over the composite property's colour or image", "composite"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) {
    GType registered = g_enum_register_static("GstMattexOutput", values);
    g_once_init_leave(&type, registered);
  }
  return type;
}

// Post mattex's typed message as the element's error ("ModelFileError: ... m.onnx ...").
static void post_error(GstMattex* self, const std::string& text) {
  GST_ELEMENT_ERROR_WITH_DETAILS(self, RESOURCE, FAILED, ("%s", text.c_str()), (nullptr),
                                 ("mattex-error", G_TYPE_STRING, text.c_str(), nullptr));
}

static std::string typed(const mattex::Error& e) { return std::string(e.kind()) + ": " + e.what(); }

static void gst_mattex_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstMattex* self = GST_MATTEX(object);
  State& s = *self->state;
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: s.model = g_value_get_string(value) ? g_value_get_string(value) : ""; break;
    case PROP_BACKGROUND: s.background = g_value_get_string(value) ? g_value_get_string(value) : ""; break;
    case PROP_COMPOSITE: s.composite = g_value_get_string(value) ? g_value_get_string(value) : "green"; break;
    case PROP_BACKEND: s.backend = g_value_get_string(value) ? g_value_get_string(value) : ""; break;
    case PROP_THREADS: s.threads = g_value_get_int(value); break;
    case PROP_OUTPUT: s.output = g_value_get_enum(value); break;
    case PROP_ALIGN: s.align = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
  if (id == PROP_OUTPUT) gst_base_transform_reconfigure_src(GST_BASE_TRANSFORM(self));
}

static void gst_mattex_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstMattex* self = GST_MATTEX(object);
  State& s = *self->state;
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: g_value_set_string(value, s.model.c_str()); break;
    case PROP_BACKGROUND: g_value_set_string(value, s.background.c_str()); break;
    case PROP_COMPOSITE: g_value_set_string(value, s.composite.c_str()); break;
    case PROP_BACKEND: g_value_set_string(value, s.backend.c_str()); break;
    case PROP_THREADS: g_value_set_int(value, s.threads); break;
    case PROP_OUTPUT: g_value_set_enum(value, s.output); break;
    case PROP_ALIGN: g_value_set_boolean(value, s.align); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_mattex_capture_background(GstMattex* self) {
  GST_INFO_OBJECT(self, "the next frame becomes the background");
  self->state->capture = true;
}

static void gst_mattex_init(GstMattex* self) {
  self->state = new State();
  gst_video_info_init(&self->state->rgbInfo);
  gst_base_transform_set_qos_enabled(GST_BASE_TRANSFORM(self), TRUE);  // late frames dropped
}

static void release_frames(State& s) {
  if (s.converter) gst_video_converter_free(s.converter);
  s.converter = nullptr;
  if (s.rgbBuffer) gst_buffer_unref(s.rgbBuffer);
  s.rgbBuffer = nullptr;
}

static void gst_mattex_finalize(GObject* object) {
  GstMattex* self = GST_MATTEX(object);
  release_frames(*self->state);
  delete self->state;
  G_OBJECT_CLASS(gst_mattex_parent_class)->finalize(object);
}

// READY -> PAUSED: the model, the background and the composite image, or an element error.
static gboolean gst_mattex_start(GstBaseTransform* trans) {
  GstMattex* self = GST_MATTEX(trans);
  State& s = *self->state;
  GST_OBJECT_LOCK(self);
  std::string model = s.model, background = s.background, composite = s.composite;
  int output = s.output;
  const bool align = s.align;
  mattex::Options options;
  options.backend = s.backend;
  options.threads = s.threads;
  GST_OBJECT_UNLOCK(self);
  if (model.empty()) {
    post_error(self, "ConfigError: the mattex element needs its `model` property (an .onnx or .engine file)");
    return FALSE;
  }
#ifndef MATTEX_WITH_ALIGN
  if (align) {
    post_error(self, "ExtraNotInstalledError: align=true needs the clean-plate aligner, which this mattex element was "
                     "built without (OpenCV 4 was not found): apt-get install libopencv-dev, then configure "
                     "runtime/cpp with -DMATTEX_WITH_ALIGN=ON and rebuild (docs/gstreamer.md)");
    return FALSE;
  }
#endif
  try {
    s.matter = mattex::Matter::open(model, options);
  } catch (const mattex::Error& e) {
    post_error(self, typed(e));
    return FALSE;
  }
  s.plate = Image();
  if (!background.empty()) {
    std::string problem = decodeImage(background, s.plate);
    if (!problem.empty()) {
      post_error(self, "MediaError: background " + background + ": " + problem);
      return FALSE;
    }
  }
  s.aligning = align;
  s.aligner.clear();
  if (align && !s.plate.empty()) {
    try {
      s.aligner.reset(s.plate);
    } catch (const mattex::Error& e) {
      post_error(self, typed(e));
      return FALSE;
    } catch (const std::exception& e) {  // OpenCV's cv::Exception, memory
      post_error(self, std::string("InternalError: the clean-plate aligner failed: ") + e.what());
      return FALSE;
    }
  }
  s.flushed = false;
  s.compositeImage = Image();
  const uint8_t white[3] = {255, 255, 255};
  std::copy_n(composite == "white" ? white : kGreen, 3, s.compositeColour);
  if (output == OUTPUT_COMPOSITE && composite != "green" && composite != "white") {
    std::string problem = decodeImage(composite, s.compositeImage);
    if (!problem.empty()) {
      post_error(self, "MediaError: composite image " + composite + " (not green or white): " + problem);
      return FALSE;
    }
  }
  s.latency = 0;
  return TRUE;
}

static gboolean gst_mattex_stop(GstBaseTransform* trans) {
  State& s = *GST_MATTEX(trans)->state;
  release_frames(s);
  s.matter.reset();
  s.aligner.clear();
  s.capture = false;
  return TRUE;
}

// A flush (a seek): the frames after it may show another moment, so the aligner starts again from
// the plate, without the previous alpha.
static gboolean gst_mattex_sink_event(GstBaseTransform* trans, GstEvent* event) {
  if (GST_EVENT_TYPE(event) == GST_EVENT_FLUSH_STOP) GST_MATTEX(trans)->state->flushed = true;
  return GST_BASE_TRANSFORM_CLASS(gst_mattex_parent_class)->sink_event(trans, event);
}

// Input caps -> output caps (the output property's format) and back (every input format); size,
// frame rate and aspect pass through.
static GstCaps* gst_mattex_transform_caps(GstBaseTransform* trans, GstPadDirection direction, GstCaps* caps,
                                          GstCaps* filter) {
  GstMattex* self = GST_MATTEX(trans);
  GST_OBJECT_LOCK(self);
  int output = self->state->output;
  GST_OBJECT_UNLOCK(self);
  GstCaps* result = gst_caps_new_empty();
  for (guint i = 0; i < gst_caps_get_size(caps); ++i) {
    GstStructure* structure = gst_structure_copy(gst_caps_get_structure(caps, i));
    gst_structure_remove_fields(structure, "format", "colorimetry", "chroma-site", nullptr);
    GValue formats = G_VALUE_INIT;
    if (direction == GST_PAD_SINK) {
      g_value_init(&formats, G_TYPE_STRING);
      g_value_set_string(&formats, outputFormat(output));
    } else {
      GstCaps* all = gst_caps_from_string((std::string("video/x-raw,format=") + kInputFormats).c_str());
      g_value_init(&formats, GST_TYPE_LIST);
      g_value_copy(gst_structure_get_value(gst_caps_get_structure(all, 0), "format"), &formats);
      gst_caps_unref(all);
    }
    gst_structure_take_value(structure, "format", &formats);
    result = gst_caps_merge_structure(result, structure);
  }
  if (filter) {
    GstCaps* intersected = gst_caps_intersect_full(filter, result, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref(result);
    result = intersected;
  }
  return result;
}

// Negotiated: the converter to RGB, the plate's size checked, and one warm-up run at this size:
// the runtime's own check of the size (its InputShapeError) and the inference time for latency.
static gboolean gst_mattex_set_info(GstVideoFilter* filter, GstCaps*, GstVideoInfo* in, GstCaps*, GstVideoInfo* out) {
  GstMattex* self = GST_MATTEX(filter);
  State& s = *self->state;
  const int width = GST_VIDEO_INFO_WIDTH(in), height = GST_VIDEO_INFO_HEIGHT(in);
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  release_frames(s);
  if (!s.plate.empty() && (s.plate.width != width || s.plate.height != height)) {
    GST_OBJECT_LOCK(self);
    std::string background = s.background;
    GST_OBJECT_UNLOCK(self);
    const std::string plate = background.empty() ? "the captured background" : "background " + background;
    post_error(self, "ConfigError: " + plate + " is " + std::to_string(s.plate.width) + "x" +
                               std::to_string(s.plate.height) + ", the frames are " + size +
                               " (width x height): give a background of the frames' size");
    return FALSE;
  }
  if (!s.compositeImage.empty() && (s.compositeImage.width != width || s.compositeImage.height != height)) {
    post_error(self, "ConfigError: the composite image is " + std::to_string(s.compositeImage.width) + "x" +
                               std::to_string(s.compositeImage.height) + ", the frames are " + size);
    return FALSE;
  }
  const size_t pixels = static_cast<size_t>(width) * height;
  s.frame.assign(pixels * 3, 0);
  s.pha.assign(pixels, 0.0f);
  s.fgr.assign(pixels * 3, 0.0f);
  try {
    // twice: a backend's first run at a new size prepares it (OpenVINO reshapes), the second is
    // what a frame costs
    for (int run = 0; run < 2; ++run) {
      gint64 started = g_get_monotonic_time();
      s.matter->matteFrames(s.frame.data(), s.frame.data(), 1, height, width, s.pha.data(), s.fgr.data());
      s.latency = static_cast<GstClockTime>(g_get_monotonic_time() - started) * GST_USECOND;
    }
    s.windowFrames = 0;
    s.windowSlowest = 0;
    s.aligner.previousAlpha = false;  // the warm-up's alpha is no frame's
  } catch (const mattex::Error& e) {
    post_error(self, typed(e) + " (caps " + size + " " + gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(in)) +
                               " refused at negotiation)");
    return FALSE;
  }
  if (GST_VIDEO_INFO_FORMAT(in) != GST_VIDEO_FORMAT_RGB) {
    gst_video_info_set_format(&s.rgbInfo, GST_VIDEO_FORMAT_RGB, width, height);
    // the converter changes only the format: rate and aspect as they come
    GST_VIDEO_INFO_FPS_N(&s.rgbInfo) = GST_VIDEO_INFO_FPS_N(in);
    GST_VIDEO_INFO_FPS_D(&s.rgbInfo) = GST_VIDEO_INFO_FPS_D(in);
    GST_VIDEO_INFO_PAR_N(&s.rgbInfo) = GST_VIDEO_INFO_PAR_N(in);
    GST_VIDEO_INFO_PAR_D(&s.rgbInfo) = GST_VIDEO_INFO_PAR_D(in);
    GstStructure* config = gst_structure_new("config", GST_VIDEO_CONVERTER_OPT_THREADS, G_TYPE_UINT, 1u, nullptr);
    GstVideoInfo input = *in;
    s.converter = gst_video_converter_new(&input, &s.rgbInfo, config);
    s.rgbBuffer = gst_buffer_new_allocate(nullptr, GST_VIDEO_INFO_SIZE(&s.rgbInfo), nullptr);
    if (!s.converter || !s.rgbBuffer) {
      post_error(self, std::string("ConfigError: no conversion from ") +
                                 gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(in)) + " to RGB");
      return FALSE;
    }
  }
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  (void)out;
  return TRUE;
}

// The frame, as packed RGB rows, into s.frame (converted when the input is not RGB).
static bool read_frame(State& s, GstVideoFrame* in) {
  GstVideoFrame rgb;
  GstVideoFrame* source = in;
  if (s.converter) {
    if (!gst_video_frame_map(&rgb, &s.rgbInfo, s.rgbBuffer, GST_MAP_WRITE)) return false;
    gst_video_converter_frame(s.converter, in, &rgb);
    source = &rgb;
  }
  const int width = GST_VIDEO_FRAME_WIDTH(source), height = GST_VIDEO_FRAME_HEIGHT(source);
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(source, 0);
  const auto* pixels = static_cast<const uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(source, 0));
  for (int y = 0; y < height; ++y) {
    std::copy_n(pixels + static_cast<size_t>(y) * stride, width * 3, &s.frame[size_t(y) * width * 3]);
  }
  if (s.converter) gst_video_frame_unmap(&rgb);
  return true;
}

static void write_output(State& s, int output, GstVideoFrame* out) {
  const int width = GST_VIDEO_FRAME_WIDTH(out), height = GST_VIDEO_FRAME_HEIGHT(out);
  const int stride = GST_VIDEO_FRAME_PLANE_STRIDE(out, 0);
  auto* rows = static_cast<uint8_t*>(GST_VIDEO_FRAME_PLANE_DATA(out, 0));
  const size_t plane = static_cast<size_t>(width) * height;
  for (int y = 0; y < height; ++y) {
    uint8_t* row = rows + static_cast<size_t>(y) * stride;
    for (int x = 0; x < width; ++x) {
      const size_t i = static_cast<size_t>(y) * width + x;
      const uint8_t alpha = toUint8(s.pha[i]);
      if (output == OUTPUT_ALPHA) {
        row[x] = alpha;
        continue;
      }
      uint8_t fgr[3] = {toUint8(s.fgr[i]), toUint8(s.fgr[plane + i]), toUint8(s.fgr[2 * plane + i])};
      if (output == OUTPUT_RGBA) {
        std::copy_n(fgr, 3, row + 4 * x);
        row[4 * x + 3] = alpha;
      } else {
        const uint8_t* bg = s.compositeImage.empty() ? nullptr : &s.compositeImage.rgb[3 * i];
        for (int c = 0; c < 3; ++c) {
          const uint8_t colour = bg ? bg[c] : s.compositeColour[c];
          row[3 * x + c] = blend(fgr[c], colour, alpha);
        }
      }
    }
  }
}

// The latency reported is the slowest inference of the last kLatencyWindow frames: a change of
// over a quarter either way is posted, so the pipeline asks again (a frame far slower than the
// report at once: late frames would pile up until the window ends).
static void update_latency(GstMattex* self, GstClockTime took) {
  State& s = *self->state;
  s.windowSlowest = std::max(s.windowSlowest, took);
  const GstClockTime reported = s.latency;
  const bool windowDone = ++s.windowFrames == kLatencyWindow;
  const bool far = took > 2 * reported;
  if (!windowDone && !far) return;
  const GstClockTime slowest = s.windowSlowest;
  if (windowDone) {
    s.windowFrames = 0;
    s.windowSlowest = 0;
  }
  if (slowest > reported + reported / 4 || (windowDone && slowest < reported - reported / 4)) {
    s.latency = slowest;
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  }
}

static GstFlowReturn gst_mattex_transform_frame(GstVideoFilter* filter, GstVideoFrame* in, GstVideoFrame* out) {
  GstMattex* self = GST_MATTEX(filter);
  State& s = *self->state;
  GST_OBJECT_LOCK(self);
  const int output = s.output;
  GST_OBJECT_UNLOCK(self);
  if (!read_frame(s, in)) {
    post_error(self, "ResourceError: could not map a frame buffer for the conversion to RGB");
    return GST_FLOW_ERROR;
  }
  const int width = GST_VIDEO_FRAME_WIDTH(in), height = GST_VIDEO_FRAME_HEIGHT(in);
  const bool captured = s.capture.exchange(false);
  if (captured) {
    s.plate = Image{width, height, s.frame};
    GST_INFO_OBJECT(self, "captured the background");
  }
  const bool flushed = s.flushed.exchange(false);
  if (s.aligning && !s.plate.empty() && (captured || flushed || !s.aligner.ready())) {
    try {
      s.aligner.reset(s.plate);
    } catch (const mattex::Error& e) {
      post_error(self, typed(e));
      return GST_FLOW_ERROR;
    } catch (const std::exception& e) {
      post_error(self, std::string("InternalError: the clean-plate aligner failed: ") + e.what());
      return GST_FLOW_ERROR;
    }
  }
  if (s.plate.empty()) {  // no plate yet (capture-background will give one): all foreground
    std::fill(s.pha.begin(), s.pha.end(), 1.0f);
    const size_t plane = static_cast<size_t>(width) * height;
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 3; ++c) s.fgr[c * plane + i] = s.frame[3 * i + c] / 255.0f;
    }
  } else {
    try {
      gint64 started = g_get_monotonic_time();
      const uint8_t* plate = s.aligning ? s.aligner.align(s.frame, s.pha, height, width) : s.plate.rgb.data();
      s.matter->matteFrames(s.frame.data(), plate, 1, height, width, s.pha.data(), s.fgr.data());
      s.aligner.previousAlpha = true;
      update_latency(self, static_cast<GstClockTime>(g_get_monotonic_time() - started) * GST_USECOND);
    } catch (const mattex::Error& e) {
      post_error(self, typed(e));
      return GST_FLOW_ERROR;
    } catch (const std::exception& e) {  // the aligner's OpenCV (cv::Exception), memory
      post_error(self, std::string("InternalError: the clean-plate aligner failed: ") + e.what());
      return GST_FLOW_ERROR;
    }
  }
  write_output(s, output, out);
  return GST_FLOW_OK;
}

// The latency query: upstream's, plus the slowest inference so far.
static gboolean gst_mattex_query(GstBaseTransform* trans, GstPadDirection direction, GstQuery* query) {
  if (!GST_BASE_TRANSFORM_CLASS(gst_mattex_parent_class)->query(trans, direction, query)) return FALSE;
  if (direction == GST_PAD_SRC && GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
    gboolean live;
    GstClockTime min, max;
    gst_query_parse_latency(query, &live, &min, &max);
    const GstClockTime own = GST_MATTEX(trans)->state->latency;
    gst_query_set_latency(query, live, min + own, GST_CLOCK_TIME_IS_VALID(max) ? max + own : max);
    GST_DEBUG_OBJECT(trans, "latency: upstream %" GST_TIME_FORMAT " + inference %" GST_TIME_FORMAT,
                     GST_TIME_ARGS(min), GST_TIME_ARGS(own));
  }
  return TRUE;
}

static void gst_mattex_class_init(GstMattexClass* klass) {
  GObjectClass* object = G_OBJECT_CLASS(klass);
  GstElementClass* element = GST_ELEMENT_CLASS(klass);
  GstBaseTransformClass* trans = GST_BASE_TRANSFORM_CLASS(klass);
  GstVideoFilterClass* video = GST_VIDEO_FILTER_CLASS(klass);
  object->set_property = gst_mattex_set_property;
  object->get_property = gst_mattex_get_property;
  object->finalize = gst_mattex_finalize;

  const auto flags = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  g_object_class_install_property(
      object, PROP_MODEL,
      g_param_spec_string("model", "Model", "The mattex export: an .onnx (OpenVINO) or an .engine (TensorRT)", "", flags));
  g_object_class_install_property(
      object, PROP_BACKGROUND,
      g_param_spec_string("background", "Background",
                          "The captured background (the plate), an image file of the frames' size; empty: none until "
                          "capture-background (frames pass as all foreground until then)",
                          "", flags));
  g_object_class_install_property(
      object, PROP_OUTPUT,
      g_param_spec_enum("output", "Output", "What leaves the element", GST_TYPE_MATTEX_OUTPUT, OUTPUT_RGBA, flags));
  g_object_class_install_property(
      object, PROP_COMPOSITE,
      g_param_spec_string("composite", "Composite",
                          "output=composite: green (the reference's), white, or an image file of the frames' size",
                          "green", flags));
  g_object_class_install_property(
      object, PROP_BACKEND,
      g_param_spec_string("backend", "Backend", "openvino, tensorrt or tensorrt-rtx; empty: by the file", "", flags));
  g_object_class_install_property(
      object, PROP_THREADS,
      g_param_spec_int("threads", "Threads",
                       "CPU threads (OpenVINO); 0: MATTEX_THREADS, else one per core; at most the runtime's maximum",
                       0, G_MAXINT, 0, flags));
  g_object_class_install_property(
      object, PROP_ALIGN,
      g_param_spec_boolean("align", "Align",
                           "Bring the plate to each frame first (a handheld camera, drifting exposure), as mattex run "
                           "--align does: a homography and per-channel gain and offset, the previous frame's alpha "
                           "left out; starts again on capture-background, a flush or a restart. Needs the element "
                           "built with OpenCV (MATTEX_WITH_ALIGN)",
                           FALSE, flags));
  signals[SIGNAL_CAPTURE_BACKGROUND] = g_signal_new_class_handler(
      "capture-background", G_TYPE_FROM_CLASS(klass), static_cast<GSignalFlags>(G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION),
      G_CALLBACK(gst_mattex_capture_background), nullptr, nullptr, nullptr, G_TYPE_NONE, 0);

  gst_element_class_set_static_metadata(element, "mattex", "Filter/Effect/Video",
                                        "Background matting (BackgroundMattingV2) against a captured background",
                                        "mattex");
  GstCaps* sink = gst_caps_from_string((std::string("video/x-raw, format=") + kInputFormats +
                                        ", width=[4, 32768], height=[4, 32768], framerate=[0/1, 2147483647/1]")
                                           .c_str());
  GstCaps* src = gst_caps_from_string((std::string("video/x-raw, format=") + kOutputFormats +
                                       ", width=[4, 32768], height=[4, 32768], framerate=[0/1, 2147483647/1]")
                                          .c_str());
  gst_element_class_add_pad_template(element, gst_pad_template_new("sink", GST_PAD_SINK, GST_PAD_ALWAYS, sink));
  gst_element_class_add_pad_template(element, gst_pad_template_new("src", GST_PAD_SRC, GST_PAD_ALWAYS, src));
  gst_caps_unref(sink);
  gst_caps_unref(src);

  trans->start = gst_mattex_start;
  trans->stop = gst_mattex_stop;
  trans->transform_caps = gst_mattex_transform_caps;
  trans->query = gst_mattex_query;
  trans->sink_event = gst_mattex_sink_event;
  trans->passthrough_on_same_caps = FALSE;
  video->set_info = gst_mattex_set_info;
  video->transform_frame = gst_mattex_transform_frame;
}

static gboolean plugin_init(GstPlugin* plugin) {
  GST_DEBUG_CATEGORY_INIT(gst_mattex_debug, "mattex", 0, "mattex background matting");
  return gst_element_register(plugin, "mattex", GST_RANK_NONE, GST_TYPE_MATTEX);
}

#define PACKAGE "mattex"
GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, mattex, "Background matting with mattex exports", plugin_init,
                  MATTEX_VERSION, "MIT/X11", "mattex", "mattex: runtime/cpp/gstreamer")
