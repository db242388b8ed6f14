// Exact kNN on the CPU: GEMM tiles into one reused buffer, a pruned running selection per
// query row, then an exact refinement of the selected candidates.
//
// Scores: s_j = ||x_j||^2 - 2 q.x_j, the squared distance less the row constant ||q||^2, with x
// and the queries centred (knn.h). The products come from at::mm_out into one tile buffer of
// kTileQueries x kTileColumns, allocated once; BLAS always runs outside the parallel regions.
//
// Selection, per query row (knn_cpu_select.h): scores stream past a threshold sixteen at a time
// (knn_cpu_scan.h; AVX2 where cpu_isa() allows it), so most of a tile row costs one compare and
// one test. A score below the threshold is appended to the row's candidate buffer (as an
// order-preserving integer key, with its index); when the buffer is full, it is compacted to the
// best c = k + margin by a vectorised bisection on the keys, and the threshold becomes the c-th
// best score. Every row sees the points in increasing index order, so a score equal to the
// threshold loses its tie and the strict `<` is exact.
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
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "knn.h"
#include "knn_certificate.h"
#include "knn_cpu_scan.h"
#include "knn_cpu_select.h"

namespace hdml {
namespace {

using namespace knn_detail;
using namespace knn_cpu_detail;

// Tile: query rows per block x points per GEMM (16 MiB in float32). Smaller tiles stay in the
// L2 cache, but each one costs a GEMM call and a parallel region, and on a busy machine every
// region's barrier can cost a scheduler time slice: at N = 20,000 this size took ~25% less
// time than 512 x 2048 with other jobs running, and the same without.
constexpr int64_t kTileQueries = 1024;
constexpr int64_t kTileColumns = 4096;
// Query rows per parallel task.
constexpr int64_t kRowGrain = 4;
// The symmetric self-search keeps selections for all n rows, up to this many candidate slots
// (n x capacity; 12 bytes each for float32).
constexpr int64_t kMaxSymmetricCandidates = int64_t{1} << 24;
// The blocked schedule keeps selections for at most this many candidate slots per block.
constexpr int64_t kMaxBlockCandidates = int64_t{1} << 22;

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
  ExpansionBound bound;  // the certificate's rounding bound (knn_certificate.h)
};

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
  p.bound = expansion_bound<T>(p.d, p.norms);
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
// false, writing nothing, when the certificate (knn_certificate.h) cannot show that this is the
// exact answer; the caller then searches those rows again with more candidates. q_exp is the
// centred query.
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
    const double q_norm2 = centred_squared_norm(q_exp, d);
    if (!certifies(pts.bound, refined[pts.k - 1].first, static_cast<double>(sel.threshold), q_norm2)) return false;
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
  // Neighbour search is not differentiable: inputs that require grad are read as plain values.
  const at::NoGradGuard no_grad;
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
