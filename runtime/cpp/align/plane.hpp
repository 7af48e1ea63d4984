// The plane geometry of a plate brought to a frame, as mattex.runtime.homography computes it:
// where a homography takes points and the image's corners, how far it moves them, whether it is a
// camera's small motion, and which of the frame's pixels the moved plate covers. Each function
// does its arithmetic in the order numpy does it there, so that the two aligners agree.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <vector>

namespace mattex::align::plane {

using Quad = std::array<cv::Point2d, 4>;

// Where `h` takes (0, 0), (width, 0), (width, height), (0, height).
Quad corners(const cv::Matx33d& h, int height, int width);

// Mean distance between where `a` and `b` take the image's corners.
double cornerDistance(const cv::Matx33d& a, const cv::Matx33d& b, int height, int width);

// The mean displacement of the corners (cornerDistance to the identity).
double cornerShift(const cv::Matx33d& h, int height, int width);

// The same motion in an image scaled by `factor`.
cv::Matx33d rescale(const cv::Matx33d& h, double factor);

// Points taken by `h`, in double, returned as float (numpy: float32 points, float64 matrix).
std::vector<cv::Point2f> apply(const cv::Matx33d& h, const std::vector<cv::Point2f>& points);

// Median distance between `target` and where `h` takes `source` (same length, not empty).
double residual(const cv::Matx33d& h, const std::vector<cv::Point2f>& source, const std::vector<cv::Point2f>& target);

// The points' convex hull area as a fraction of the frame's.
double spread(const std::vector<cv::Point2f>& points, int height, int width);

// A camera that moved a little: scale within 0.67-1.5, little shear and perspective, the corners
// still a convex quadrilateral in order.
bool wellConditioned(const cv::Matx33d& h, int height, int width);

// The frame's pixels (CV_8U, 1 inside) that the plate moved by `h` covers, its edge left out.
cv::Mat coveredByPlate(const cv::Matx33d& h, int height, int width);

// numpy's median of doubles (the mean of the two middle values when the count is even).
double median(std::vector<double> values);

// numpy's sum of a float64 array (pairwise, in blocks of 8192 as its reductions buffer them), so
// that sums, means and deviations are numpy's to the last bit.
double sum(const double* values, size_t n);

}  // namespace mattex::align::plane
