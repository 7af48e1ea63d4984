// Matte a video against its captured background and write the composite: the C++ counterpart of
// `mattex run MODEL clip.mp4 background.png --out matted` (its com.mp4).
//
//   matte_video bgm_mobilenetv2_hd_fp32.onnx clip.mp4 background.png com.mp4 [BATCH]
//
// FFmpeg decodes the video into RGB frames, Matter::matteFrames mattes BATCH of them at a time
// (default 4) and the foreground, on the reference's green, is encoded with H.264 (MPEG-4 Part 2
// where FFmpeg has no libx264). The file is written to a temporary name and renamed when complete;
// Ctrl-C or SIGTERM stops decoding and keeps the frames already matted, as mattex run does.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mattex/matter.hpp"
#include "png_io.hpp"

namespace {

volatile std::sig_atomic_t stopRequested = 0;
void requestStop(int) { stopRequested = 1; }

std::string avError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

void check(int code, const std::string& what) {
  if (code < 0) throw std::runtime_error(what + ": " + avError(code));
}

struct Deleters {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
  void operator()(AVPacket* p) const { av_packet_free(&p); }
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleters>;

Owned<AVFrame> newFrame() {
  Owned<AVFrame> frame(av_frame_alloc());
  if (!frame) throw std::bad_alloc();
  return frame;
}

// An RGB24 frame with FFmpeg's own alignment and padding: swscale's SIMD paths read and write past
// the last pixel of a row, so it never sees an Image's tightly packed buffer directly.
Owned<AVFrame> newRgbFrame(int width, int height) {
  Owned<AVFrame> frame = newFrame();
  frame->format = AV_PIX_FMT_RGB24;
  frame->width = width;
  frame->height = height;
  check(av_frame_get_buffer(frame.get(), 0), "out of memory");
  return frame;
}

// Frames of a video's best video stream as (H, W, 3) RGB images.
class Decoder {
 public:
  explicit Decoder(const std::string& path) : path_(path) {
    check(avformat_open_input(&format_, path.c_str(), nullptr, nullptr), "cannot open " + path);
    check(avformat_find_stream_info(format_, nullptr), path);
    const AVCodec* codec = nullptr;
    stream_ = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    check(stream_, path + " has no video stream");
    codec_.reset(avcodec_alloc_context3(codec));
    check(avcodec_parameters_to_context(codec_.get(), format_->streams[stream_]->codecpar), path);
    check(avcodec_open2(codec_.get(), codec, nullptr), "cannot decode " + path);
  }
  ~Decoder() {
    sws_freeContext(scale_);
    avformat_close_input(&format_);
  }

  int width() const { return codec_->width; }
  int height() const { return codec_->height; }
  AVRational frameRate() const {
    const AVRational rate = av_guess_frame_rate(format_, format_->streams[stream_], nullptr);
    return rate.num > 0 ? rate : AVRational{25, 1};
  }

  // The next frame, or false at the end of the video.
  bool next(example::Image& rgb) {
    while (true) {
      const int received = avcodec_receive_frame(codec_.get(), frame_.get());
      if (received == 0) return toRgb(rgb);
      if (received == AVERROR_EOF) return false;
      if (received != AVERROR(EAGAIN)) check(received, "cannot decode " + path_);
      const int read = av_read_frame(format_, packet_.get());
      if (read == AVERROR_EOF) {
        check(avcodec_send_packet(codec_.get(), nullptr), path_);  // drain the decoder
        continue;
      }
      check(read, "cannot read " + path_);
      if (packet_->stream_index == stream_) check(avcodec_send_packet(codec_.get(), packet_.get()), path_);
      av_packet_unref(packet_.get());
    }
  }

 private:
  bool toRgb(example::Image& rgb) {
    const int width = frame_->width, height = frame_->height;
    scale_ = sws_getCachedContext(scale_, width, height, AVPixelFormat(frame_->format), width, height,
                                  AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
    if (!scale_) throw std::runtime_error(path_ + ": cannot convert its frames to RGB");
    if (!rgbFrame_ || rgbFrame_->width != width || rgbFrame_->height != height) rgbFrame_ = newRgbFrame(width, height);
    sws_scale(scale_, frame_->data, frame_->linesize, 0, height, rgbFrame_->data, rgbFrame_->linesize);
    av_frame_unref(frame_.get());
    rgb = example::Image{height, width, 3, std::vector<uint8_t>(size_t(height) * width * 3)};
    for (int y = 0; y < height; ++y) {
      const uint8_t* row = rgbFrame_->data[0] + ptrdiff_t(y) * rgbFrame_->linesize[0];
      std::copy(row, row + width * 3, &rgb.pixels[size_t(y) * width * 3]);
    }
    return true;
  }

  std::string path_;
  AVFormatContext* format_ = nullptr;
  int stream_ = -1;
  Owned<AVCodecContext> codec_;
  Owned<AVFrame> frame_ = newFrame();
  Owned<AVFrame> rgbFrame_;
  Owned<AVPacket> packet_{av_packet_alloc()};
  SwsContext* scale_ = nullptr;  // sws_getCachedContext owns and reuses it

 public:
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;
};

// RGB images into an .mp4 at `path`, written as `path`.partial.mp4 and renamed by finish().
class Encoder {
 public:
  Encoder(const std::string& path, int width, int height, AVRational frameRate)
      : path_(path), partial_(path + ".partial.mp4") {
    check(avformat_alloc_output_context2(&format_, nullptr, "mp4", partial_.c_str()), "cannot write " + path);
    const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
    if (!codec) throw std::runtime_error("FFmpeg has neither libx264 nor an MPEG-4 encoder");
    AVStream* stream = avformat_new_stream(format_, nullptr);
    codec_.reset(avcodec_alloc_context3(codec));
    codec_->width = width;
    codec_->height = height;
    // As mattex run: 4:2:0 needs even sides, 4:4:4 takes any.
    pixelFormat_ = width % 2 == 0 && height % 2 == 0 ? AV_PIX_FMT_YUV420P : AV_PIX_FMT_YUV444P;
    codec_->pix_fmt = pixelFormat_;
    codec_->time_base = av_inv_q(frameRate);
    codec_->framerate = frameRate;
    if (format_->oformat->flags & AVFMT_GLOBALHEADER) codec_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (std::string(codec->name) == "libx264") {  // mattex run's settings: fast, crf 18 keeps the quality
      av_opt_set(codec_->priv_data, "preset", "ultrafast", 0);
      av_opt_set(codec_->priv_data, "crf", "18", 0);
    }
    check(avcodec_open2(codec_.get(), codec, nullptr), "cannot open the " + std::string(codec->name) + " encoder");
    check(avcodec_parameters_from_context(stream->codecpar, codec_.get()), path);
    stream->time_base = codec_->time_base;
    check(avio_open(&format_->pb, partial_.c_str(), AVIO_FLAG_WRITE), "cannot write " + partial_);
    check(avformat_write_header(format_, nullptr), "cannot write " + partial_);
    scale_.reset(sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, pixelFormat_, SWS_BILINEAR, nullptr,
                                nullptr, nullptr));
    frame_->format = pixelFormat_;
    frame_->width = width;
    frame_->height = height;
    check(av_frame_get_buffer(frame_.get(), 0), "out of memory");
    rgbFrame_ = newRgbFrame(width, height);
  }

  ~Encoder() {  // not finished: an error or an empty video; leave nothing behind
    if (format_ && format_->pb) avio_closep(&format_->pb);
    avformat_free_context(format_);
    if (!finished_) std::remove(partial_.c_str());
  }

  void write(const example::Image& rgb) {
    check(av_frame_make_writable(frame_.get()), "out of memory");
    for (int64_t y = 0; y < rgb.height; ++y) {
      const uint8_t* row = &rgb.pixels[y * rgb.width * 3];
      std::copy(row, row + rgb.width * 3, rgbFrame_->data[0] + y * rgbFrame_->linesize[0]);
    }
    sws_scale(scale_.get(), rgbFrame_->data, rgbFrame_->linesize, 0, static_cast<int>(rgb.height), frame_->data,
              frame_->linesize);
    frame_->pts = frames_++;
    send(frame_.get());
  }

  int64_t finish() {
    send(nullptr);  // drain the encoder
    check(av_write_trailer(format_), "cannot finish " + partial_);
    check(avio_closep(&format_->pb), "cannot finish " + partial_);
    if (std::rename(partial_.c_str(), path_.c_str()) != 0) throw std::runtime_error("cannot rename to " + path_);
    finished_ = true;
    return frames_;
  }

 private:
  void send(AVFrame* frame) {
    check(avcodec_send_frame(codec_.get(), frame), "cannot encode");
    while (true) {
      const int received = avcodec_receive_packet(codec_.get(), packet_.get());
      if (received == AVERROR(EAGAIN) || received == AVERROR_EOF) return;
      check(received, "cannot encode");
      if (packet_->duration == 0) packet_->duration = 1;  // one frame: the muxer times the last one by it
      av_packet_rescale_ts(packet_.get(), codec_->time_base, format_->streams[0]->time_base);
      packet_->stream_index = 0;
      check(av_interleaved_write_frame(format_, packet_.get()), "cannot write " + partial_);
    }
  }

  std::string path_, partial_;
  AVFormatContext* format_ = nullptr;
  AVPixelFormat pixelFormat_ = AV_PIX_FMT_YUV420P;
  Owned<AVCodecContext> codec_;
  Owned<SwsContext> scale_;
  Owned<AVFrame> frame_ = newFrame();
  Owned<AVFrame> rgbFrame_;
  Owned<AVPacket> packet_{av_packet_alloc()};
  int64_t frames_ = 0;
  bool finished_ = false;

 public:
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: " << argv[0] << " MODEL VIDEO BACKGROUND.png OUT.mp4 [BATCH]\n"
              << "example: " << argv[0] << " bgm_mobilenetv2_hd_fp32.onnx clip.mp4 background.png com.mp4 4\n";
    return 2;
  }
  const int64_t batch = argc == 6 ? std::atoll(argv[5]) : 4;
  if (batch < 1) {
    std::cerr << "error: BATCH must be a positive integer, got " << argv[5] << "\n";
    return 2;
  }
  av_log_set_level(AV_LOG_ERROR);  // not libx264's banner
  std::signal(SIGINT, requestStop);
  std::signal(SIGTERM, requestStop);
  try {
    auto matter = mattex::Matter::open(argv[1]);
    Decoder video(argv[2]);
    const example::Image background = example::readPng(argv[3]);
    if (background.width != video.width() || background.height != video.height()) {
      std::cerr << "error: the background is " << background.width << "x" << background.height
                << " but the video is " << video.width() << "x" << video.height() << "\n";
      return 2;
    }
    const example::Image bgr = example::padToMultiple(background, matter->info().sizeMultiple);
    const example::Image green = example::green(background.height, background.width);

    Encoder out(argv[4], video.width(), video.height(), video.frameRate());
    const int64_t h = bgr.height, w = bgr.width, frameBytes = h * w * 3;
    std::vector<uint8_t> srcBatch(batch * frameBytes), bgrBatch(batch * frameBytes);
    for (int64_t n = 0; n < batch; ++n) std::copy(bgr.pixels.begin(), bgr.pixels.end(), &bgrBatch[n * frameBytes]);
    std::vector<float> pha(batch * h * w), fgr(batch * 3 * h * w);
    example::Image frame, com;
    bool more = true;
    while (more && !stopRequested) {
      int64_t filled = 0;
      while (filled < batch && (more = video.next(frame))) {
        const example::Image padded = example::padToMultiple(frame, matter->info().sizeMultiple);
        std::copy(padded.pixels.begin(), padded.pixels.end(), &srcBatch[filled++ * frameBytes]);
      }
      if (filled == 0) break;
      matter->matteFrames(srcBatch.data(), bgrBatch.data(), filled, h, w, pha.data(), fgr.data());
      for (int64_t n = 0; n < filled; ++n) {
        example::compose(pha.data(), fgr.data(), n, h, w, green, com, nullptr, nullptr);
        out.write(com);
      }
    }
    const int64_t frames = out.finish();
    std::cout << (stopRequested ? "stopped: " : "") << "matted " << frames << " frames with "
              << matter->info().backend << " into " << argv[4] << "\n";
    return stopRequested ? 130 : 0;
  } catch (const mattex::Error& error) {
    std::cerr << "error: " << error.kind() << ": " << error.what() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
}
