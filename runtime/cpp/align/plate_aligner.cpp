// mattex.runtime.align.PlateAligner, step by step: the same constants (mattex_align_facts.hpp,
// generated from mattex/shared_facts.json), the same OpenCV calls with the same arguments, and
// numpy's arithmetic where Python does it in numpy (float32 where numpy keeps float32, its
// pairwise sums, round half to even). Each function names the Python method it ports; their
// comments say why each step is there.
#include "plate_aligner.hpp"

#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/video/tracking.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "mattex/errors.hpp"
#include "mattex_align_facts.hpp"
#include "plane.hpp"

namespace mattex::align {
namespace {

namespace f = facts;

std::string dims(int width, int height) { return std::to_string(width) + "x" + std::to_string(height); }

// _check_rgb
cv::Mat checkRgb(const cv::Mat& image, const char* what) {
  if (image.type() != CV_8UC3 || image.dims != 2) {
    throw ConfigError(std::string(what) + " must be uint8 HxWx3 RGB, got " + cv::typeToString(image.type()) + " of " +
                      std::to_string(image.dims) + " dimensions");
  }
  return image;
}

// int(x) in Python of a non-negative float, and round() (half to even).
int roundEven(double x) { return static_cast<int>(std::nearbyint(x)); }

// np.clip(arange(256)[:, None] * gains + offsets + 0.5, 0, 255).astype(uint8), as a 3-channel LUT.
cv::Mat exposureTable(const std::array<double, 3>& gains, const std::array<double, 3>& offsets) {
  cv::Mat table(1, 256, CV_8UC3);
  for (int v = 0; v < 256; ++v) {
    for (int c = 0; c < 3; ++c) {
      const double level = std::min(std::max(v * gains[c] + offsets[c] + 0.5, 0.0), 255.0);
      table.at<cv::Vec3b>(0, v)[c] = static_cast<uchar>(level);
    }
  }
  return table;
}

double mean(const std::vector<double>& values) { return plane::sum(values.data(), values.size()) / values.size(); }

// _robust_line: y ~ gain * x + offset by Huber-weighted least squares; a channel with almost no
// spread gets a gain alone.
std::pair<double, double> robustLine(const std::vector<double>& x, const std::vector<double>& y, int iterations = 4) {
  const size_t n = x.size();
  const double xMean = mean(x);
  std::vector<double> work(n);
  for (size_t i = 0; i < n; ++i) work[i] = (x[i] - xMean) * (x[i] - xMean);
  if (std::sqrt(mean(work)) < 3.0) {  // x.std()
    const double gain = plane::median(y) / std::max(plane::median(x), 1.0);
    return {std::min(std::max(gain, 0.5), 2.0), 0.0};
  }
  std::vector<double> weights(n, 1.0), dx(n), residual(n);
  double gain = 1.0, offset = 0.0;
  for (int iteration = 0; iteration < iterations; ++iteration) {
    const double total = plane::sum(weights.data(), n);
    for (size_t i = 0; i < n; ++i) work[i] = weights[i] * x[i];
    const double meanX = plane::sum(work.data(), n) / total;
    for (size_t i = 0; i < n; ++i) work[i] = weights[i] * y[i];
    const double meanY = plane::sum(work.data(), n) / total;
    for (size_t i = 0; i < n; ++i) dx[i] = x[i] - meanX;
    for (size_t i = 0; i < n; ++i) work[i] = weights[i] * dx[i] * (y[i] - meanY);
    const double covariance = plane::sum(work.data(), n);
    for (size_t i = 0; i < n; ++i) work[i] = weights[i] * dx[i] * dx[i];
    gain = covariance / std::max(plane::sum(work.data(), n), 1e-9);
    offset = meanY - gain * meanX;
    for (size_t i = 0; i < n; ++i) residual[i] = std::abs(y[i] - gain * x[i] - offset);
    const double k = 1.345 * (1.4826 * plane::median(residual) + 1e-6);
    for (size_t i = 0; i < n; ++i) weights[i] = std::min(1.0, k / std::max(residual[i], 1e-9));
  }
  if (!(0.5 <= gain && gain <= 2.0)) return {1.0, 0.0};  // not an exposure change
  return {gain, offset};
}

cv::Matx33d inverse(const cv::Matx33d& h) { return h.inv(cv::DECOMP_LU); }

}  // namespace

PlateAligner::PlateAligner(const cv::Mat& plateIn, const AlignOptions& options) {
  inOrder_ = options.inOrder;
  if (options.threads >= 0) cv::setNumThreads(options.threads);  // the process's pool, as Python's
  const cv::Mat plate = checkRgb(plateIn, "the plate");
  height_ = plate.rows;
  width_ = plate.cols;
  scale_ = std::min(1.0, double(f::kWorkSide) / std::max(height_, width_));
  workSize_ = cv::Size(std::max(1, roundEven(width_ * scale_)), std::max(1, roundEven(height_ * scale_)));
  const double fraction = options.largeMotionFraction < 0 ? f::kLargeMotionFraction : options.largeMotionFraction;
  largeMotionPx_ = fraction * std::hypot(double(height_), double(width_));
  features_ = options.features < 0 ? f::kFeatures : options.features;
  // many candidates (a low FAST threshold), the strongest per cell kept; smaller patches on small frames
  const int patch = std::min(std::max(std::min(workSize_.width, workSize_.height) / 6, 9), 31);
  orb_ = cv::ORB::create(2 * features_, 1.2f, 4, patch, 0, 2, cv::ORB::HARRIS_SCORE, patch, 8);
  matcher_ = cv::BFMatcher::create(cv::NORM_HAMMING);
  setPlate(plate);
}

void PlateAligner::setPlate(const cv::Mat& plateIn) {
  const cv::Mat plate = checkRgb(plateIn, "the plate");
  if (plate.rows != height_ || plate.cols != width_) {
    throw ConfigError("the plate is " + dims(plate.cols, plate.rows) + ", the first was " + dims(width_, height_));
  }
  plate_ = plate.clone();
  plateSmall_ = small(plate_);
  cv::cvtColor(plateSmall_, plateGray_, cv::COLOR_RGB2GRAY);
  features(plateGray_, cv::Mat(), platePoints_, plateDescriptors_);
  trackPoints_.clear();
  cv::goodFeaturesToTrack(plateGray_, trackPoints_, f::kTrackPoints, 0.01, 7, cv::noArray(), 7, false, 0.04);
  const double factor = std::min(1.0, double(f::kEccSide) / std::max(plateGray_.rows, plateGray_.cols));
  const cv::Size eccSize(std::max(1, roundEven(plateGray_.cols * factor)),
                         std::max(1, roundEven(plateGray_.rows * factor)));
  cv::Mat ecc;
  cv::resize(plateGray_, ecc, eccSize, 0, 0, cv::INTER_AREA);
  ecc.convertTo(plateEcc_, CV_32F);
}

cv::Mat PlateAligner::align(const cv::Mat& frameIn, const cv::Mat& alpha, AlignStep* out) {
  const cv::Mat frame = checkRgb(frameIn, "the frame");
  if (frame.rows != height_ || frame.cols != width_) {
    throw ConfigError("the frame is " + dims(frame.cols, frame.rows) + ", the plate " + dims(width_, height_));
  }
  const cv::Mat small = this->small(frame);
  cv::Mat gray;
  cv::cvtColor(small, gray, cv::COLOR_RGB2GRAY);
  cv::Mat background;
  if (!alpha.empty()) {
    background = backgroundFromAlpha(alpha);
  } else if (inOrder_ && !lastBackground_.empty()) {
    background = lastBackground_;
  } else {  // the first frame: a first estimate over the whole frame says where the subject is
    const Estimate rough = estimate(gray, cv::Mat(gray.size(), CV_8U, cv::Scalar(255)));
    background = backgroundFromDisagreement(small, rough.ok ? rough.homography : lastGood_);
  }
  Estimate found = stats_.frames ? track(gray, background) : Estimate();
  if (!found.ok) found = estimate(gray, background);  // the first frame, or tracking lost
  const bool fallback = !found.ok;
  const cv::Matx33d homography = smooth(fallback ? lastGood_ : found.homography);
  if (!fallback) lastGood_ = homography;
  std::array<double, 3> gains, offsets;
  fitExposure(small, background, homography, gains, offsets);
  gains_ = gains;
  offsets_ = offsets;
  lastBackground_ = background;
  cv::Mat plate = render(frame, homography, gains, offsets, background);
  AlignStep step;
  step.homography = homography;
  step.inliers = found.inliers;
  step.fallback = fallback;
  step.shiftPx = plane::cornerShift(homography, height_, width_);
  step.gains = gains;
  step.offsets = offsets;
  step.largeMotion = step.shiftPx > largeMotionPx_;
  stats_.frames += 1;
  stats_.fallbacks += fallback;
  stats_.largeMotion += step.largeMotion;
  if (out) *out = step;
  return plate;
}

cv::Mat PlateAligner::small(const cv::Mat& image) const {
  if (scale_ == 1.0) return image;
  cv::Mat resized;
  cv::resize(image, resized, workSize_, 0, 0, cv::INTER_AREA);
  return resized;
}

cv::Mat PlateAligner::dilation() const {
  // the alpha is a few frames old in a pipeline and the subject moves: a generous margin
  const int radius = std::max(3, roundEven(0.03 * std::hypot(double(workSize_.width), double(workSize_.height))));
  return cv::getStructuringElement(cv::MORPH_RECT, cv::Size(2 * radius + 1, 2 * radius + 1));
}

cv::Mat PlateAligner::backgroundFromAlpha(const cv::Mat& alpha) const {
  if (alpha.channels() != 1 || alpha.dims != 2 || alpha.rows != height_ || alpha.cols != width_) {
    throw ConfigError("the alpha is " + dims(alpha.cols, alpha.rows) + (alpha.channels() != 1 ? " with channels" : "") +
                      ", the frame " + dims(width_, height_));
  }
  cv::Mat subject(height_, width_, CV_8U);
  for (int y = 0; y < height_; ++y) {
    uchar* row = subject.ptr<uchar>(y);
    for (int x = 0; x < width_; ++x) {
      bool on;
      switch (alpha.depth()) {
        case CV_8U: on = alpha.at<uchar>(y, x) > f::kSubjectAlpha * 255; break;
        case CV_32F: on = alpha.at<float>(y, x) > static_cast<float>(f::kSubjectAlpha); break;
        case CV_64F: on = alpha.at<double>(y, x) > f::kSubjectAlpha; break;
        default: throw ConfigError("the alpha must be uint8, float32 or float64, got " + cv::typeToString(alpha.type()));
      }
      row[x] = on ? 255 : 0;
    }
  }
  if (scale_ != 1) cv::resize(subject, subject, workSize_, 0, 0, cv::INTER_NEAREST);
  // specks of a noisy matte are no subject: dilated, they would hide much of the background
  cv::morphologyEx(subject, subject, cv::MORPH_OPEN, cv::Mat::ones(5, 5, CV_8U));
  cv::dilate(subject, subject, dilation());
  return 255 - subject;
}

cv::Mat PlateAligner::backgroundFromDisagreement(const cv::Mat& small, const cv::Matx33d& homography) const {
  std::array<double, 3> gains, offsets;
  fitExposure(small, cv::Mat(small.size(), CV_8U, cv::Scalar(255)), homography, gains, offsets);
  cv::Mat warped;
  cv::warpPerspective(plateSmall_, warped, plane::rescale(homography, scale_), workSize_, cv::INTER_LINEAR,
                      cv::BORDER_REPLICATE);
  cv::Mat difference(small.size(), CV_64F);  // float32 plate * float64 gains: float64, as numpy
  for (int y = 0; y < small.rows; ++y) {
    const cv::Vec3b* w = warped.ptr<cv::Vec3b>(y);
    const cv::Vec3b* s = small.ptr<cv::Vec3b>(y);
    double* d = difference.ptr<double>(y);
    for (int x = 0; x < small.cols; ++x) {
      double largest = 0.0;
      for (int c = 0; c < 3; ++c) {
        const double value = std::abs(double(float(w[x][c])) * gains[c] + offsets[c] - s[x][c]);
        largest = c == 0 ? value : std::max(largest, value);
      }
      d[x] = largest;
    }
  }
  cv::GaussianBlur(difference, difference, cv::Size(0, 0), 2.0);
  cv::Mat subject = difference > 30;  // 0 or 255
  cv::morphologyEx(subject, subject, cv::MORPH_OPEN, cv::Mat::ones(5, 5, CV_8U));  // noise, edges
  cv::dilate(subject, subject, dilation());
  return 255 - subject;
}

PlateAligner::Estimate PlateAligner::estimate(const cv::Mat& gray, const cv::Mat& background) const {
  if (plateDescriptors_.empty() || platePoints_.size() < size_t(f::kMinInliers)) return {};
  std::vector<cv::KeyPoint> points;
  cv::Mat descriptors;
  features(gray, background, points, descriptors);
  if (descriptors.empty() || points.size() < size_t(f::kMinInliers)) return {};
  std::vector<cv::Point2f> frameXy, plateXy;
  match(points, descriptors, gray.size(), frameXy, plateXy);
  if (frameXy.size() < size_t(f::kMinInliers)) return {};
  Fit found = fit(plateXy, frameXy, gray.size());
  int inliers = 0;
  std::vector<cv::Point2f> plateIn, frameIn;
  for (size_t i = 0; i < found.inlier.size(); ++i) {
    if (!found.inlier[i]) continue;
    ++inliers;
    plateIn.push_back(plateXy[i]);
    frameIn.push_back(frameXy[i]);
  }
  Estimate result;
  result.inliers = inliers;
  if (!found.ok) return result;
  cv::Matx33d homography = found.homography;
  const cv::Matx33d refined = refine(gray, background, homography);
  // ECC weighs every background pixel: the features it must still agree with catch a subject it was pulled by
  if (plane::residual(refined, plateIn, frameIn) <= found.residual + f::kEccFeatureSlackPx) homography = refined;
  result.ok = true;
  result.homography = plane::rescale(homography, 1 / scale_);
  return result;
}

PlateAligner::Fit PlateAligner::fit(const std::vector<cv::Point2f>& plateXy, const std::vector<cv::Point2f>& frameXy,
                                    cv::Size shape) const {
  Fit result;
  cv::Mat mask;
  const cv::Mat homography = cv::findHomography(plateXy, frameXy, cv::USAC_MAGSAC, 1.0, mask, 2000, 0.999);
  if (homography.empty()) {
    result.inlier.assign(plateXy.size(), 0);
    return result;
  }
  result.homography = cv::Matx33d(homography);
  result.inlier.assign(mask.begin<uchar>(), mask.end<uchar>());
  auto selected = [](const std::vector<cv::Point2f>& points, const std::vector<uchar>& keep) {
    std::vector<cv::Point2f> out;
    for (size_t i = 0; i < points.size(); ++i) {
      if (keep[i]) out.push_back(points[i]);
    }
    return out;
  };
  auto count = [](const std::vector<uchar>& keep) {
    return static_cast<int>(std::count_if(keep.begin(), keep.end(), [](uchar k) { return k != 0; }));
  };
  // A similarity extrapolates to the corners more steadily than a homography: taken unless the
  // homography explains the inliers clearly better, and always when they cover too little.
  cv::Mat similarMask;
  const cv::Mat similarity = cv::estimateAffinePartial2D(plateXy, frameXy, similarMask, cv::RANSAC, 1.0);
  if (!similarity.empty() && count(result.inlier) >= 4) {
    const cv::Matx23d s(similarity);
    const cv::Matx33d similar3(s(0, 0), s(0, 1), s(0, 2), s(1, 0), s(1, 1), s(1, 2), 0, 0, 1);
    std::vector<uchar> similar(similarMask.begin<uchar>(), similarMask.end<uchar>());
    const auto plateIn = selected(plateXy, result.inlier), frameIn = selected(frameXy, result.inlier);
    const bool narrow = plane::spread(frameIn, shape.height, shape.width) < f::kMinHomographySpread;
    const double gain =
        plane::residual(similar3, plateIn, frameIn) - plane::residual(result.homography, plateIn, frameIn);
    if (narrow || (gain < f::kHomographyGainPx && count(similar) >= 0.9 * count(result.inlier))) {
      result.homography = similar3;
      result.inlier = similar;
    }
  }
  const int inliers = count(result.inlier);
  if (inliers < f::kMinInliers || double(inliers) / result.inlier.size() < f::kMinInlierRatio ||
      !plane::wellConditioned(result.homography, shape.height, shape.width)) {
    return result;
  }
  result.residual =
      plane::residual(result.homography, selected(plateXy, result.inlier), selected(frameXy, result.inlier));
  if (result.residual > f::kMaxReprojectionPx) return result;
  result.ok = true;
  return result;
}

PlateAligner::Estimate PlateAligner::track(const cv::Mat& gray, const cv::Mat& background) const {
  if (trackPoints_.empty()) return {};
  const int height = gray.rows, width = gray.cols;
  const std::vector<cv::Point2f> guessAll = plane::apply(plane::rescale(lastGood_, scale_), trackPoints_);
  std::vector<cv::Point2f> plateXy, guess;
  for (size_t i = 0; i < guessAll.size(); ++i) {
    const float gx = std::nearbyint(guessAll[i].x), gy = std::nearbyint(guessAll[i].y);  // np.round: half to even
    if (!(std::abs(gx) < 1e9f && std::abs(gy) < 1e9f)) continue;  // far outside (never for a checked estimate)
    const int x = static_cast<int>(gx), y = static_cast<int>(gy);
    if (x >= 0 && x < width && y >= 0 && y < height && background.at<uchar>(y, x) > 0) {
      plateXy.push_back(trackPoints_[i]);
      guess.push_back(guessAll[i]);
    }
  }
  if (plateXy.size() < size_t(f::kMinInliers)) return {};
  // the plate given the last gains, so that a drifting exposure does not pull the flow
  cv::Mat exposed, plateGray;
  cv::LUT(plateSmall_, exposureTable(gains_, offsets_), exposed);
  cv::cvtColor(exposed, plateGray, cv::COLOR_RGB2GRAY);
  const cv::Size window(21, 21);
  const cv::TermCriteria criteria(cv::TermCriteria::COUNT | cv::TermCriteria::EPS, 20, 0.01);
  std::vector<cv::Point2f> found = guess, back = plateXy;
  std::vector<uchar> status, backStatus;
  std::vector<float> error;
  cv::calcOpticalFlowPyrLK(plateGray, gray, plateXy, found, status, error, window, 2, criteria,
                           cv::OPTFLOW_USE_INITIAL_FLOW);
  cv::calcOpticalFlowPyrLK(gray, plateGray, found, back, backStatus, error, window, 2, criteria,
                           cv::OPTFLOW_USE_INITIAL_FLOW);
  std::vector<cv::Point2f> plateGood, foundGood;
  for (size_t i = 0; i < plateXy.size(); ++i) {
    const float dx = back[i].x - plateXy[i].x, dy = back[i].y - plateXy[i].y;  // float32, as numpy's norm
    const float dx2 = dx * dx, dy2 = dy * dy;
    if (status[i] == 1 && backStatus[i] == 1 && std::sqrt(dx2 + dy2) < static_cast<float>(f::kTrackBackPx)) {
      plateGood.push_back(plateXy[i]);
      foundGood.push_back(found[i]);
    }
  }
  if (plateGood.size() < size_t(f::kMinInliers)) return {};
  const Fit fitted = fit(plateGood, foundGood, gray.size());
  Estimate result;
  result.inliers = static_cast<int>(fitted.inlier.size() - std::count(fitted.inlier.begin(), fitted.inlier.end(), 0));
  if (!fitted.ok) return result;
  result.ok = true;
  result.homography = plane::rescale(fitted.homography, 1 / scale_);
  return result;
}

void PlateAligner::features(const cv::Mat& gray, const cv::Mat& mask, std::vector<cv::KeyPoint>& chosen,
                            cv::Mat& descriptors) const {
  chosen.clear();
  descriptors.release();
  std::vector<cv::KeyPoint> points;
  orb_->detect(gray, points, mask);
  if (points.empty()) return;
  // the strongest first; a stable sort, so that ties keep their order as Python's sorted keeps it
  std::stable_sort(points.begin(), points.end(),
                   [](const cv::KeyPoint& a, const cv::KeyPoint& b) { return -a.response < -b.response; });
  std::map<std::pair<int, int>, size_t> index;  // cell -> its place, in the order cells are first met
  std::vector<std::vector<cv::KeyPoint>> cells;
  for (const cv::KeyPoint& point : points) {
    const std::pair<int, int> cell(static_cast<int>(double(point.pt.y) * f::kGridRows / gray.rows),
                                   static_cast<int>(double(point.pt.x) * f::kGridColumns / gray.cols));
    auto at = index.find(cell);
    if (at == index.end()) {
      at = index.emplace(cell, cells.size()).first;
      cells.emplace_back();
    }
    cells[at->second].push_back(point);
  }
  const size_t perCell = std::max(1, features_ / (f::kGridRows * f::kGridColumns));
  for (const auto& found : cells) {
    chosen.insert(chosen.end(), found.begin(), found.begin() + std::min(perCell, found.size()));
  }
  orb_->compute(gray, chosen, descriptors);
}

void PlateAligner::match(const std::vector<cv::KeyPoint>& points, const cv::Mat& descriptors, cv::Size shape,
                         std::vector<cv::Point2f>& frameXy, std::vector<cv::Point2f>& plateXy) const {
  std::vector<cv::Point2f> frameAll, plateAll;
  for (const auto& p : points) frameAll.push_back(p.pt);
  for (const auto& p : platePoints_) plateAll.push_back(p.pt);
  const std::vector<cv::Point2f> predicted = plane::apply(inverse(plane::rescale(lastGood_, scale_)), frameAll);
  const double radius = f::kSearchRadius * std::hypot(double(shape.height), double(shape.width));
  const float limit = static_cast<float>(radius * radius);  // numpy compares in float32
  cv::Mat near(static_cast<int>(frameAll.size()), static_cast<int>(plateAll.size()), CV_8U);
  for (int q = 0; q < near.rows; ++q) {
    uchar* row = near.ptr<uchar>(q);
    for (int t = 0; t < near.cols; ++t) {
      const float dx = predicted[q].x - plateAll[t].x, dy = predicted[q].y - plateAll[t].y;
      const float dx2 = dx * dx, dy2 = dy * dy;
      row[t] = dx2 + dy2 < limit;
    }
  }
  std::vector<std::vector<cv::DMatch>> pairs;
  matcher_->knnMatch(descriptors, plateDescriptors_, pairs, 2, near);
  frameXy.clear();
  plateXy.clear();
  for (const auto& p : pairs) {
    const bool good = (p.size() == 1 && p[0].distance < 64) ||
                      (p.size() == 2 && double(p[0].distance) < 0.9 * double(p[1].distance));
    if (!good) continue;
    frameXy.push_back(frameAll[p[0].queryIdx]);
    plateXy.push_back(plateAll[p[0].trainIdx]);
  }
}

cv::Matx33d PlateAligner::refine(const cv::Mat& gray, const cv::Mat& background, const cv::Matx33d& homography) const {
  const double factor = std::min(1.0, double(f::kEccSide) / std::max(gray.rows, gray.cols));
  const cv::Matx33d scaled = plane::rescale(homography, factor);
  cv::Mat warp(3, 3, CV_32F);
  for (int i = 0; i < 9; ++i) warp.at<float>(i / 3, i % 3) = static_cast<float>(scaled.val[i] / scaled(2, 2));
  const cv::Size size(plateEcc_.cols, plateEcc_.rows);
  cv::Mat frame, mask;
  if (factor < 1) {
    cv::Mat resized;
    cv::resize(gray, resized, size, 0, 0, cv::INTER_AREA);
    resized.convertTo(frame, CV_32F);
    cv::resize(background, mask, size, 0, 0, cv::INTER_NEAREST);
  } else {
    gray.convertTo(frame, CV_32F);
    mask = background;
  }
  const cv::TermCriteria criteria(cv::TermCriteria::EPS | cv::TermCriteria::COUNT, 8, 1e-3);  // it starts close
  try {
    cv::findTransformECC(plateEcc_, frame, warp, cv::MOTION_HOMOGRAPHY, criteria, mask, 3);
  } catch (const cv::Exception&) {  // did not converge: keep the features' estimate
    return homography;
  }
  cv::Matx33d refined;
  for (int i = 0; i < 9; ++i) refined.val[i] = double(warp.at<float>(i / 3, i % 3));
  refined = plane::rescale(refined, 1 / factor);
  if (plane::cornerDistance(refined, homography, gray.rows, gray.cols) > f::kMaxEccCorrectionPx ||
      !plane::wellConditioned(refined, gray.rows, gray.cols)) {
    return homography;
  }
  return refined;
}

cv::Matx33d PlateAligner::smooth(const cv::Matx33d& homography) {
  plane::Quad corners = plane::corners(homography, height_, width_);
  if (!history_.empty()) {
    plane::Quad prediction = history_.back();
    if (history_.size() == 2) {
      for (int i = 0; i < 4; ++i) prediction[i] = 2 * history_[1][i] - history_[0][i];
    }
    double distance = 0.0;
    for (int i = 0; i < 4; ++i) {
      distance = std::max({distance, std::abs(corners[i].x - prediction[i].x), std::abs(corners[i].y - prediction[i].y)});
    }
    const double ratio = distance / f::kJitterPx;
    const double weight = 0.5 * std::exp(-(ratio * ratio));
    for (int i = 0; i < 4; ++i) corners[i] = (1 - weight) * corners[i] + weight * prediction[i];
  }
  if (history_.size() == 2) history_.erase(history_.begin());
  history_.push_back(corners);
  const plane::Quad still = plane::corners(cv::Matx33d::eye(), height_, width_);
  cv::Point2f from[4], to[4];
  for (int i = 0; i < 4; ++i) {
    from[i] = cv::Point2f(static_cast<float>(still[i].x), static_cast<float>(still[i].y));
    to[i] = cv::Point2f(static_cast<float>(corners[i].x), static_cast<float>(corners[i].y));
  }
  return cv::Matx33d(cv::getPerspectiveTransform(from, to));
}

void PlateAligner::fitExposure(const cv::Mat& small, const cv::Mat& background, const cv::Matx33d& homography,
                               std::array<double, 3>& gains, std::array<double, 3>& offsets) const {
  gains = {1.0, 1.0, 1.0};
  offsets = {0.0, 0.0, 0.0};
  // a sparse grid of pixels is plenty for six numbers; the plate is sampled where the homography
  // takes each grid pixel back to
  const int step = std::max(1, static_cast<int>(std::sqrt(double(background.total()) / f::kExposureSamples)));
  std::vector<cv::Point2f> grid;
  for (int y = 0; y < small.rows; y += step) {
    for (int x = 0; x < small.cols; x += step) grid.emplace_back(float(x), float(y));
  }
  const std::vector<cv::Point2f> source = plane::apply(inverse(plane::rescale(homography, scale_)), grid);
  const int height = plateSmall_.rows, width = plateSmall_.cols;
  cv::Mat map(static_cast<int>(source.size()), 1, CV_32FC2, const_cast<cv::Point2f*>(source.data()));
  cv::Mat plateValues;
  cv::remap(plateSmall_, plateValues, map, cv::noArray(), cv::INTER_LINEAR);
  std::array<std::vector<double>, 3> plateUse, frameUse;
  for (size_t i = 0; i < grid.size(); ++i) {
    const cv::Point2f& s = source[i];
    const bool covered = s.x >= 1 && s.x <= width - 2 && s.y >= 1 && s.y <= height - 2;
    const int x = static_cast<int>(grid[i].x), y = static_cast<int>(grid[i].y);
    const cv::Vec3b frameValue = small.at<cv::Vec3b>(y, x), plateValue = plateValues.at<cv::Vec3b>(static_cast<int>(i));
    auto unclipped = [](const cv::Vec3b& v) {
      return std::min({v[0], v[1], v[2]}) > 4 && std::max({v[0], v[1], v[2]}) < 251;
    };
    if (background.at<uchar>(y, x) > 0 && covered && unclipped(frameValue) && unclipped(plateValue)) {
      for (int c = 0; c < 3; ++c) {
        plateUse[c].push_back(plateValue[c]);
        frameUse[c].push_back(frameValue[c]);
      }
    }
  }
  if (plateUse[0].size() < 100) return;
  for (int c = 0; c < 3; ++c) std::tie(gains[c], offsets[c]) = robustLine(plateUse[c], frameUse[c]);
}

cv::Mat PlateAligner::render(const cv::Mat& frame, const cv::Matx33d& homography, const std::array<double, 3>& gains,
                             const std::array<double, 3>& offsets, const cv::Mat& background) const {
  // outside the moved plate's quadrilateral the warp replicates its border, kept only where the subject is
  cv::Mat warped, plate;
  cv::warpPerspective(plate_, warped, homography, cv::Size(width_, height_), cv::INTER_LINEAR, cv::BORDER_REPLICATE);
  cv::LUT(warped, exposureTable(gains, offsets), plate);
  const cv::Mat covered = plane::coveredByPlate(homography, height_, width_);
  if (cv::countNonZero(covered) == static_cast<int>(covered.total())) return plate;
  cv::Mat full = background;
  if (scale_ != 1.0) cv::resize(background, full, cv::Size(width_, height_), 0, 0, cv::INTER_NEAREST);
  for (int y = 0; y < height_; ++y) {  // the frame's own background reads as background
    const uchar* c = covered.ptr<uchar>(y);
    const uchar* b = full.ptr<uchar>(y);
    const cv::Vec3b* source = frame.ptr<cv::Vec3b>(y);
    cv::Vec3b* target = plate.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width_; ++x) {
      if (c[x] == 0 && b[x] > 0) target[x] = source[x];
    }
  }
  return plate;
}

}  // namespace mattex::align
