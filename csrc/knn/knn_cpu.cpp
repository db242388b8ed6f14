// Exact kNN on the CPU: GEMM tiles into one reused buffer, a pruned running selection per
// query row, then an exact refinement of the selected candidates.
//
// Scores: s_j = ||x_j||^2 - 2 q.x_j, the squared distance less the row constant ||q||^2, with x
// and the queries centred (knn.h). The products come from at::mm_out into one tile buffer of
// kTileQueries x kTileColumns, allocated once; BLAS always runs outside the parallel regions.
//
// Selection, per query row: scores stream past a threshold sixteen at a time (AVX2 where the
// CPU has it), so most of a tile row costs one compare and one test. A score below the
// threshold is appended to the row's candidate buffer (as an order-preserving integer key, with
// its index); when the buffer is full, it is compacted to the best c = k + margin by a
// vectorised bisection on the keys, and the threshold becomes the c-th best score. Every row
// sees the points in increasing index order, so a score equal to the threshold loses its tie
// and the strict `<` is exact.
//
// Two schedules feed the selections:
// - queries given (or too many points for the next one): blocks of query rows, each against
//   the points one tile at a time; selections for one block.
// - queries = x: the matrix of scores is symmetric, so a block of rows is multiplied only with
//   the points from its own first row on (half the GEMM work); the block's rows scan the tile's
//   rows, and the rows of later points take the block's points from the tile's columns.
//   Selections for all rows.
// When a row has seen every point, its c candidates' squared distances are recomputed by direct
// differences in double, ordered by (distance, index), and the first k written out, in the same
// parallel pass, once a rounding-error bound certifies that no other point can be closer than
// the k-th (finish_row). Rows that fail it are searched again with four times the candidates.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GNUC__) || defined(__clang__)
#define HDML_KNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define HDML_KNN_PREFETCH(address) __builtin_prefetch(address)
#if defined(__x86_64__)
// AVX2 paths, chosen at run time (the extension is built for the baseline instruction set).
#define HDML_KNN_AVX2 1
#include <immintrin.h>
#endif
#else
#define HDML_KNN_ALWAYS_INLINE inline
#define HDML_KNN_PREFETCH(address) static_cast<void>(address)
#endif

#include "knn.h"

namespace hdml {
namespace {

using namespace knn_detail;

// Tile: query rows per block x points per GEMM (16 MiB in float32). Smaller tiles stay in the
// L2 cache, but each one costs a GEMM call and a parallel region, and on a busy machine every
// region's barrier can cost a scheduler time slice: at N = 20,000 this size took ~25% less
// time than 512 x 2048 with other jobs running, and the same without.
constexpr int64_t kTileQueries = 1024;
constexpr int64_t kTileColumns = 4096;
// Candidate buffer per row: c kept plus at least this much room before each compaction.
constexpr int64_t kMinSlack = 64;
// Query rows per parallel task.
constexpr int64_t kRowGrain = 4;
// The symmetric self-search keeps selections for all n rows, up to this many candidate slots
// (n x capacity; 12 bytes each for float32).
constexpr int64_t kMaxSymmetricCandidates = int64_t{1} << 24;
// The blocked schedule keeps selections for at most this many candidate slots per block.
constexpr int64_t kMaxBlockCandidates = int64_t{1} << 22;

#ifdef HDML_KNN_AVX2
bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

// Scores as integers of the same order: the float's bits, with the magnitude bits of negative
// values flipped (one-to-one, order-preserving for every non-NaN value but -0, which no score
// takes: a difference that is exactly 0 rounds to +0).
template <typename T>
using score_key_t = std::conditional_t<std::is_same_v<T, float>, int32_t, int64_t>;

template <typename T>
inline score_key_t<T> score_key(T score) {
  score_key_t<T> bits;
  std::memcpy(&bits, &score, sizeof(T));
  return bits >= 0 ? bits : bits ^ std::numeric_limits<score_key_t<T>>::max();
}

template <typename T>
inline T key_score(score_key_t<T> key) {
  const score_key_t<T> bits = key >= 0 ? key : key ^ std::numeric_limits<score_key_t<T>>::max();
  T score;
  std::memcpy(&score, &bits, sizeof(T));
  return score;
}

// Keeps the `keep` best of keys[0, count) (and their ids), in their order, and returns the worst
// key kept, t: every key dropped is >= t, and of the keys equal to t the earliest (smallest
// indices) are kept, so later keys >= t can be rejected. t, the keep-th smallest key, is found by
// bisection on the key range, each step one branch-free (vectorised) count; a stable pass then
// moves the kept entries down. count < 2^31.
template <typename K>
HDML_KNN_ALWAYS_INLINE K compact_keys_impl(K* keys, int64_t* ids, int64_t count, int64_t keep) {
  // The ids are only read by the final pass: request them now, the bisection hides the latency.
  for (int64_t i = 0; i < count; i += 64 / static_cast<int64_t>(sizeof(int64_t))) HDML_KNN_PREFETCH(ids + i);
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
// `threshold` is the keep-th best score (+inf before): later points are accepted only below it.
// A view into a SelectionStore's arrays.
template <typename T>
struct RowSelection {
  using K = score_key_t<T>;
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

// Per-row selection state for a range of rows: keys and ids [rows, capacity], counts, thresholds.
// The candidate arrays are left uninitialised: only entries below a row's count are ever read.
template <typename T>
struct SelectionStore {
  int64_t keep;
  int64_t capacity;
  std::unique_ptr<score_key_t<T>[]> keys;
  std::unique_ptr<int64_t[]> ids;
  std::vector<int64_t> counts;
  std::vector<T> thresholds;

  SelectionStore(int64_t rows, int64_t keep_, int64_t capacity_)
      : keep(keep_),
        capacity(capacity_),
        keys(new score_key_t<T>[static_cast<size_t>(rows * capacity_)]),
        ids(new int64_t[static_cast<size_t>(rows * capacity_)]),
        counts(static_cast<size_t>(rows)),
        thresholds(static_cast<size_t>(rows)) {
    reset();
  }

  void reset() {
    std::fill(counts.begin(), counts.end(), 0);
    std::fill(thresholds.begin(), thresholds.end(), std::numeric_limits<T>::infinity());
  }

  RowSelection<T> load(int64_t r) {
    return {keys.get() + r * capacity, ids.get() + r * capacity, counts[r], keep, capacity, thresholds[r]};
  }

  void store(int64_t r, const RowSelection<T>& sel) {
    counts[r] = sel.count;
    thresholds[r] = sel.threshold;
  }

  // Appends a candidate that beat row r's threshold to row r's selection.
  void push(int64_t r, T score, int64_t index) {
    RowSelection<T> sel = load(r);
    sel.push(score, index);
    store(r, sel);
  }
};

// Offers tile columns to the selections of their rows: for every tile row i in [0, rows) and
// column c in [c_begin, c_end), the score row_norms[i] - 2 tile[i * ld + c] of point row0 + i
// goes to the selection of row j0 + c. The tile is read row by row (a stream, not a strided
// walk); tile rows come in increasing order, so each selection still sees increasing indices.
template <typename T>
void scan_columns_scalar(const T* tile, int64_t ld, int64_t rows, const T* row_norms, int64_t row0,
                         int64_t c_begin, int64_t c_end, int64_t j0, SelectionStore<T>& store) {
  T* thr = store.thresholds.data() + j0;
  for (int64_t i = 0; i < rows; ++i) {
    const T* t = tile + i * ld;
    const T n = row_norms[i];
    for (int64_t c = c_begin; c < c_end; ++c) {
      const T s = n - T(2) * t[c];
      if (s < thr[c]) store.push(j0 + c, s, row0 + i);
    }
  }
}

#ifdef HDML_KNN_AVX2
// The same with AVX2, sixteen columns per step.
__attribute__((target("avx2,fma"))) void scan_columns_avx2(const float* tile, int64_t ld, int64_t rows,
                                                            const float* row_norms, int64_t row0, int64_t c_begin,
                                                            int64_t c_end, int64_t j0,
                                                            SelectionStore<float>& store) {
  const float* thr = store.thresholds.data() + j0;
  const __m256 two = _mm256_set1_ps(2.0f);
  alignas(32) float scores[16];
  const int64_t c_vec_end = c_begin + (c_end - c_begin) / 16 * 16;
  for (int64_t i = 0; i < rows; ++i) {
    const float* t = tile + i * ld;
    const __m256 n = _mm256_set1_ps(row_norms[i]);
    for (int64_t c = c_begin; c < c_vec_end; c += 16) {
      const __m256 s0 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(t + c), n);
      const __m256 s1 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(t + c + 8), n);
      const __m256 lt0 = _mm256_cmp_ps(s0, _mm256_loadu_ps(thr + c), _CMP_LT_OQ);
      const __m256 lt1 = _mm256_cmp_ps(s1, _mm256_loadu_ps(thr + c + 8), _CMP_LT_OQ);
      if (_mm256_testz_ps(_mm256_or_ps(lt0, lt1), _mm256_or_ps(lt0, lt1))) continue;
      _mm256_store_ps(scores, s0);
      _mm256_store_ps(scores + 8, s1);
      unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(lt0)) |
                      (static_cast<unsigned>(_mm256_movemask_ps(lt1)) << 8);
      while (mask != 0) {
        const int b = __builtin_ctz(mask);
        mask &= mask - 1;
        store.push(j0 + c + b, scores[b], row0 + i);
      }
    }
  }
  if (c_vec_end < c_end) scan_columns_scalar(tile, ld, rows, row_norms, row0, c_vec_end, c_end, j0, store);
}
#endif

template <typename T>
inline void scan_columns(const T* tile, int64_t ld, int64_t rows, const T* row_norms, int64_t row0,
                         int64_t c_begin, int64_t c_end, int64_t j0, SelectionStore<T>& store) {
#ifdef HDML_KNN_AVX2
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_has_avx2()) {
      scan_columns_avx2(tile, ld, rows, row_norms, row0, c_begin, c_end, j0, store);
      return;
    }
  }
#endif
  scan_columns_scalar(tile, ld, rows, row_norms, row0, c_begin, c_end, j0, store);
}

// The points, as both schedules and finish_row use them, with the constants of the
// certificate in finish_row.
template <typename T>
struct Points {
  const T* x_ref;           // [n, d] the points, scaled like the queries (for exact distances)
  const T* x_exp;           // [n, d] the points centred (for the expansion)
  at::Tensor x_exp_tensor;  // the same as a tensor, for at::mm
  std::vector<T> norms;     // ||x~_j||^2, rounded to T
  int64_t n;
  int64_t d;
  int64_t k;
  double inv_scale;  // undoes the power-of-two scale on the distances
  double unit;       // unit roundoff of T, inflated to cover the double-precision steps
  double gamma;      // bound on the relative error of a d-term dot product in T (any order)
  double max_norm;   // an upper bound on ||x~_j|| over all points
};

// ||x_j||^2 of every row of the contiguous [n, d] xe (double accumulation, rounded to T).
template <typename T>
std::vector<T> squared_norms(const T* xe, int64_t n, int64_t d) {
  std::vector<T> norms(static_cast<size_t>(n));
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const T* row = xe + j * d;
      double acc = 0.0;
      for (int64_t l = 0; l < d; ++l) acc += static_cast<double>(row[l]) * static_cast<double>(row[l]);
      norms[static_cast<size_t>(j)] = static_cast<T>(acc);
    }
  });
  return norms;
}

template <typename T>
Points<T> make_points(const KnnOperands& operands, int64_t k) {
  Points<T> p;
  p.x_ref = operands.x.data_ptr<T>();
  p.x_exp_tensor = operands.x_exp;
  p.x_exp = operands.x_exp.data_ptr<T>();
  p.n = operands.x.size(0);
  p.d = operands.x.size(1);
  p.k = k;
  p.inv_scale = operands.inv_scale;
  p.norms = squared_norms(p.x_exp, p.n, p.d);
  p.unit = std::ldexp(1.0, -std::numeric_limits<T>::digits) * 1.01 + static_cast<double>(p.d) * 0x1p-52;
  const double du = static_cast<double>(p.d) * p.unit;
  p.gamma = du < 0.5 ? du / (1.0 - du) : std::numeric_limits<double>::infinity();
  double max_norm2 = 0.0;
  for (const T v : p.norms) max_norm2 = std::max(max_norm2, static_cast<double>(v));
  p.max_norm = std::sqrt(max_norm2 * (1.0 + 4.0 * p.unit));
  return p;
}

// A set of query rows: original (scaled like x) and centred, the point each row skips (or
// none), and where its results go. failed[r] is set for a row whose result could not be
// certified; nothing is written to its outputs then.
template <typename T, typename out_t>
struct QuerySet {
  at::Tensor q_exp_tensor;  // [m, d] centred, contiguous, for at::mm
  const T* q_ref;           // [m, d]
  const T* q_exp;           // [m, d]
  const int64_t* self;      // [m] the point each row skips, or nullptr: none
  int64_t m;
  out_t* dist;              // [m, k]
  int64_t* idx;             // [m, k]
  uint8_t* failed;          // [m]
};

// A row that has seen every point: its best `keep` candidates' squared distances recomputed by
// direct differences (double), ordered by (distance, index), the first k written out. Returns
// false, writing nothing, when that cannot be certified to be the exact answer:
//
// Every point that is not a candidate had an expansion score of at least the row's final
// threshold thr. Expansion scores are within e = u (|thr| + R^2) + 2 gamma |q~| R of the true
// centred scores |x~_j - q~|^2 - |q~|^2 (u: unit roundoff, R >= every |x~_j|, gamma: the
// worst-case relative error of a d-term dot product in any summation order), and the centred
// points are within u (R + |q~|) of the true differences. That bounds the distance of every
// non-candidate from below; when the k-th candidate is strictly closer, the candidates hold the
// exact answer. It fails when points are too close together, relative to their distance from
// the centre, for the expansion's rounding to order them (e.g. tight clusters far apart); the
// caller then searches those rows again with more candidates. q_exp is the centred query.
template <typename T, typename out_t>
bool finish_row(RowSelection<T>& sel, const T* q, const T* q_exp, const Points<T>& pts,
                std::pair<double, int64_t>* refined, out_t* drow, int64_t* irow) {
  if (sel.count > sel.keep) sel.compact();
  const int64_t keep = sel.keep;
  const int64_t d = pts.d;
  // The candidates' rows are scattered over x: request them all before reading any.
  for (int64_t c = 0; c < keep; ++c) {
    const char* row = reinterpret_cast<const char*>(pts.x_ref + sel.ids[c] * d);
    for (int64_t o = 0; o < d * static_cast<int64_t>(sizeof(T)); o += 64) HDML_KNN_PREFETCH(row + o);
  }
  for (int64_t c = 0; c < keep; ++c) {
    const int64_t j = sel.ids[c];
    refined[c] = {squared_distance(q, pts.x_ref + j * d, d), j};
  }
  std::sort(refined, refined + keep);

  if (!std::isinf(sel.threshold)) {  // +inf: every point is a candidate
    double q_norm2 = 0.0;
    for (int64_t l = 0; l < d; ++l) q_norm2 += static_cast<double>(q_exp[l]) * static_cast<double>(q_exp[l]);
    const double q_norm = std::sqrt(q_norm2);
    const double thr = static_cast<double>(sel.threshold);
    const double r = pts.max_norm;
    const double e = pts.unit * (std::abs(thr) + r * r) + 2.0 * pts.gamma * q_norm * r;
    const double lower2 = thr - e + q_norm2;
    const double lower = (lower2 > 0.0 ? std::sqrt(lower2) : 0.0) - pts.unit * (r + q_norm);
    const double kth = std::sqrt(refined[pts.k - 1].first);
    if (!(kth * (1.0 + 4.0 * pts.unit) < lower * (1.0 - 4.0 * pts.unit))) return false;
  }
  for (int64_t c = 0; c < pts.k; ++c) {
    const double value = std::sqrt(refined[c].first) * pts.inv_scale;
    if constexpr (std::is_same_v<out_t, double>) {
      drow[c] = value;
    } else {
      drow[c] = static_cast<out_t>(static_cast<float>(value));
    }
    irow[c] = refined[c].second;
  }
  return true;
}

// Any queries: blocks of query rows against tiles of points, selections per block.
template <typename T, typename out_t>
void knn_blocked(const Points<T>& pts, const QuerySet<T, out_t>& qs, int64_t keep, int64_t capacity) {
  const int64_t n = pts.n;
  const int64_t d = pts.d;
  const int64_t k = pts.k;
  const int64_t m = qs.m;
  // Fewer rows per block when each row keeps many candidates (retries): the block's
  // selections stay within kMaxBlockCandidates slots.
  const int64_t tile_rows = std::min({kTileQueries, m, std::max<int64_t>(1, kMaxBlockCandidates / capacity)});
  const int64_t tile_cols = std::min(kTileColumns, n);
  at::Tensor tile = at::empty({tile_rows * tile_cols}, pts.x_exp_tensor.options());
  SelectionStore<T> store(tile_rows, keep, capacity);

  for (int64_t q0 = 0; q0 < m; q0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, m - q0);
    store.reset();
    const at::Tensor q_block = qs.q_exp_tensor.narrow(0, q0, rows);
    for (int64_t c0 = 0; c0 < n; c0 += tile_cols) {
      const int64_t cols = std::min(tile_cols, n - c0);
      const bool last_tile = c0 + cols == n;
      at::Tensor prod = tile.narrow(0, 0, rows * cols).view({rows, cols});
      at::mm_out(prod, q_block, pts.x_exp_tensor.narrow(0, c0, cols).t());
      T* prod_p = prod.data_ptr<T>();
      at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
        std::vector<std::pair<double, int64_t>> refined(static_cast<size_t>(keep));
        for (int64_t r = begin; r < end; ++r) {
          const int64_t i = q0 + r;
          T* prow = prod_p + r * cols;
          // The point a row skips gets the score +inf, which beats no threshold.
          const int64_t self = qs.self != nullptr ? qs.self[i] - c0 : -1;
          if (self >= 0 && self < cols) prow[self] = -std::numeric_limits<T>::infinity();
          RowSelection<T> sel = store.load(r);
          scan_row(prow, pts.norms.data() + c0, c0, cols, sel);
          store.store(r, sel);
          if (last_tile) {
            qs.failed[i] = !finish_row(sel, qs.q_ref + i * d, qs.q_exp + i * d, pts, refined.data(), qs.dist + i * k,
                                       qs.idx + i * k);
          }
        }
      });
    }
  }
}

// The part [begin, end) of [0, total) that task t of num_tasks takes.
inline std::pair<int64_t, int64_t> task_share(int64_t total, int64_t t, int64_t num_tasks) {
  return {total * t / num_tasks, total * (t + 1) / num_tasks};
}

// queries = x: the distance matrix is symmetric, so each block of rows I computes its products
// with the points from I's first row on only (half the GEMM work in all), one slab of
// kTileColumns points at a time. The block's rows scan the slab's rows; the rows of the slab's
// later points (past the block) take the block's points as candidates from the slab's columns.
// Each row sees its candidates in increasing index order: earlier blocks' points through the
// columns, then its own block's slabs through the rows; after the block's last slab it has seen
// every point and is finished. Selections are kept for all n rows. Each parallel task takes an
// equal share of the block's rows and of the slab's later columns.
template <typename T, typename out_t>
void knn_symmetric(const Points<T>& pts, const QuerySet<T, out_t>& qs, int64_t keep, int64_t capacity) {
  const at::Tensor& xe = pts.x_exp_tensor;
  const int64_t n = pts.n;
  const int64_t k = pts.k;
  const int64_t d = pts.d;
  const std::vector<T>& norms = pts.norms;
  const int64_t block = std::min(kTileQueries, n);
  const int64_t slab = std::min(kTileColumns, n);

  at::Tensor tile = at::empty({block * slab}, xe.options());
  SelectionStore<T> store(n, keep, capacity);
  const int64_t num_tasks = at::get_num_threads();

  for (int64_t i0 = 0; i0 < n; i0 += block) {
    const int64_t rows = std::min(block, n - i0);
    const at::Tensor block_points = xe.narrow(0, i0, rows);
    for (int64_t c0 = i0; c0 < n; c0 += slab) {
      const int64_t cols = std::min(slab, n - c0);
      const bool last_slab = c0 + cols == n;
      at::Tensor prod = tile.narrow(0, 0, rows * cols).view({rows, cols});
      at::mm_out(prod, block_points, xe.narrow(0, c0, cols).t());
      T* prod_p = prod.data_ptr<T>();
      // Slab columns [first_later, cols) are points past the block.
      const int64_t first_later = std::min(cols, std::max<int64_t>(0, i0 + rows - c0));
      at::parallel_for(0, num_tasks, 1, [&](int64_t task_begin, int64_t task_end) {
        std::vector<std::pair<double, int64_t>> refined(static_cast<size_t>(keep));
        for (int64_t t = task_begin; t < task_end; ++t) {
          const auto [c_begin, c_end] = task_share(cols - first_later, t, num_tasks);
          scan_columns(prod_p, cols, rows, norms.data() + i0, i0, first_later + c_begin, first_later + c_end, c0,
                       store);
          const auto [r_begin, r_end] = task_share(rows, t, num_tasks);
          for (int64_t r = r_begin; r < r_end; ++r) {
            const int64_t i = i0 + r;
            T* prow = prod_p + r * cols;
            // The point itself: its score becomes +inf, which beats no threshold.
            if (i >= c0 && i < c0 + cols) prow[i - c0] = -std::numeric_limits<T>::infinity();
            RowSelection<T> sel = store.load(i);
            scan_row(prow, norms.data() + c0, c0, cols, sel);
            store.store(i, sel);
            if (last_slab) {
              qs.failed[i] = !finish_row(sel, pts.x_ref + i * d, pts.x_exp + i * d, pts, refined.data(),
                                         qs.dist + i * k, qs.idx + i * k);
            }
          }
        }
      });
    }
  }
}

// Candidate buffer capacity for `keep` kept candidates.
inline int64_t buffer_capacity(int64_t keep) {
  return keep + std::max(keep, kMinSlack);
}

template <typename T, typename out_t>
void knn_kernel(const KnnOperands& operands, bool exclude_self, int64_t k, at::Tensor& dist, at::Tensor& idx) {
  const Points<T> pts = make_points<T>(operands, k);
  const int64_t n = pts.n;
  const int64_t m = operands.queries.size(0);
  const int64_t available = exclude_self ? n - 1 : n;
  int64_t keep = knn_num_candidates(n, exclude_self, k);
  std::vector<uint8_t> failed(static_cast<size_t>(m), 0);
  QuerySet<T, out_t> all{operands.q_exp,          operands.queries.data_ptr<T>(), operands.q_exp.data_ptr<T>(),
                         nullptr,                 m,
                         dist.data_ptr<out_t>(), idx.data_ptr<int64_t>(),        failed.data()};
  at::Tensor self_ids;
  if (exclude_self && n * buffer_capacity(keep) <= kMaxSymmetricCandidates) {
    knn_symmetric<T, out_t>(pts, all, keep, buffer_capacity(keep));
  } else {
    if (exclude_self) {
      self_ids = at::arange(m, at::kLong);
      all.self = self_ids.data_ptr<int64_t>();
    }
    knn_blocked<T, out_t>(pts, all, keep, buffer_capacity(keep));
  }

  // Rows whose result could not be certified are searched again with four times as many
  // candidates. With every point a candidate the result is exact, so this ends.
  for (;;) {
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < m; ++i) {
      if (failed[static_cast<size_t>(i)] != 0) rows.push_back(i);
    }
    if (rows.empty()) break;
    TORCH_INTERNAL_ASSERT(keep < available, "knn: a search with every point a candidate was not certified");
    keep = std::min(available, 4 * keep);
    const int64_t f = static_cast<int64_t>(rows.size());
    if (exclude_self && 2 * f > m && n * buffer_capacity(keep) <= kMaxSymmetricCandidates) {
      // Most rows: the symmetric schedule over all of them is cheaper than the blocked one.
      knn_symmetric<T, out_t>(pts, all, keep, buffer_capacity(keep));
      continue;
    }
    const at::Tensor row_ids = at::from_blob(rows.data(), {f}, at::kLong);
    const at::Tensor q_exp = operands.q_exp.index_select(0, row_ids);
    const at::Tensor q_ref = operands.queries.index_select(0, row_ids);
    at::Tensor sub_dist = at::empty({f, k}, dist.options());
    at::Tensor sub_idx = at::empty({f, k}, idx.options());
    std::vector<uint8_t> sub_failed(static_cast<size_t>(f), 0);
    const QuerySet<T, out_t> retry{q_exp, q_ref.data_ptr<T>(), q_exp.data_ptr<T>(), exclude_self ? rows.data() : nullptr,
                                   f,     sub_dist.data_ptr<out_t>(), sub_idx.data_ptr<int64_t>(), sub_failed.data()};
    knn_blocked<T, out_t>(pts, retry, keep, buffer_capacity(keep));
    dist.index_copy_(0, row_ids, sub_dist);
    idx.index_copy_(0, row_ids, sub_idx);
    for (int64_t r = 0; r < f; ++r) {
      failed[static_cast<size_t>(rows[static_cast<size_t>(r)])] = sub_failed[static_cast<size_t>(r)];
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
