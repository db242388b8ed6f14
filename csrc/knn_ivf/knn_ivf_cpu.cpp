// kNN over inverted lists on the CPU: one home list at a time, its rows grouped by the lists
// they probe, each group's products with a probed list's rows and a running selection per row,
// then an exact refinement of each row's candidates.
//
// Rows are centred like knn's (knn/knn.h, expansion_center) and laid out list by list, so that
// a list is one contiguous operand and a candidate is named by its position in that layout:
// - float32 on AVX2 (cpu_isa()): panels of 16 columns, each list padded to whole panels
//   (knn_ivf_cpu_panels.h), scanned by a fused loop that computes products and offers scores
//   without a product buffer;
// - otherwise: rows in list order, each group's products from one GEMM (at::cpu::mm_out, no
//   dispatcher round trip) into a buffer, then scanned like knn's (knn/knn_cpu_scan.h).
// Both compute scores s = ||x_j||^2 - 2 q.x_j in the compute dtype; they can differ only where
// rounding reorders candidates beyond the k + margin kept, which the refinement then reads in
// double. Parallel tasks take whole home lists; each owns its buffers and selections (at most
// the largest list's rows), and the GEMMs run single-threaded inside the parallel region.
//
// Per home list a with rows R (list positions pos0[a] + r):
//   1. the pairs (b, r) for every list b that row r probes, sorted: one group of rows per b;
//   2. per group, the rows' scores against list b's rows offered to each row's selection; in
//      list a itself a row skips its own column;
//   3. per row, the k + margin best candidates' squared distances recomputed by direct
//      differences in double, ordered by (distance, row index), the first k written out; a row
//      whose result the rounding certificate cannot confirm (finish_row: ties with its k-th,
//      near-duplicates) is recomputed by direct differences with every row of its probed lists.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm_cpu_dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "../knn/knn.h"
#include "../knn/knn_certificate.h"
#include "../knn/knn_cpu_scan.h"
#include "../knn/knn_cpu_select.h"
#include "knn_ivf.h"
#include "knn_ivf_cpu_panels.h"

namespace hdml {
namespace {

using namespace knn_detail;
using namespace knn_cpu_detail;
using namespace knn_ivf_cpu_detail;

// The lists, as the kernel reads them: CSR offsets, rows in list order, each row's probes.
struct Lists {
  const int64_t* ptr;    // [L + 1]
  const int64_t* ids;    // [N] row at each position
  const int64_t* probe;  // [N, P]
  int64_t num_lists;
  int64_t num_probes;
  int64_t max_size;  // rows in the largest list
};

// Checks list_ptr and list_ids (probe values are checked where they are read) and returns the
// size of the largest list.
int64_t check_lists(const int64_t* ptr, int64_t num_lists, const int64_t* ids, int64_t n) {
  TORCH_CHECK(ptr[0] == 0, "knn_ivf: list_ptr should start at 0, got list_ptr[0] = ", ptr[0]);
  int64_t max_size = 0;
  for (int64_t b = 0; b < num_lists; ++b) {
    TORCH_CHECK(ptr[b + 1] >= ptr[b], "knn_ivf: list_ptr should be non-decreasing, got list_ptr[", b + 1,
                "] = ", ptr[b + 1], " < list_ptr[", b, "] = ", ptr[b]);
    max_size = std::max(max_size, ptr[b + 1] - ptr[b]);
  }
  TORCH_CHECK(ptr[num_lists] == n, "knn_ivf: list_ptr should end at N = ", n, " (every row in a list), got ",
              ptr[num_lists]);
  std::vector<uint8_t> seen(static_cast<size_t>(n), 0);
  for (int64_t p = 0; p < n; ++p) {
    const int64_t row = ids[p];
    TORCH_CHECK(row >= 0 && row < n && seen[static_cast<size_t>(row)] == 0,
                "knn_ivf: list_ids should be a permutation of 0 .. N - 1 = ", n - 1, ", got ", row, " at position ", p,
                row >= 0 && row < n ? " (a repeat)" : " (out of range)");
    seen[static_cast<size_t>(row)] = 1;
  }
  return max_size;
}

// The (list, row) pairs of home list a's rows [0, m) (positions first .. first + m - 1),
// sorted by list then row: one group of rows per probed list, list a's group first (a row's
// nearest rows are mostly there, so its threshold tightens before the other lists stream past).
void probe_pairs(const Lists& lists, int64_t a, int64_t first, int64_t m,
                 std::vector<std::pair<int64_t, int64_t>>& pairs) {
  pairs.clear();
  for (int64_t r = 0; r < m; ++r) {
    const int64_t row = lists.ids[first + r];
    const int64_t* probes = lists.probe + row * lists.num_probes;
    for (int64_t p = 0; p < lists.num_probes; ++p) {
      TORCH_CHECK(probes[p] >= 0 && probes[p] < lists.num_lists, "knn_ivf: probe values should be list numbers in [0, ",
                  lists.num_lists, "), got ", probes[p], " in row ", row);
      pairs.emplace_back(probes[p], r);
    }
  }
  std::sort(pairs.begin(), pairs.end());
  for (size_t i = 1; i < pairs.size(); ++i) {
    TORCH_CHECK(pairs[i] != pairs[i - 1], "knn_ivf: probe rows should list distinct lists, got list ",
                pairs[i].first, " twice in row ", lists.ids[first + pairs[i].second]);
  }
  const auto home_end = std::partition_point(pairs.begin(), pairs.end(), [a](const auto& e) { return e.first <= a; });
  const auto home_begin = std::partition_point(pairs.begin(), home_end, [a](const auto& e) { return e.first < a; });
  std::rotate(pairs.begin(), home_begin, home_end);
}

// drow/irow [k] <- the first k of `refined` (squared distances, row) after sorting it, as
// distances; padded with inf / -1 when it has fewer.
template <typename out_t>
void write_row(std::vector<std::pair<double, int64_t>>& refined, int64_t k, double inv_scale, out_t* drow,
               int64_t* irow) {
  const int64_t found = std::min<int64_t>(k, static_cast<int64_t>(refined.size()));
  std::partial_sort(refined.begin(), refined.begin() + found, refined.end());
  for (int64_t c = 0; c < k; ++c) {
    const double value = c < found ? std::sqrt(refined[static_cast<size_t>(c)].first) * inv_scale
                                   : std::numeric_limits<double>::infinity();
    if constexpr (std::is_same_v<out_t, double>) {
      drow[c] = value;
    } else {
      drow[c] = static_cast<out_t>(static_cast<float>(value));
    }
    irow[c] = c < found ? refined[static_cast<size_t>(c)].second : -1;
  }
}

// Row `row`'s candidates (positions; row_at maps them to rows) refined by direct differences
// and written out by (distance, row index). Returns false, writing nothing, when the
// certificate (knn/knn_certificate.h) cannot show that no candidate the selection dropped is
// closer than the k-th: ties with the k-th (e.g. more than the margin of duplicates) and points
// closer together than the expansion's rounding can order. x_exp: the centred rows.
template <typename T, typename out_t>
bool finish_row(RowSelection<T>& sel, int64_t row, const T* x, const T* x_exp, int64_t d, int64_t k,
                double inv_scale, const ExpansionBound& bound, const int64_t* row_at,
                std::vector<std::pair<double, int64_t>>& refined, out_t* drow, int64_t* irow) {
  if (sel.count > sel.keep) sel.compact();
  refined.clear();
  const T* q = x + row * d;
  for (int64_t c = 0; c < sel.count; ++c) {
    const int64_t j = row_at[sel.ids[c]];
    refined.emplace_back(squared_distance(q, x + j * d, d), j);
  }
  if (!std::isinf(sel.threshold) && sel.count >= k) {
    std::nth_element(refined.begin(), refined.begin() + (k - 1), refined.end());
    const double q_norm2 = centred_squared_norm(x_exp + row * d, d);
    if (!certifies(bound, refined[static_cast<size_t>(k - 1)].first, static_cast<double>(sel.threshold), q_norm2)) {
      return false;
    }
  }
  write_row(refined, k, inv_scale, drow, irow);
  return true;
}

// Row `row`'s neighbours by direct differences with every other row of the lists it probes
// (the rows finish_row could not settle).
template <typename T, typename out_t>
void exhaustive_row(const Lists& lists, int64_t row, const T* x, int64_t d, int64_t k, double inv_scale,
                    std::vector<std::pair<double, int64_t>>& refined, out_t* drow, int64_t* irow) {
  refined.clear();
  const T* q = x + row * d;
  for (int64_t p = 0; p < lists.num_probes; ++p) {
    const int64_t b = lists.probe[row * lists.num_probes + p];
    for (int64_t pos = lists.ptr[b]; pos < lists.ptr[b + 1]; ++pos) {
      const int64_t j = lists.ids[pos];
      if (j != row) refined.emplace_back(squared_distance(q, x + j * d, d), j);
    }
  }
  write_row(refined, k, inv_scale, drow, irow);
}

// The rows laid out list by list for one of the two paths (file comment): list b's columns are
// positions pos0[b] .. pos0[b] + columns[b] - 1, row_at[pos] the row at a position (-1: padding).
template <typename T>
struct ListLayout {
  at::Tensor rows;              // GEMM path: [N, d] centred rows in list order; panels: [P * 16 * d]
  std::vector<T> norms;         // squared norm per position (+inf for padding)
  std::vector<int64_t> pos0;    // [L]
  std::vector<int64_t> columns; // [L] positions per list (panels: padded to whole panels)
  std::vector<int64_t> row_at;  // [positions]
};

// GEMM path: the centred rows in list order.
template <typename T>
ListLayout<T> sorted_layout(const at::Tensor& x_exp, const at::Tensor& list_ids, const Lists& lists) {
  ListLayout<T> layout;
  layout.rows = x_exp.index_select(0, list_ids).contiguous();
  const int64_t n = x_exp.size(0);
  layout.norms = squared_norms(layout.rows.template data_ptr<T>(), n, x_exp.size(1));
  layout.pos0.assign(lists.ptr, lists.ptr + lists.num_lists);
  for (int64_t b = 0; b < lists.num_lists; ++b) layout.columns.push_back(lists.ptr[b + 1] - lists.ptr[b]);
  layout.row_at.assign(lists.ids, lists.ids + n);
  return layout;
}

// Panel path: each list's centred rows as panels of kPanelColumns columns (coordinate-major
// within a panel), the last panel padded with zeros and norm +inf.
inline ListLayout<float> panel_layout(const at::Tensor& x_exp, const Lists& lists) {
  const int64_t d = x_exp.size(1);
  ListLayout<float> layout;
  int64_t positions = 0;
  for (int64_t b = 0; b < lists.num_lists; ++b) {
    const int64_t size = lists.ptr[b + 1] - lists.ptr[b];
    layout.pos0.push_back(positions);
    layout.columns.push_back((size + kPanelColumns - 1) / kPanelColumns * kPanelColumns);
    positions += layout.columns.back();
  }
  layout.rows = at::zeros({positions * d}, x_exp.options());
  layout.norms.assign(static_cast<size_t>(positions), std::numeric_limits<float>::infinity());
  layout.row_at.assign(static_cast<size_t>(positions), -1);
  const float* xe = x_exp.data_ptr<float>();
  float* panels = layout.rows.data_ptr<float>();
  at::parallel_for(0, lists.num_lists, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t c = 0; c < lists.ptr[b + 1] - lists.ptr[b]; ++c) {
        const int64_t row = lists.ids[lists.ptr[b] + c];
        const int64_t pos = layout.pos0[b] + c;
        float* column = panels + (pos / kPanelColumns) * d * kPanelColumns + pos % kPanelColumns;
        double norm2 = 0.0;
        for (int64_t l = 0; l < d; ++l) {
          const float v = xe[row * d + l];
          column[l * kPanelColumns] = v;
          norm2 += static_cast<double>(v) * static_cast<double>(v);
        }
        layout.norms[static_cast<size_t>(pos)] = static_cast<float>(norm2);
        layout.row_at[static_cast<size_t>(pos)] = row;
      }
    }
  });
  return layout;
}

template <typename T, typename out_t>
void knn_ivf_kernel(const KnnOperands& operands, const at::Tensor& list_ids, const Lists& lists, int64_t k,
                    out_t* dist, int64_t* idx) {
  const int64_t n = operands.x.size(0);
  const int64_t d = operands.x.size(1);
  const T* x = operands.x.data_ptr<T>();
  const T* x_exp = operands.x_exp.data_ptr<T>();
  bool use_panels = false;
#ifdef HDML_X86_DISPATCH
  if constexpr (std::is_same_v<T, float>) use_panels = cpu_isa() >= CpuIsa::kAvx2;
#endif
  ListLayout<T> layout;
  if constexpr (std::is_same_v<T, float>) {
    layout = use_panels ? panel_layout(operands.x_exp, lists) : sorted_layout<T>(operands.x_exp, list_ids, lists);
  } else {
    layout = sorted_layout<T>(operands.x_exp, list_ids, lists);
  }
  const ExpansionBound bound = expansion_bound<T>(d, layout.norms);  // padding norms are +inf
  const int64_t keep = std::min(k + kKnnMargin, n - 1);
  const int64_t capacity = buffer_capacity(keep);
  const int64_t max_size = lists.max_size;

  at::parallel_for(0, lists.num_lists, 1, [&](int64_t list_begin, int64_t list_end) {
    std::vector<std::pair<int64_t, int64_t>> pairs;
    std::vector<std::pair<double, int64_t>> refined;
    SelectionStore<T> store(max_size, keep, capacity);
    // Panel path: the group's rows, selection slots and skipped columns.
    std::vector<const T*> group_rows(static_cast<size_t>(max_size));
    std::vector<int64_t> group_slots(static_cast<size_t>(max_size));
    std::vector<int64_t> group_self(static_cast<size_t>(max_size));
    // GEMM path: gathered rows and the product buffer.
    at::Tensor gathered;
    at::Tensor prod_buffer;
    if (!use_panels) {
      gathered = at::empty({max_size, d}, layout.rows.options());
      prod_buffer = at::empty({max_size * max_size}, layout.rows.options());
    }
    for (int64_t a = list_begin; a < list_end; ++a) {
      const int64_t first = lists.ptr[a];
      const int64_t m = lists.ptr[a + 1] - first;
      if (m == 0) continue;
      probe_pairs(lists, a, first, m, pairs);
      store.reset();
      for (size_t g = 0; g < pairs.size();) {
        const int64_t b = pairs[g].first;
        size_t g_end = g;
        while (g_end < pairs.size() && pairs[g_end].first == b) ++g_end;
        const int64_t rows = static_cast<int64_t>(g_end - g);
        const int64_t col0 = layout.pos0[b];
        const int64_t cols = layout.columns[b];
        const auto member = [&](int64_t j) { return pairs[g + static_cast<size_t>(j)].second; };
        if (cols == 0) {  // an empty list: nothing to offer
          g = g_end;
          continue;
        }
        if (use_panels) {
#ifdef HDML_X86_DISPATCH
          if constexpr (std::is_same_v<T, float>) {
            for (int64_t j = 0; j < rows; ++j) {
              const int64_t r = member(j);
              group_rows[j] = x_exp + lists.ids[first + r] * d;
              group_slots[j] = r;
              group_self[j] = b == a ? layout.pos0[a] + r : -1;
            }
            offer_list_avx2(group_rows.data(), group_slots.data(), group_self.data(), rows,
                            layout.rows.template data_ptr<float>() + col0 * d, layout.norms.data() + col0,
                            cols / kPanelColumns, col0, d, store);
          }
#endif
        } else {
          const T* sorted = layout.rows.template data_ptr<T>();
          at::Tensor queries = layout.rows.narrow(0, first, m);
          if (rows < m) {  // not every row of a probes b: gather the group's rows
            T* gathered_p = gathered.template data_ptr<T>();
            for (int64_t j = 0; j < rows; ++j) std::copy_n(sorted + (first + member(j)) * d, d, gathered_p + j * d);
            queries = gathered.narrow(0, 0, rows);
          }
          at::Tensor prod = prod_buffer.narrow(0, 0, rows * cols).view({rows, cols});
          at::cpu::mm_out(prod, queries, layout.rows.narrow(0, col0, cols).t());
          T* const prod_p = prod.template data_ptr<T>();
          for (int64_t j = 0; j < rows; ++j) {
            const int64_t r = member(j);
            T* prow = prod_p + j * cols;
            // The row itself (only in its home list): score +inf, which beats no threshold.
            if (b == a) prow[r] = -std::numeric_limits<T>::infinity();
            RowSelection<T> sel = store.load(r);
            scan_row(prow, layout.norms.data() + col0, col0, cols, sel);
            store.store(r, sel);
          }
        }
        g = g_end;
      }
      for (int64_t r = 0; r < m; ++r) {
        const int64_t row = lists.ids[first + r];
        RowSelection<T> sel = store.load(r);
        if (!finish_row(sel, row, x, x_exp, d, k, operands.inv_scale, bound, layout.row_at.data(), refined,
                        dist + row * k, idx + row * k)) {
          exhaustive_row(lists, row, x, d, k, operands.inv_scale, refined, dist + row * k, idx + row * k);
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_ivf_cpu(const at::Tensor& x, const at::Tensor& list_ptr,
                                               const at::Tensor& list_ids, const at::Tensor& probe, int64_t k) {
  knn_ivf_check_args(x, list_ptr, list_ids, probe, k);
  TORCH_CHECK(x.device().is_cpu(), "knn_ivf: x should be a CPU tensor for the CPU kernel, got ", x.device());
  const at::NoGradGuard no_grad;
  const double max_abs = checked_max_abs(x, "x");
  const at::Tensor ptr = list_ptr.contiguous();
  const at::Tensor ids = list_ids.contiguous();
  const at::Tensor probes = probe.contiguous();
  const int64_t n = x.size(0);
  const int64_t num_lists = ptr.size(0) - 1;
  const Lists lists{ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(), probes.data_ptr<int64_t>(), num_lists,
                    probes.size(1), check_lists(ptr.data_ptr<int64_t>(), num_lists, ids.data_ptr<int64_t>(), n)};

  at::Tensor dist = at::empty({n, k}, x.options());
  at::Tensor idx = at::empty({n, k}, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_ivf_cpu", [&] {
    // float16 and bfloat16 are computed in float32; the distances come back in x's dtype.
    using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const at::ScalarType compute = c10::CppTypeToScalarType<compute_t>::value;
    const KnnOperands operands = knn_operands(x, std::nullopt, compute, max_abs);
    knn_ivf_kernel<compute_t, scalar_t>(operands, ids, lists, k, dist.data_ptr<scalar_t>(),
                                        idx.data_ptr<int64_t>());
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("knn_ivf", &knn_ivf_cpu);
}

}  // namespace hdml
