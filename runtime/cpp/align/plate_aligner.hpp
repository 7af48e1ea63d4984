// Clean plates for real cameras, in C++: mattex.runtime.align.PlateAligner ported step by step to
// OpenCV's C++ API (docs/clean-plates.md says what it does). The captured background is brought to
// each frame, in geometry (a homography) and in exposure (per-channel gain and offset):
//
//   mattex::align::PlateAligner aligner(plate);               // CV_8UC3 RGB
//   for (...) plate_now = aligner.align(frame, alpha, &step);  // alpha: the latest matte, or empty
//
// The tuning is mattex/shared_facts.json's "align" section, which Python reads too;
// tests/runtime/cpp/test_align_cpp.py holds the two aligners equal on the same frames.
#pragma once

#include <opencv2/core.hpp>
#include <opencv2/features2d.hpp>

#include <array>
#include <vector>

namespace mattex::align {

// What the aligner did for one frame (mattex.runtime.align_steps.AlignStep).
struct AlignStep {
  cv::Matx33d homography = cv::Matx33d::eye();  // plate pixels -> frame pixels (full resolution)
  int inliers = 0;         // matches that agree with the estimate (0 on a fallback)
  bool fallback = false;   // no estimate passed the checks: the last good one is used
  double shiftPx = 0.0;    // mean displacement of the frame's corners under the homography
  std::array<double, 3> gains{1.0, 1.0, 1.0};  // per channel (R, G, B): frame = gain * plate + offset
  std::array<double, 3> offsets{0.0, 0.0, 0.0};
  bool largeMotion = false;  // shiftPx above the large-motion limit
};

struct AlignStats {
  int frames = 0, fallbacks = 0, largeMotion = 0;
};

struct AlignOptions {
  double largeMotionFraction = -1.0;  // of the diagonal; < 0: the shared default
  int features = -1;                  // ORB features kept per frame; < 0: the shared default
  int threads = -1;                   // OpenCV's threads for the process (cv::setNumThreads); < 0: as they are
  bool inOrder = false;  // one clip's frames in order: a frame without an alpha reuses the last subject
};

class PlateAligner {
 public:
  // `plate`: CV_8UC3 RGB. Throws mattex::ConfigError for anything else.
  explicit PlateAligner(const cv::Mat& plate, const AlignOptions& options = AlignOptions());

  // A new plate of the same size (a background video's next frame), keeping the motion so far.
  void setPlate(const cv::Mat& plate);

  // The plate for `frame` (CV_8UC3 RGB, the plate's size). `alpha`: the latest matte known (the
  // previous frame's), CV_8U in 0..255 or CV_32F/CV_64F in [0, 1], the frame's size; empty on the
  // first frame. `step`, where given, receives what was done.
  cv::Mat align(const cv::Mat& frame, const cv::Mat& alpha, AlignStep* step = nullptr);

  const AlignStats& stats() const { return stats_; }

 private:
  struct Estimate {
    bool ok = false;
    cv::Matx33d homography = cv::Matx33d::eye();
    int inliers = 0;
  };
  struct Fit {
    bool ok = false;
    cv::Matx33d homography = cv::Matx33d::eye();
    std::vector<uchar> inlier;
    double residual = 0.0;
  };

  cv::Mat small(const cv::Mat& image) const;
  cv::Mat backgroundFromAlpha(const cv::Mat& alpha) const;
  cv::Mat backgroundFromDisagreement(const cv::Mat& small, const cv::Matx33d& homography) const;
  cv::Mat dilation() const;
  Estimate estimate(const cv::Mat& gray, const cv::Mat& background) const;
  Fit fit(const std::vector<cv::Point2f>& plateXy, const std::vector<cv::Point2f>& frameXy, cv::Size shape) const;
  Estimate track(const cv::Mat& gray, const cv::Mat& background) const;
  void features(const cv::Mat& gray, const cv::Mat& mask, std::vector<cv::KeyPoint>& points,
                cv::Mat& descriptors) const;
  void match(const std::vector<cv::KeyPoint>& points, const cv::Mat& descriptors, cv::Size shape,
             std::vector<cv::Point2f>& frameXy, std::vector<cv::Point2f>& plateXy) const;
  cv::Matx33d refine(const cv::Mat& gray, const cv::Mat& background, const cv::Matx33d& homography) const;
  cv::Matx33d smooth(const cv::Matx33d& homography);
  void fitExposure(const cv::Mat& small, const cv::Mat& background, const cv::Matx33d& homography,
                   std::array<double, 3>& gains, std::array<double, 3>& offsets) const;
  cv::Mat render(const cv::Mat& frame, const cv::Matx33d& homography, const std::array<double, 3>& gains,
                 const std::array<double, 3>& offsets, const cv::Mat& background) const;

  int height_ = 0, width_ = 0;
  double scale_ = 1.0;
  cv::Size workSize_;
  double largeMotionPx_ = 0.0;
  int features_ = 0;
  bool inOrder_ = false;
  cv::Ptr<cv::ORB> orb_;
  cv::Ptr<cv::BFMatcher> matcher_;
  cv::Matx33d lastGood_ = cv::Matx33d::eye();  // full resolution
  std::array<double, 3> gains_{1.0, 1.0, 1.0}, offsets_{0.0, 0.0, 0.0};  // the last frame's exposure
  std::vector<std::array<cv::Point2d, 4>> history_;  // the last two outputs' corners
  cv::Mat lastBackground_;                           // empty: none yet
  AlignStats stats_;
  cv::Mat plate_, plateSmall_, plateGray_, plateEcc_;
  std::vector<cv::KeyPoint> platePoints_;
  cv::Mat plateDescriptors_;  // empty: none
  std::vector<cv::Point2f> trackPoints_;
};

}  // namespace mattex::align
