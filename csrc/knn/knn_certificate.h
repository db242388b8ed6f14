// The certificate of the kNN kernels (knn.h, step 4; knn_cpu.cpp, knn_cuda.cu and
// knn_ivf/knn_ivf_cpu.cpp): a worst-case bound on the rounding of the expansion scores shows that
// no point a row's selection dropped can be closer than its k-th candidate.
//
// Every dropped point j had an expansion score s_j = ||x~_j||^2 - 2 q~.x~_j of at least the
// selection's final threshold thr. Computed scores are within e = u (|thr| + R^2) + 2 gamma |q~| R
// of the true centred scores |x~_j - q~|^2 - |q~|^2 (u: unit roundoff, R >= every |x~_j|, gamma:
// the worst-case relative error of a d-term dot product in any summation order), and the centred
// points are within u (R + |q~|) of the true differences. That bounds the distance of every
// dropped point from below; when the k-th candidate's exact distance is strictly less, the
// candidates hold the exact answer. It fails for ties with the k-th and where points are too
// close together, relative to their distance from the centre, for the expansion's rounding to
// order them (e.g. tight clusters far apart, near-duplicates).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__CUDACC__)
#define HDML_HOST_DEVICE __host__ __device__
#else
#define HDML_HOST_DEVICE
#endif

namespace hdml {
namespace knn_detail {

struct ExpansionBound {
  double unit;      // unit roundoff of the compute type, inflated to cover the double-precision steps
  double gamma;     // bound on the relative error of a d-term dot product in it (any order)
  double max_norm;  // an upper bound on ||x~_j|| over all points
};

// The bound for d-dimensional points of compute type T whose largest centred squared norm, as
// computed in T, is max_norm2.
template <typename T>
ExpansionBound expansion_bound(int64_t d, double max_norm2) {
  ExpansionBound bound{};
  bound.unit = std::ldexp(1.0, -std::numeric_limits<T>::digits) * 1.01 + static_cast<double>(d) * 0x1p-52;
  const double du = static_cast<double>(d) * bound.unit;
  bound.gamma = du < 0.5 ? du / (1.0 - du) : std::numeric_limits<double>::infinity();
  bound.max_norm = std::sqrt(max_norm2 * (1.0 + 4.0 * bound.unit));
  return bound;
}

// The same from the points' centred squared norms as computed in T; +inf entries (padding
// columns) are skipped.
template <typename T>
ExpansionBound expansion_bound(int64_t d, const std::vector<T>& norms) {
  double max_norm2 = 0.0;
  for (const T v : norms) {
    if (!std::isinf(v)) max_norm2 = std::max(max_norm2, static_cast<double>(v));
  }
  return expansion_bound<T>(d, max_norm2);
}

// The query's centred squared norm |q~|^2 in double, as `certifies` takes it (host code).
template <typename T>
double centred_squared_norm(const T* q_exp, int64_t d) {
  double q_norm2 = 0.0;
  for (int64_t l = 0; l < d; ++l) q_norm2 += static_cast<double>(q_exp[l]) * static_cast<double>(q_exp[l]);
  return q_norm2;
}

// True when every point whose expansion score was at least thr is certainly farther from the
// query (centred squared norm q_norm2) than the candidate at exact squared distance kth2.
HDML_HOST_DEVICE inline bool certifies(const ExpansionBound& bound, double kth2, double thr, double q_norm2) {
  const double r = bound.max_norm;
  const double q_norm = sqrt(q_norm2);
  const double e = bound.unit * (fabs(thr) + r * r) + 2.0 * bound.gamma * q_norm * r;
  const double lower2 = thr - e + q_norm2;
  const double lower = (lower2 > 0.0 ? sqrt(lower2) : 0.0) - bound.unit * (r + q_norm);
  return sqrt(kth2) * (1.0 + 4.0 * bound.unit) < lower * (1.0 - 4.0 * bound.unit);
}

}  // namespace knn_detail
}  // namespace hdml
