// The inner loops of the CPU kNN kernel (knn_cpu.cpp): offering a tile's scores to the running
// selections (knn_cpu_select.h), by rows and by columns, and the exact squared distance of the
// refinement. Each has a portable variant and an AVX2 one (float32), chosen at run time by
// cpu_isa() (utils.h, which honours ATEN_CPU_CAPABILITY); both give the same results: a score
// is norm - 2 prod, where 2 prod is exact, so every path rounds once, and both test the same
// scores against the same thresholds in the same order.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "../utils.h"
#include "knn_cpu_select.h"

#ifdef HDML_X86_DISPATCH
#include <immintrin.h>
#endif

namespace hdml {
namespace knn_cpu_detail {

#ifdef HDML_X86_DISPATCH
// Sixteen scores, lanes 0-7 in s0 and 8-15 in s1, against their thresholds thr0 and thr1:
// returns false, at the cost of one branch, when none is below its threshold; else calls
// on_hit(b, score) for each lane b whose score is below, in lane order, and returns true.
template <typename OnHit>
__attribute__((target("avx2,fma"), always_inline)) inline bool offer16_avx2(__m256 s0, __m256 s1, __m256 thr0,
                                                                             __m256 thr1, OnHit&& on_hit) {
  const __m256 lt0 = _mm256_cmp_ps(s0, thr0, _CMP_LT_OQ);
  const __m256 lt1 = _mm256_cmp_ps(s1, thr1, _CMP_LT_OQ);
  if (_mm256_testz_ps(_mm256_or_ps(lt0, lt1), _mm256_or_ps(lt0, lt1))) return false;
  alignas(32) float scores[16];
  _mm256_store_ps(scores, s0);
  _mm256_store_ps(scores + 8, s1);
  unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(lt0)) |
                  (static_cast<unsigned>(_mm256_movemask_ps(lt1)) << 8);
  while (mask != 0) {
    const int b = __builtin_ctz(mask);
    mask &= mask - 1;
    on_hit(b, scores[b]);
  }
  return true;
}
#endif

// Offers the scores norms[c] - 2 prod[c] of points col0 + c, c in [0, cols), in order.
// 2 prod is exact, so every path computes the same scores (one rounding of the subtraction).
template <typename T>
void scan_row_scalar(const T* prod, const T* norms, int64_t col0, int64_t cols, RowSelection<T>& sel) {
  for (int64_t c = 0; c < cols; ++c) {
    const T s = norms[c] - T(2) * prod[c];
    if (s < sel.threshold) sel.push(s, col0 + c);
  }
}

#ifdef HDML_X86_DISPATCH
// The same with AVX2: sixteen scores per step, one branch unless one of them beats the threshold.
// The threshold can fall while a step's hits are pushed, so each hit is tested again.
__attribute__((target("avx2,fma"))) inline void scan_row_avx2(const float* prod, const float* norms, int64_t col0,
                                                               int64_t cols, RowSelection<float>& sel) {
  const __m256 two = _mm256_set1_ps(2.0f);
  __m256 thr = _mm256_set1_ps(sel.threshold);
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    const __m256 s0 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(prod + c), _mm256_loadu_ps(norms + c));
    const __m256 s1 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(prod + c + 8), _mm256_loadu_ps(norms + c + 8));
    const bool hit = offer16_avx2(s0, s1, thr, thr, [&](int b, float score) {
      if (score < sel.threshold) sel.push(score, col0 + c + b);
    });
    if (hit) thr = _mm256_set1_ps(sel.threshold);
  }
  scan_row_scalar(prod + c, norms + c, col0 + c, cols - c, sel);
}
#endif

template <typename T>
inline void scan_row(const T* prod, const T* norms, int64_t col0, int64_t cols, RowSelection<T>& sel) {
#ifdef HDML_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_isa() >= CpuIsa::kAvx2) {
      scan_row_avx2(prod, norms, col0, cols, sel);
      return;
    }
  }
#endif
  scan_row_scalar(prod, norms, col0, cols, sel);
}

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

#ifdef HDML_X86_DISPATCH
// The same with AVX2, sixteen columns per step.
__attribute__((target("avx2,fma"))) inline void scan_columns_avx2(const float* tile, int64_t ld, int64_t rows,
                                                                   const float* row_norms, int64_t row0,
                                                                   int64_t c_begin, int64_t c_end, int64_t j0,
                                                                   SelectionStore<float>& store) {
  const float* thr = store.thresholds.data() + j0;
  const __m256 two = _mm256_set1_ps(2.0f);
  const int64_t c_vec_end = c_begin + (c_end - c_begin) / 16 * 16;
  for (int64_t i = 0; i < rows; ++i) {
    const float* t = tile + i * ld;
    const __m256 n = _mm256_set1_ps(row_norms[i]);
    for (int64_t c = c_begin; c < c_vec_end; c += 16) {
      const __m256 s0 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(t + c), n);
      const __m256 s1 = _mm256_fnmadd_ps(two, _mm256_loadu_ps(t + c + 8), n);
      offer16_avx2(s0, s1, _mm256_loadu_ps(thr + c), _mm256_loadu_ps(thr + c + 8),
                   [&](int b, float score) { store.push(j0 + c + b, score, row0 + i); });
    }
  }
  if (c_vec_end < c_end) scan_columns_scalar(tile, ld, rows, row_norms, row0, c_vec_end, c_end, j0, store);
}
#endif

template <typename T>
inline void scan_columns(const T* tile, int64_t ld, int64_t rows, const T* row_norms, int64_t row0,
                         int64_t c_begin, int64_t c_end, int64_t j0, SelectionStore<T>& store) {
#ifdef HDML_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_isa() >= CpuIsa::kAvx2) {
      scan_columns_avx2(tile, ld, rows, row_norms, row0, c_begin, c_end, j0, store);
      return;
    }
  }
#endif
  scan_columns_scalar(tile, ld, rows, row_norms, row0, c_begin, c_end, j0, store);
}

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

#ifdef HDML_X86_DISPATCH
__attribute__((target("avx2,fma"))) inline double squared_distance_avx2(const float* a, const float* b, int64_t d) {
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
#ifdef HDML_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_isa() >= CpuIsa::kAvx2) return squared_distance_avx2(a, b, d);
  }
#endif
  return squared_distance_scalar(a, b, d);
}

}  // namespace knn_cpu_detail
}  // namespace hdml
