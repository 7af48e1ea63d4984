#include "plane.hpp"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace mattex::align::plane {

Quad corners(const cv::Matx33d& h, int height, int width) {
  const double points[4][2] = {{0.0, 0.0}, {double(width), 0.0}, {double(width), double(height)}, {0.0, double(height)}};
  Quad quad;
  for (int i = 0; i < 4; ++i) {
    const double x = points[i][0], y = points[i][1];
    const double mx = x * h(0, 0) + y * h(0, 1) + h(0, 2);
    const double my = x * h(1, 0) + y * h(1, 1) + h(1, 2);
    const double mz = x * h(2, 0) + y * h(2, 1) + h(2, 2);
    quad[i] = {mx / mz, my / mz};
  }
  return quad;
}

double cornerDistance(const cv::Matx33d& a, const cv::Matx33d& b, int height, int width) {
  const Quad qa = corners(a, height, width), qb = corners(b, height, width);
  double total = 0.0;
  for (int i = 0; i < 4; ++i) {
    const double dx = qa[i].x - qb[i].x, dy = qa[i].y - qb[i].y;
    total += std::sqrt(dx * dx + dy * dy);
  }
  return total / 4;
}

double cornerShift(const cv::Matx33d& h, int height, int width) {
  return cornerDistance(h, cv::Matx33d::eye(), height, width);
}

cv::Matx33d rescale(const cv::Matx33d& h, double factor) {
  const double inverse = 1 / factor;
  cv::Matx33d scaled = h;
  scaled(0, 2) *= factor;
  scaled(1, 2) *= factor;
  scaled(2, 0) *= inverse;
  scaled(2, 1) *= inverse;
  return scaled;
}

std::vector<cv::Point2f> apply(const cv::Matx33d& h, const std::vector<cv::Point2f>& points) {
  std::vector<cv::Point2f> mapped(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    const double x = points[i].x, y = points[i].y;
    const double mx = x * h(0, 0) + y * h(0, 1) + h(0, 2);
    const double my = x * h(1, 0) + y * h(1, 1) + h(1, 2);
    const double mz = x * h(2, 0) + y * h(2, 1) + h(2, 2);
    mapped[i] = {static_cast<float>(mx / mz), static_cast<float>(my / mz)};
  }
  return mapped;
}

double residual(const cv::Matx33d& h, const std::vector<cv::Point2f>& source, const std::vector<cv::Point2f>& target) {
  std::vector<double> distances(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    const double x = source[i].x, y = source[i].y;
    const double mx = x * h(0, 0) + y * h(0, 1) + h(0, 2);
    const double my = x * h(1, 0) + y * h(1, 1) + h(1, 2);
    const double mz = x * h(2, 0) + y * h(2, 1) + h(2, 2);
    const double dx = mx / mz - target[i].x, dy = my / mz - target[i].y;
    distances[i] = std::sqrt(dx * dx + dy * dy);
  }
  return median(std::move(distances));
}

double spread(const std::vector<cv::Point2f>& points, int height, int width) {
  std::vector<cv::Point2f> hull;
  cv::convexHull(points, hull);
  return cv::contourArea(hull) / (double(height) * width);
}

bool wellConditioned(const cv::Matx33d& h, int height, int width) {
  cv::Matx33d n;  // h / h[2, 2]
  for (int i = 0; i < 9; ++i) n.val[i] = h.val[i] / h(2, 2);
  for (double v : n.val) {
    if (!std::isfinite(v)) return false;
  }
  cv::Mat singular;
  cv::SVD::compute(cv::Mat(cv::Matx22d(n(0, 0), n(0, 1), n(1, 0), n(1, 1))), singular, cv::SVD::NO_UV);
  const double high = singular.at<double>(0), low = singular.at<double>(1);
  if (low < 0.67 || high > 1.5 || high / low > 1.2) return false;
  if (std::abs(n(2, 0)) * width + std::abs(n(2, 1)) * height > 0.1) return false;
  const Quad quad = corners(n, height, width);
  for (int i = 0; i < 4; ++i) {
    const cv::Point2d edge = quad[(i + 1) % 4] - quad[i];
    const cv::Point2d next = quad[(i + 2) % 4] - quad[(i + 1) % 4];
    if (!(edge.x * next.y - edge.y * next.x > 0)) return false;
  }
  return true;
}

cv::Mat coveredByPlate(const cv::Matx33d& h, int height, int width) {
  const Quad inside = corners(h, height - 1, width - 1);
  std::vector<cv::Point> points;
  for (const auto& p : inside) {  // np.round: half to even, as nearbyint in the default rounding mode
    points.emplace_back(static_cast<int>(std::nearbyint(p.x * 16)), static_cast<int>(std::nearbyint(p.y * 16)));
  }
  cv::Mat covered = cv::Mat::zeros(height, width, CV_8U);
  cv::fillConvexPoly(covered, points, cv::Scalar(1), cv::LINE_8, 4);
  cv::erode(covered, covered, cv::Mat::ones(3, 3, CV_8U));
  return covered;
}

double median(std::vector<double> values) {
  const size_t n = values.size();
  if (n == 0) return std::nan("");
  const size_t half = n / 2;
  std::nth_element(values.begin(), values.begin() + half, values.end());
  const double upper = values[half];
  if (n % 2) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + half);
  return (lower + upper) / 2;
}

namespace {

// numpy's pairwise_sum for float64 (umath/loops_utils.h): sequential under 8, eight running sums up
// to 128, halves (kept multiples of 8) beyond.
double pairwise(const double* a, size_t n) {
  if (n < 8) {
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) total += a[i];
    return total;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) total += a[i];
    return total;
  }
  size_t half = n / 2;
  half -= half % 8;
  return pairwise(a, half) + pairwise(a + half, n - half);
}

}  // namespace

double sum(const double* values, size_t n) {
  double total = 0.0;
  for (size_t start = 0; start < n; start += 8192) total += pairwise(values + start, std::min<size_t>(8192, n - start));
  return total;
}

}  // namespace mattex::align::plane
