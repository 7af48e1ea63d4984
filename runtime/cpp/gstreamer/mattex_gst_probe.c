/* What gst-launch-1.0 cannot do to the mattex element, for tests/runtime/cpp/test_gstreamer.py:
 *
 *   mattex_gst_probe PIPELINE [--capture-at N] [--flush-at N] [--latency] [--restart] [--yield]
 *
 * PIPELINE (gst-launch syntax) names its mattex element "m". --capture-at N emits the
 * capture-background action signal as frame N reaches it; --flush-at N holds frame N at the
 * element's sink pad and seeks back to the start (a flushing seek, which releases it), so the
 * stream cannot end before the seek; --latency prints the latency query's answer at the
 * element's source pad and upstream of it; --restart runs the pipeline to EOS, sets it to READY
 * and runs it again; --yield lowers the priority (nice 10) of every streaming thread but the one
 * that runs the element, as `mattex run` lowers its decode and encode threads', so that decoding
 * and encoding use the gaps inference leaves instead of preempting its threads. Prints "frames N"
 * (buffers that left the element; "frames-after-flush N": of them, after the seek) and exits 0 at EOS, or
 * prints "error: <message>" and exits 1 on an error message; "qos-dropped N": the frames the
 * element dropped as late, by its QoS messages; "seconds S" is the time from the
 * first frame reaching the element to the (first) EOS, "seconds-after-first" from the first frame
 * leaving it, for benchmarks/gstreamer.py. */
#include <gst/gst.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static GstElement* pipeline;
static GstElement* matter;
static GMainLoop* loop;
static int capture_at = -1, flush_at = -1, want_latency = 0, restart = 0, yield_to_element = 0;
static int frames_in = 0, frames_out = 0, failed = 0, runs = 0;
static int frames_held = 0, flush_requested = 0, frames_out_at_flush = -1;
static gulong hold_probe = 0; /* the blocking probe of --flush-at */
static gint64 first_frame_us = 0, first_out_us = 0, first_eos_us = 0;
static guint64 qos_dropped = 0;  /* frames the element dropped as late (its last QoS message) */

static gboolean flush_to_start(gpointer unused) {
  (void)unused;
  frames_out_at_flush = frames_out;
  if (gst_element_seek_simple(pipeline, GST_FORMAT_TIME, GST_SEEK_FLAG_FLUSH, 0)) {
    printf("flushed\n");
    return G_SOURCE_REMOVE;
  }
  printf("seek refused\n"); /* the held frame would wait for good: let it go, and fail the run */
  GstPad* sink = gst_element_get_static_pad(matter, "sink");
  gst_pad_remove_probe(sink, hold_probe);
  gst_object_unref(sink);
  failed = 1;
  g_main_loop_quit(loop);
  return G_SOURCE_REMOVE;
}

/* A blocking probe: frame flush_at waits at the sink pad until the flushing seek releases it
 * (flush-start unblocks a blocked pad). Seeking from the main loop while frames still flow would
 * race the end of the stream: an EOS handled first ends the run before the seek. */
static GstPadProbeReturn hold_for_flush(GstPad* pad, GstPadProbeInfo* info, gpointer unused) {
  (void)pad, (void)info, (void)unused;
  if (flush_requested || frames_held++ != flush_at) return GST_PAD_PROBE_PASS;
  flush_requested = 1;
  g_idle_add(flush_to_start, NULL);
  return GST_PAD_PROBE_OK; /* held */
}

static GstPadProbeReturn on_frame_in(GstPad* pad, GstPadProbeInfo* info, gpointer unused) {
  (void)pad, (void)info, (void)unused;
  if (frames_in == 0) first_frame_us = g_get_monotonic_time();
  if (frames_in == capture_at) g_signal_emit_by_name(matter, "capture-background");
  frames_in++;
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn on_frame_out(GstPad* pad, GstPadProbeInfo* info, gpointer unused) {
  (void)pad, (void)info, (void)unused;
  if (frames_out++ == 0) first_out_us = g_get_monotonic_time();
  return GST_PAD_PROBE_OK;
}

static void print_latency(void) {
  GstPad* src = gst_element_get_static_pad(matter, "src");
  GstPad* sink = gst_element_get_static_pad(matter, "sink");
  GstQuery* own = gst_query_new_latency();
  GstQuery* upstream = gst_query_new_latency();
  if (gst_pad_query(src, own) && gst_pad_peer_query(sink, upstream)) {
    gboolean live;
    GstClockTime min, max, upstream_min, upstream_max;
    gst_query_parse_latency(own, &live, &min, &max);
    gst_query_parse_latency(upstream, NULL, &upstream_min, &upstream_max);
    printf("latency live %d min %" G_GUINT64_FORMAT " upstream-min %" G_GUINT64_FORMAT "\n", live, min, upstream_min);
  } else {
    printf("latency query failed\n");
  }
  gst_query_unref(own);
  gst_query_unref(upstream);
  gst_object_unref(src);
  gst_object_unref(sink);
}

/* Called in the thread that starts (STREAM_STATUS ENTER is posted from it, synchronously). */
static GstBusSyncReply on_sync_message(GstBus* bus, GstMessage* message, gpointer unused) {
  (void)bus, (void)unused;
  if (GST_MESSAGE_TYPE(message) != GST_MESSAGE_STREAM_STATUS) return GST_BUS_PASS;
  GstStreamStatusType type;
  GstElement* owner;
  gst_message_parse_stream_status(message, &type, &owner);
  if (type != GST_STREAM_STATUS_TYPE_ENTER) return GST_BUS_PASS;
  GstPad* sink = gst_element_get_static_pad(matter, "sink");
  GstPad* peer = gst_pad_get_peer(sink);
  GstElement* feeding = peer ? gst_pad_get_parent_element(peer) : NULL;
  if (owner != feeding) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
  if (feeding) gst_object_unref(feeding);
  if (peer) gst_object_unref(peer);
  gst_object_unref(sink);
  return GST_BUS_PASS;
}

static gboolean on_message(GstBus* bus, GstMessage* message, gpointer unused) {
  (void)bus, (void)unused;
  switch (GST_MESSAGE_TYPE(message)) {
    case GST_MESSAGE_ERROR: {
      GError* error = NULL;
      gst_message_parse_error(message, &error, NULL);
      printf("error: %s\n", error->message);
      g_clear_error(&error);
      failed = 1;
      g_main_loop_quit(loop);
      break;
    }
    case GST_MESSAGE_EOS:
      if (++runs == 1) first_eos_us = g_get_monotonic_time();
      if (restart && runs == 1) {  /* READY closes the model, PLAYING opens it again */
        gst_element_set_state(pipeline, GST_STATE_READY);
        gst_element_set_state(pipeline, GST_STATE_PLAYING);
      } else {
        g_main_loop_quit(loop);
      }
      break;
    case GST_MESSAGE_ASYNC_DONE:
      if (want_latency && GST_MESSAGE_SRC(message) == GST_OBJECT(pipeline)) print_latency();
      break;
    case GST_MESSAGE_QOS:
      if (GST_MESSAGE_SRC(message) == GST_OBJECT(matter)) {
        GstFormat format;
        guint64 processed, dropped;
        gst_message_parse_qos_stats(message, &format, &processed, &dropped);
        qos_dropped = dropped;
      }
      break;
    case GST_MESSAGE_LATENCY:
      gst_bin_recalculate_latency(GST_BIN(pipeline));
      break;
    default:
      break;
  }
  return TRUE;
}

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  if (argc < 2) {
    fprintf(stderr, "usage: %s PIPELINE [--capture-at N] [--flush-at N] [--latency] [--restart] [--yield]\n", argv[0]);
    return 2;
  }
  for (int i = 2; i < argc; ++i) {
    if (!strcmp(argv[i], "--capture-at") && i + 1 < argc) capture_at = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--flush-at") && i + 1 < argc) flush_at = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--latency")) want_latency = 1;
    else if (!strcmp(argv[i], "--restart")) restart = 1;
    else if (!strcmp(argv[i], "--yield")) yield_to_element = 1;
    else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  GError* error = NULL;
  pipeline = gst_parse_launch(argv[1], &error);
  if (!pipeline || error) {
    printf("error: %s\n", error ? error->message : "no pipeline");
    return 1;
  }
  matter = gst_bin_get_by_name(GST_BIN(pipeline), "m");
  if (!matter) {
    printf("error: the pipeline has no element named m\n");
    return 1;
  }
  GstPad* sink = gst_element_get_static_pad(matter, "sink");
  GstPad* src = gst_element_get_static_pad(matter, "src");
  gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BUFFER, on_frame_in, NULL, NULL);
  gst_pad_add_probe(src, GST_PAD_PROBE_TYPE_BUFFER, on_frame_out, NULL, NULL);
  if (flush_at >= 0)
    hold_probe = gst_pad_add_probe(sink, GST_PAD_PROBE_TYPE_BLOCK | GST_PAD_PROBE_TYPE_BUFFER, hold_for_flush, NULL, NULL);
  gst_object_unref(sink);
  gst_object_unref(src);
  loop = g_main_loop_new(NULL, FALSE);
  GstBus* bus = gst_element_get_bus(pipeline);
  gst_bus_add_watch(bus, on_message, NULL);
  if (yield_to_element) gst_bus_set_sync_handler(bus, on_sync_message, NULL, NULL);
  gst_element_set_state(pipeline, GST_STATE_PLAYING);
  g_main_loop_run(loop);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  printf("frames %d\n", frames_out);
  if (frames_out_at_flush >= 0) printf("frames-after-flush %d\n", frames_out - frames_out_at_flush);
  printf("qos-dropped %" G_GUINT64_FORMAT "\n", qos_dropped);
  if (first_eos_us) {
    printf("seconds %.6f\n", (first_eos_us - first_frame_us) / 1e6);
    printf("seconds-after-first %.6f\n", (first_eos_us - first_out_us) / 1e6);
  }
  gst_bus_remove_watch(bus);
  gst_object_unref(bus);
  gst_object_unref(matter);
  gst_object_unref(pipeline);
  g_main_loop_unref(loop);
  gst_deinit();
  return failed;
}
