// Exact k nearest neighbours by Euclidean distance (paper eq. 1-2: the k nearest features of a
// focus f, j != f). Schema (csrc/ops.cpp):
//
//   knn(Tensor x, Tensor? queries, int k) -> (Tensor dist, Tensor idx)
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "../utils.h"

namespace hdml {

// Args:
//   x:       [N, D] floating point (float32, float64; float16/bfloat16 are computed in float32),
//            any strides, finite values, N >= 1 and D >= 1. The points searched.
//   queries: [M, D], same dtype and device as x, any strides, finite values; M may be 0. Or
//            None: the queries are the rows of x and row i never lists itself (j != i).
//   k:       neighbours per query, 1 <= k <= N, and k <= N - 1 when queries is None.
//
// Returns (dist, idx), both contiguous [M, k] on x's device:
//   dist: x's dtype, the Euclidean distances (not squared), ascending along each row.
//   idx:  int64 row indices into x; among equal distances the smaller index comes first.
//
// Both kernels work on tiles of the distance matrix and never hold an [M, N] matrix:
//   1. scores by the expansion ||x_j||^2 - 2 q.x_j (the squared distance less ||q||^2), the
//      products by a GEMM (at::mm into one reused tile buffer), the norms computed once, on
//      copies of x and the queries centred by expansion_center (below);
//   2. a running selection of the k + kKnnMargin best candidates per query row across tiles;
//   3. a refinement: the candidates' squared distances recomputed by direct differences of the
//      original values (accumulated in double), ordered by (distance, index), the first k
//      kept. The margin keeps a true neighbour that the expansion's rounding ranked a little
//      too far; the refinement makes the returned distances accurate and ties deterministic;
//   4. a certificate: a worst-case bound on the expansion's rounding error shows that no point
//      outside the candidates can be closer than the k-th; rows where it fails (points too
//      close together for the expansion to order, e.g. clusters of near-duplicates) are
//      searched again with more candidates (CPU: 4x, until every point is one; CUDA: up to
//      kKnnCudaMaxCandidates, then by direct differences). The bound is worst-case, so this
//      also happens where a row's k-th distance is tied with points outside its candidates:
//      groups of many identical points cost extra searches (rows in groups of 200 duplicates
//      about 2-3x the time of random data, of 2,000 duplicates about 10x).
//   x and queries are first scaled by one power of two (exact) when their largest magnitude
//   would make squared norms overflow or underflow.
//
// Errors (c10::Error, i.e. RuntimeError in Python), each naming the argument: x not 2-D or not
// floating point, queries not 2-D, dtype or device differing from x, D different from x's,
// N = 0 or D = 0, k < 1, k > N (k > N - 1 when queries is None), non-finite values in x or in
// queries. The CUDA kernel also needs k + kKnnMargin <= kKnnCudaMaxCandidates (k <= 1016).
std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, const std::optional<at::Tensor>& queries,
                                           int64_t k);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& x, const std::optional<at::Tensor>& queries,
                                            int64_t k);
#endif

// Extra candidates kept per query before the exact refinement (fewer when N is smaller).
constexpr int64_t kKnnMargin = 8;

// The CUDA selection keeps at most this many candidates per query row (k + margin).
constexpr int64_t kKnnCudaMaxCandidates = 1024;

// Checks shared by both backends (ranks, dtypes, devices, sizes, k). Values are checked by
// each backend. Returns the number of queries M.
inline int64_t knn_check_args(const at::Tensor& x, const std::optional<at::Tensor>& queries, int64_t k) {
  TORCH_CHECK(x.dim() == 2, "knn: x should be a 2-D tensor [N, D], got ", x.dim(), "-D with shape ",
              shape_str(x));
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "knn: x should be a floating-point tensor, got dtype ",
              x.scalar_type());
  TORCH_CHECK(x.size(0) > 0, "knn: x should have at least one row (N >= 1), got shape ", shape_str(x));
  TORCH_CHECK(x.size(1) > 0, "knn: x should have at least one column (D >= 1), got shape ", shape_str(x));
  const int64_t n = x.size(0);
  int64_t m = n;
  if (queries.has_value()) {
    const at::Tensor& q = *queries;
    TORCH_CHECK(q.dim() == 2, "knn: queries should be a 2-D tensor [M, D], got ", q.dim(), "-D with shape ",
                shape_str(q));
    TORCH_CHECK(q.scalar_type() == x.scalar_type(), "knn: queries should have the same dtype as x (",
                x.scalar_type(), "), got ", q.scalar_type());
    TORCH_CHECK(q.device() == x.device(), "knn: queries should be on the same device as x (", x.device(),
                "), got ", q.device());
    TORCH_CHECK(q.size(1) == x.size(1), "knn: queries should have D = ", x.size(1),
                " columns like x, got shape ", shape_str(q));
    m = q.size(0);
  }
  TORCH_CHECK(k >= 1, "knn: k should be >= 1, got ", k);
  if (queries.has_value()) {
    TORCH_CHECK(k <= n, "knn: k should be <= N = ", n, " (the number of rows of x), got ", k);
  } else {
    TORCH_CHECK(k <= n - 1, "knn: k should be <= N - 1 = ", n - 1,
                " when queries is None (each point excludes itself), got ", k);
  }
  return m;
}

// How many candidates to keep per query: k plus the margin, at most the points available.
inline int64_t knn_num_candidates(int64_t n, bool exclude_self, int64_t k) {
  const int64_t available = exclude_self ? n - 1 : n;
  return std::min(k + kKnnMargin, available);
}

namespace knn_detail {

// The largest magnitude in t (0 when empty), checking that every value is finite; `name` is
// the argument's name for the message. One reduction, no temporary of t's size.
inline double checked_max_abs(const at::Tensor& t, const char* name) {
  if (t.numel() == 0) return 0.0;
  const double max_abs = at::linalg_vector_norm(t, std::numeric_limits<double>::infinity()).item<double>();
  TORCH_CHECK(std::isfinite(max_abs), "knn: ", name, " should contain only finite values, got ",
              std::isnan(max_abs) ? "NaN" : "inf", " in a tensor of shape ", shape_str(t));
  return max_abs;
}

// A power of two that brings max_abs into [0.5, 1) when squared norms of values that large
// (or that small) could overflow (or underflow) in the compute precision; else 1. Scaling by
// a power of two is exact, so it changes no ranking and no tie.
inline double power_of_two_scale(double max_abs, bool double_precision) {
  if (max_abs == 0.0) return 1.0;
  int exponent = 0;
  std::frexp(max_abs, &exponent);
  const int limit = double_precision ? 200 : 24;
  return (exponent > limit || exponent < -limit) ? std::ldexp(1.0, -exponent) : 1.0;
}

// t as a contiguous tensor of dtype `compute`, multiplied by `scale` (copies only as needed).
inline at::Tensor prepare(const at::Tensor& t, at::ScalarType compute, double scale) {
  at::Tensor out = t.to(compute).contiguous();
  if (scale != 1.0) out = out * scale;
  return out;
}

// Per-column centre for the expansion: the column mean rounded to a power-of-two grid no
// finer than the column's standard deviation (a constant column: its value). Distances do not
// change under a translation, but the expansion's rounding error scales with the squared norms,
// so points far from the origin lose their ranking without it. The grid keeps small-integer
// data integer-valued (then the expansion stays exact and exact ties stay exact).
inline at::Tensor expansion_center(const at::Tensor& xs) {
  const auto [var, mean] = at::var_mean(xs, at::IntArrayRef{0}, /*unbiased=*/false);
  const at::Tensor std = var.sqrt();
  const at::Tensor grid = at::exp2(at::floor(at::log2(std)));
  return at::where(std > 0, at::round(mean / grid) * grid, xs.select(0, 0));
}

// The operands of both kernels, in the compute dtype, contiguous, scaled by one power of two.
struct KnnOperands {
  at::Tensor x;          // [N, D] points, for the exact refinement
  at::Tensor queries;    // [M, D] (x itself when queries is None)
  at::Tensor x_exp;      // [N, D] points less the centre, for the expansion
  at::Tensor q_exp;      // [M, D] queries less the centre
  double inv_scale;      // undoes the power-of-two scale on the distances
};

inline KnnOperands knn_operands(const at::Tensor& x, const std::optional<at::Tensor>& queries,
                                at::ScalarType compute, double max_abs) {
  const double scale = power_of_two_scale(max_abs, compute == at::kDouble);
  KnnOperands ops;
  ops.x = prepare(x, compute, scale);
  ops.queries = queries.has_value() ? prepare(*queries, compute, scale) : ops.x;
  const at::Tensor center = expansion_center(ops.x);
  ops.x_exp = ops.x - center;
  ops.q_exp = queries.has_value() ? ops.queries - center : ops.x_exp;
  ops.inv_scale = 1.0 / scale;
  return ops;
}

}  // namespace knn_detail

}  // namespace hdml
