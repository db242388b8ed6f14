// The fused inner loop of the CPU knn_ivf kernel (knn_ivf_cpu.cpp) for float32 on AVX2: query
// rows against one inverted list, products and the running selection in one pass, with no
// product buffer.
//
// A list's rows are stored as panels of 16 columns (knn_ivf_cpu.cpp, PanelRows): panel p holds,
// for each coordinate l, the 16 rows' values at l contiguously, so one coordinate of 16 rows is
// two 8-lane loads. Four query rows at a time, each broadcast one coordinate at a time, give
// 4 x 16 products in eight accumulators (FMA; 128 flops per row pair, like a GEMM's inner
// kernel). The scores norm - 2 product are then offered to the four rows' selections sixteen
// at a time (knn/knn_cpu_scan.h, offer16_avx2): one compare and one branch unless one beats its
// row's threshold. Columns past a list's end are padding with norm +inf, so they never enter.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../knn/knn_cpu_scan.h"
#include "../knn/knn_cpu_select.h"
#include "../utils.h"

#ifdef HDML_X86_DISPATCH
#include <immintrin.h>
#endif

namespace hdml {
namespace knn_ivf_cpu_detail {

// Columns per panel: two AVX2 vectors of float32.
constexpr int64_t kPanelColumns = 16;
// Query rows per step of the fused loop (eight accumulators, two panel vectors, one broadcast).
constexpr int64_t kPanelRows = 4;

#ifdef HDML_X86_DISPATCH
// Offers rows queries[0 .. rows - 1] (pointers to their d centred values; selection slots
// slot[j] of `store`) every column of one list: `num_panels` panels from `panels` (each d x 16
// floats), squared norms `norms` (one per column, +inf for padding), column c of the list named
// pos0 + c. Row j skips the column self[j] (or none: -1). Panel by panel, all rows four at a
// time: the panel (d x 64 bytes) stays in the L1 cache while the rows stream past it.
__attribute__((target("avx2,fma"))) inline void offer_list_avx2(
    const float* const* queries, const int64_t* slot, const int64_t* self, int64_t rows, const float* panels,
    const float* norms, int64_t num_panels, int64_t pos0, int64_t d,
    knn_cpu_detail::SelectionStore<float>& store) {
  const __m256 two = _mm256_set1_ps(2.0f);
  for (int64_t p = 0; p < num_panels; ++p) {
    const float* panel = panels + p * d * kPanelColumns;
    const __m256 n0 = _mm256_loadu_ps(norms + p * kPanelColumns);
    const __m256 n1 = _mm256_loadu_ps(norms + p * kPanelColumns + 8);
    const int64_t col0 = pos0 + p * kPanelColumns;
    for (int64_t r0 = 0; r0 < rows; r0 += kPanelRows) {
      const int64_t active = std::min(kPanelRows, rows - r0);
      // Rows past `active` repeat the last one: computed, never offered.
      const float* q0 = queries[r0];
      const float* q1 = queries[r0 + std::min<int64_t>(1, active - 1)];
      const float* q2 = queries[r0 + std::min<int64_t>(2, active - 1)];
      const float* q3 = queries[r0 + std::min<int64_t>(3, active - 1)];
      __m256 acc00 = _mm256_setzero_ps(), acc01 = _mm256_setzero_ps();
      __m256 acc10 = _mm256_setzero_ps(), acc11 = _mm256_setzero_ps();
      __m256 acc20 = _mm256_setzero_ps(), acc21 = _mm256_setzero_ps();
      __m256 acc30 = _mm256_setzero_ps(), acc31 = _mm256_setzero_ps();
      for (int64_t l = 0; l < d; ++l) {
        const __m256 b0 = _mm256_loadu_ps(panel + l * kPanelColumns);
        const __m256 b1 = _mm256_loadu_ps(panel + l * kPanelColumns + 8);
        __m256 a = _mm256_broadcast_ss(q0 + l);
        acc00 = _mm256_fmadd_ps(a, b0, acc00);
        acc01 = _mm256_fmadd_ps(a, b1, acc01);
        a = _mm256_broadcast_ss(q1 + l);
        acc10 = _mm256_fmadd_ps(a, b0, acc10);
        acc11 = _mm256_fmadd_ps(a, b1, acc11);
        a = _mm256_broadcast_ss(q2 + l);
        acc20 = _mm256_fmadd_ps(a, b0, acc20);
        acc21 = _mm256_fmadd_ps(a, b1, acc21);
        a = _mm256_broadcast_ss(q3 + l);
        acc30 = _mm256_fmadd_ps(a, b0, acc30);
        acc31 = _mm256_fmadd_ps(a, b1, acc31);
      }
      const __m256 acc[kPanelRows][2] = {{acc00, acc01}, {acc10, acc11}, {acc20, acc21}, {acc30, acc31}};
      for (int64_t j = 0; j < active; ++j) {
        const int64_t s = slot[r0 + j];
        const int64_t skip = self[r0 + j];
        const __m256 thr = _mm256_set1_ps(store.thresholds[static_cast<size_t>(s)]);
        const __m256 s0 = _mm256_fnmadd_ps(two, acc[j][0], n0);
        const __m256 s1 = _mm256_fnmadd_ps(two, acc[j][1], n1);
        const __m256 hit = _mm256_or_ps(_mm256_cmp_ps(s0, thr, _CMP_LT_OQ), _mm256_cmp_ps(s1, thr, _CMP_LT_OQ));
        if (_mm256_testz_ps(hit, hit)) continue;
        knn_cpu_detail::RowSelection<float> sel = store.load(s);
        knn_cpu_detail::offer16_avx2(s0, s1, thr, thr, [&](int b, float score) {
          const int64_t pos = col0 + b;
          if (pos != skip && score < sel.threshold) sel.push(score, pos);
        });
        store.store(s, sel);
      }
    }
  }
}
#endif

}  // namespace knn_ivf_cpu_detail
}  // namespace hdml
