// Exact kNN on the CPU: GEMM tiles into one reused buffer, a pruned running selection per
// query row, then an exact refinement of the selected candidates.
//
// For each block of query rows, at::mm_out writes the products q.x_j with (up to
// kTileElements / rows) points into one tile buffer, allocated once; BLAS runs outside any
// parallel region. Then, in parallel over the block's rows, each row's scores
// s_j = ||x_j||^2 - 2 q.x_j (the squared distance less the row constant ||q||^2; x and q
// centred, see knn.h) stream past a threshold: eight at a time (AVX2 where the CPU has it),
// one compare and a movemask reject most of the row. A score below the threshold is appended
// to the row's candidate buffer; when the buffer is full, nth_element keeps the best
// c = k + margin and the threshold becomes the c-th best score. Points arrive in increasing
// index order, so a score equal to the threshold loses its tie and the strict `<` is exact.
// When a row has seen every point, its c candidates' squared distances are recomputed by
// direct differences in double, ordered by (distance, index), and the first k written out, in
// the same parallel pass. Memory: the tile, [rows, capacity] candidate buffers, norms of x.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define HDML_KNN_AVX2 1
#include <immintrin.h>
#endif

#include "knn.h"

namespace hdml {
namespace {

using namespace knn_detail;

// At most this many query rows per block, and this many tile elements (rows x points): a
// float32 tile of 256 x 20,000 points (20 MB) serves a whole block in one GEMM.
constexpr int64_t kTileQueries = 256;
constexpr int64_t kTileElements = int64_t{1} << 23;
// Candidate buffer per row: c kept plus at least this much room before each compaction.
constexpr int64_t kMinSlack = 64;
// Query rows per parallel task.
constexpr int64_t kRowGrain = 4;

#ifdef HDML_KNN_AVX2
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

inline int64_t tune(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? static_cast<int64_t>(std::atoll(v)) : fallback;
}

// Scores as integers of the same order: the float's bits, with the magnitude bits of negative
// values flipped (one-to-one, order-preserving for every non-NaN value but -0, which no score
// takes: a difference that is exactly 0 rounds to +0).
template <typename T>
using key_t = std::conditional_t<std::is_same_v<T, float>, int32_t, int64_t>;

template <typename T>
inline key_t<T> score_key(T score) {
  key_t<T> bits;
  std::memcpy(&bits, &score, sizeof(T));
  return bits >= 0 ? bits : bits ^ std::numeric_limits<key_t<T>>::max();
}

template <typename T>
inline T key_score(key_t<T> key) {
  const key_t<T> bits = key >= 0 ? key : key ^ std::numeric_limits<key_t<T>>::max();
  T score;
  std::memcpy(&score, &bits, sizeof(T));
  return score;
}

// Keeps the `keep` best of the keys[0, count) (and their ids), in their order, and returns the
// worst key kept. The keep-th smallest key t is found by bisection on the key range, each step
// one branch-free count (vectorised); then a stable pass keeps every key below t and, of those
// equal to t, the earliest (the smallest indices). count < 2^31.
template <typename K>
inline __attribute__((always_inline)) K compact_keys_impl(K* keys, int64_t* ids, int64_t count, int64_t keep) {
  K lo = keys[0];
  K hi = keys[0];
  for (int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, keys[i]);
    hi = std::max(hi, keys[i]);
  }
  const int32_t n = static_cast<int32_t>(count);
  const int32_t want = static_cast<int32_t>(keep);
  using U = std::make_unsigned_t<K>;
  while (lo < hi) {
    // Unsigned arithmetic: hi - lo may exceed the signed range.
    const K mid = static_cast<K>(static_cast<U>(lo) + (static_cast<U>(hi) - static_cast<U>(lo)) / 2);
    int32_t at_most = 0;
    for (int32_t i = 0; i < n; ++i) at_most += static_cast<int32_t>(keys[i] <= mid);
    if (at_most >= want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const K t = lo;
  int32_t below = 0;
  for (int32_t i = 0; i < n; ++i) below += static_cast<int32_t>(keys[i] < t);
  int32_t ties_left = want - below;
  int64_t out = 0;
  for (int32_t i = 0; i < n; ++i) {
    // Branch-free: whether an entry is kept is close to a coin toss.
    const K key = keys[i];
    const int32_t tie = static_cast<int32_t>(key == t) & static_cast<int32_t>(ties_left > 0);
    ties_left -= tie;
    keys[out] = key;
    ids[out] = ids[i];
    out += static_cast<int64_t>(static_cast<int32_t>(key < t) | tie);
  }
  return t;
}

#ifdef HDML_KNN_AVX2
__attribute__((target("avx2"))) int32_t compact_keys_avx2(int32_t* keys, int64_t* ids, int64_t count,
                                                          int64_t keep) {
  return compact_keys_impl(keys, ids, count, keep);
}
#endif

template <typename K>
K compact_keys(K* keys, int64_t* ids, int64_t count, int64_t keep) {
#ifdef HDML_KNN_AVX2
  if constexpr (std::is_same_v<K, int32_t>) {
    if (cpu_has_avx2()) return compact_keys_avx2(keys, ids, count, keep);
  }
#endif
  return compact_keys_impl(keys, ids, count, keep);
}

// One row's running selection: (keys, ids)[0, count) are candidates in increasing index order,
// all with an index below every point still to come. Once the buffer has been compacted,
// threshold_key is the keep-th best key and `threshold` its score (+inf before): later points
// are accepted only below it. A view into per-block arrays, valid for one tile.
template <typename T>
struct RowSelection {
  using K = key_t<T>;
  K* keys;
  int64_t* ids;
  int64_t count;
  int64_t keep;
  int64_t capacity;
  T threshold;

  // Keeps the `keep` best candidates, in their order; the threshold becomes the worst of them.
  void compact() {
    threshold = key_score<T>(compact_keys(keys, ids, count, keep));
    count = keep;
  }

  // Appends a candidate whose score beat the threshold (checked by the caller).
  inline void push(T score, int64_t index) {
    keys[count] = score_key(score);
    ids[count] = index;
    if (++count == capacity) compact();
  }
};

// Offers the scores norms[c] - 2 prod[c] of points col0 + c, c in [0, cols), in order.
// 2 prod is exact, so every path computes the same scores (one rounding of the subtraction).
template <typename T>
void scan_row_scalar(const T* prod, const T* norms, int64_t col0, int64_t cols, RowSelection<T>& sel) {
  for (int64_t c = 0; c < cols; ++c) {
    const T s = norms[c] - T(2) * prod[c];
    if (s < sel.threshold) sel.push(s, col0 + c);
  }
}

#ifdef HDML_KNN_AVX2
// The same with AVX2: sixteen scores per step, one branch unless one of them beats the threshold.
__attribute__((target("avx2,fma"))) void scan_row_avx2(const float* prod, const float* norms, int64_t col0,
                                                        int64_t cols, RowSelection<float>& sel) {
  const __m256 two = _mm256_set1_ps(2.0f);
  __m256 thr = _mm256_set1_ps(sel.threshold);
  alignas(32) float scores[16];
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const __m256 s0 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(prod + c), _mm256_loadu_ps(norms + c));
    const __m256 s1 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(prod + c + 8), _mm256_loadu_ps(norms + c + 8));
    const __m256 lt0 = _mm256_cmp_ps(s0, thr, _CMP_LT_OQ);
    const __m256 lt1 = _mm256_cmp_ps(s1, thr, _CMP_LT_OQ);
    if (_mm256_testz_ps(_mm256_or_ps(lt0, lt1), _mm256_or_ps(lt0, lt1))) continue;
    _mm256_store_ps(scores, s0);
    _mm256_store_ps(scores + 8, s1);
    unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(lt0)) |
                    (static_cast<unsigned>(_mm256_movemask_ps(lt1)) << 8);
    while (mask != 0) {
      const int b = __builtin_ctz(mask);
      mask &= mask - 1;
      if (scores[b] < sel.threshold) sel.push(scores[b], col0 + c + b);
    }
    thr = _mm256_set1_ps(sel.threshold);
  }
  scan_row_scalar(prod + c, norms + c, col0 + c, cols - c, sel);
}

#endif

template <typename T>
inline void scan_row(const T* prod, const T* norms, int64_t col0, int64_t cols, RowSelection<T>& sel) {
#ifdef HDML_KNN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx2()) {
      scan_row_avx2(prod, norms, col0, cols, sel);
      return;
    }
  }
#endif
  scan_row_scalar(prod, norms, col0, cols, sel);
}

// Squared Euclidean distance of two d-vectors, accumulated in double.
template <typename T>
double squared_distance_scalar(const T* a, const T* b, int64_t d) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= d; i += 4) {
    for (int64_t l = 0; l < 4; ++l) {
      const double diff = static_cast<double>(a[i + l]) - static_cast<double>(b[i + l]);
      acc[l] += diff * diff;
    }
  }
  for (; i < d; ++i) {
    const double diff = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    acc[0] += diff * diff;
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

#ifdef HDML_KNN_AVX2
__attribute__((target("avx2,fma"))) double squared_distance_avx2(const float* a, const float* b, int64_t d) {
  __m256d acc0 = _mm256_setzero_pd();
  __m256d acc1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)));
    const __m256d d1 =
        _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)));
    acc0 = _mm256_fmadd_pd(d0, d0, acc0);
    acc1 = _mm256_fmadd_pd(d1, d1, acc1);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
  double acc = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < d; ++i) {
    const double diff = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    acc += diff * diff;
  }
  return acc;
}
#endif

template <typename T>
inline double squared_distance(const T* a, const T* b, int64_t d) {
#ifdef HDML_KNN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx2()) return squared_distance_avx2(a, b, d);
  }
#endif
  return squared_distance_scalar(a, b, d);
}

template <typename T, typename out_t>
void knn_kernel(const KnnOperands& operands, bool exclude_self, int64_t k, at::Tensor& dist, at::Tensor& idx) {
  const at::Tensor& xe = operands.x_exp;
  const at::Tensor& qe = operands.q_exp;
  const int64_t n = xe.size(0);
  const int64_t d = xe.size(1);
  const int64_t m = qe.size(0);
  const int64_t keep = knn_num_candidates(n, exclude_self, k);
  const int64_t capacity = keep + std::max(keep, tune("KS", kMinSlack));
  const T* x_ref = operands.x.data_ptr<T>();
  const T* q_ref = operands.queries.data_ptr<T>();
  const T* xe_p = xe.data_ptr<T>();

  // ||x_j||^2 of the centred points, once (double accumulation, rounded to T).
  std::vector<T> norms(static_cast<size_t>(n));
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const T* row = xe_p + j * d;
      double acc = 0.0;
      for (int64_t l = 0; l < d; ++l) acc += static_cast<double>(row[l]) * static_cast<double>(row[l]);
      norms[static_cast<size_t>(j)] = static_cast<T>(acc);
    }
  });

  const int64_t tile_rows = std::min(tune("KQ", kTileQueries), m);
  const int64_t tile_cols = std::min(n, std::max<int64_t>(1024, tune("KE", kTileElements) / tile_rows));
  at::Tensor tile = at::empty({tile_rows * tile_cols}, xe.options());
  std::vector<key_t<T>> keys(static_cast<size_t>(tile_rows * capacity));
  std::vector<int64_t> ids(static_cast<size_t>(tile_rows * capacity));
  std::vector<int64_t> counts(static_cast<size_t>(tile_rows));
  std::vector<T> thresholds(static_cast<size_t>(tile_rows));

  out_t* dist_p = dist.data_ptr<out_t>();
  int64_t* idx_p = idx.data_ptr<int64_t>();

  for (int64_t q0 = 0; q0 < m; q0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, m - q0);
    std::fill(counts.begin(), counts.end(), 0);
    std::fill(thresholds.begin(), thresholds.end(), std::numeric_limits<T>::infinity());
    const at::Tensor q_block = qe.narrow(0, q0, rows);
    for (int64_t c0 = 0; c0 < n; c0 += tile_cols) {
      const int64_t cols = std::min(tile_cols, n - c0);
      const bool last_tile = c0 + cols == n;
      at::Tensor prod = tile.narrow(0, 0, rows * cols).view({rows, cols});
      at::mm_out(prod, q_block, xe.narrow(0, c0, cols).t());
      T* prod_p = prod.data_ptr<T>();
      at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
        std::vector<std::pair<double, int64_t>> refined(static_cast<size_t>(keep));
        for (int64_t r = begin; r < end; ++r) {
          T* prow = prod_p + r * cols;
          const int64_t self = q0 + r - c0;
          // A query never lists itself: its score becomes +inf, which beats no threshold.
          if (exclude_self && self >= 0 && self < cols) prow[self] = -std::numeric_limits<T>::infinity();
          RowSelection<T> sel{keys.data() + r * capacity, ids.data() + r * capacity, counts[r], keep, capacity,
                              thresholds[r]};
          scan_row(prow, norms.data() + c0, c0, cols, sel);
          counts[r] = sel.count;
          thresholds[r] = sel.threshold;
          if (!last_tile) continue;
          // Refinement: exact squared distances of the best `keep`, ordered by (distance, index).
          if (sel.count > keep) sel.compact();
          const T* q = q_ref + (q0 + r) * d;
          // The candidates' rows are scattered over x: request them all before reading any.
          for (int64_t c = 0; c < keep; ++c) {
            const char* row = reinterpret_cast<const char*>(x_ref + sel.ids[c] * d);
            for (int64_t o = 0; o < d * static_cast<int64_t>(sizeof(T)); o += 64) __builtin_prefetch(row + o);
          }
          for (int64_t c = 0; c < keep; ++c) {
            const int64_t j = sel.ids[c];
            refined[static_cast<size_t>(c)] = {squared_distance(q, x_ref + j * d, d), j};
          }
          std::sort(refined.begin(), refined.end());
          out_t* drow = dist_p + (q0 + r) * k;
          int64_t* irow = idx_p + (q0 + r) * k;
          for (int64_t c = 0; c < k; ++c) {
            const auto& [d2, j] = refined[static_cast<size_t>(c)];
            drow[c] = static_cast<out_t>(std::sqrt(d2) * operands.inv_scale);
            irow[c] = j;
          }
        }
      });
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& x, const std::optional<at::Tensor>& queries,
                                           int64_t k) {
  const int64_t m = knn_check_args(x, queries, k);
  TORCH_CHECK(x.device().is_cpu(), "knn: x should be a CPU tensor for the CPU kernel, got ", x.device());
  double max_abs = checked_max_abs(x, "x");
  if (queries.has_value()) max_abs = std::max(max_abs, checked_max_abs(*queries, "queries"));

  at::Tensor dist = at::empty({m, k}, x.options());
  at::Tensor idx = at::empty({m, k}, x.options().dtype(at::kLong));
  if (m == 0) return {dist, idx};

  const bool exclude_self = !queries.has_value();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_cpu", [&] {
    // float16 and bfloat16 are computed in float32; the distances come back in x's dtype.
    using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const at::ScalarType compute = c10::CppTypeToScalarType<compute_t>::value;
    const KnnOperands operands = knn_operands(x, queries, compute, max_abs);
    knn_kernel<compute_t, scalar_t>(operands, exclude_self, k, dist, idx);
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("knn", &knn_cpu);
}

}  // namespace hdml
