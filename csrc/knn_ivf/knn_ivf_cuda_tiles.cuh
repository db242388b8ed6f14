// The tiled join of the CUDA knn_ivf kernel (knn_ivf_cuda.cu): cuBLAS GEMMs over (probed list,
// rows that probe it) tiles into one reused buffer, a running selection per row kept in global
// memory between tiles, then an exact refinement certified like knn's (knn/knn_certificate.h).
//
// Tiles are cut per probed list, not per home list: a GEMM of a home list's rows against the
// union of the lists its rows probe would compute 15-18x the probed pairs (measured on the
// benchmark's clustered 64-d rows at 100K and 200K rows, nprobe 9 and 15: the rows of one list
// probe 120-250 distinct lists between them). Per probed list b, the rows that probe it
// against b's rows are exactly the probed pairs, so no product is wasted and none is skipped.
//
// Positions: rows in list order (position p holds row list_ids[p]), so list b is positions
// list_ptr[b] .. list_ptr[b + 1] - 1; `sorted` holds the centred rows (knn/knn.h,
// expansion_center) in that order, each list one contiguous GEMM operand, and `norms` their
// squared norms. The rows are taken in batches of consecutive positions, at most
// state_entries / cap rows and pair_entries / P rows (P probes per row): one batch at 1M rows,
// k = 20, P = 30 with the default bounds. Per row batch:
//   1. its (list, position) probe pairs sorted by list (keys b * N + p): for every list b the
//      ascending positions Q_b of the batch's rows that probe it, and their offsets q_ptr;
//   2. every row's selection, the cap best (score, row) pairs so far sorted ascending
//      (cap = cand rounded up to a power of two, cand = k + kKnnMargin at most), set empty;
//   3. per list b in list order, in chunks of at most tile_elements products (rows of Q_b by
//      columns of b): the centred rows of Q_b gathered (one index_select for a run of lists,
//      at most gather_rows rows), at::mm of them with list b's rows into the tile buffer (TF32
//      off: the expansion needs full float32 products), then ivf_select_kernel, one block per
//      row of the chunk, streams its scores s_j = ||x~_j||^2 - 2 q~.x~_j past its selection
//      (knn/knn_cuda_select.cuh), skipping its own column. Chunks run in stream order, so no two
//      blocks ever hold the same row's selection at once;
//   4. ivf_refine_kernel, one block per row: the squared distances of its first cand candidates
//      by direct differences in double, summed in the CPU kernel's order (exact_squared_distance),
//      sorted by (distance, row). When the certificate shows that no dropped row is closer than
//      the k-th (or the row's lists held at most cand other rows), the first k are written out;
//      else the row is marked in `failed` and left to the row kernel (knn_ivf_cuda.cu).
// Memory beyond the operands and outputs: `sorted` and `norms` (N x (D + 1) values), the
// selections (at most state_entries pairs), the pair keys (at most pair_entries), the tile
// (tile_elements values) and the gather buffer (gather_rows x D values).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../knn/knn.h"
#include "../knn/knn_certificate.h"
#include "../knn/knn_cuda_select.cuh"

namespace hdml {
namespace knn_ivf_cuda_detail {

using namespace knn_detail;
using namespace knn_cuda_detail;

// Selection: threads per block, scores per thread per round, shared candidate buffer size.
constexpr int kSelectThreads = 128;
constexpr int kSelectItems = 2;
constexpr int kSelectRound = kSelectThreads * kSelectItems;
constexpr int kSelectBuffer = 1024;
static_assert(kSelectBuffer >= kKnnCudaMaxCandidates, "the buffer must hold a whole candidate list");
static_assert(kSelectBuffer >= 2 * kSelectRound, "the buffer must hold two rounds");
static_assert((kSelectBuffer & (kSelectBuffer - 1)) == 0, "bitonic sorting needs a power-of-two buffer");
// Refinement and norms: threads per block (whole warps).
constexpr int kRefineThreads = 128;
constexpr int kNormThreads = 256;
static_assert(kNormThreads % 32 == 0, "row_norms_kernel works in whole warps");

// Default bound of the tile buffer (products); tile_bounds derives the others from it.
constexpr int64_t kIvfTileElements = int64_t{1} << 26;

struct TileBounds {
  int64_t tile_elements;  // products per GEMM chunk
  int64_t gather_rows;    // gathered query rows per index_select
  int64_t state_entries;  // (score, row) pairs of the row batch's selections
  int64_t pair_entries;   // probe pairs of a row batch
};

// All bounds from one tile size (the default, or HDML_KNN_IVF_CUDA_TILE in tests): the gather
// buffer holds as many values as the tile, the selections and the probe pairs half as many
// entries each.
inline TileBounds tile_bounds(int64_t tile_elements, int64_t d) {
  return {tile_elements, std::max<int64_t>(1, tile_elements / d), tile_elements / 2, tile_elements / 2};
}

// The squared distance of two d-vectors in double, summed in the CPU kernel's order
// (knn/knn_cpu_scan.h, squared_distance), so that both kernels return the same bits: for float,
// that of its AVX2 path (eight partial sums by i mod 8 with fused multiply-adds, lanes l and
// l + 4 added, then (0 + 1) + (2 + 3), the tail fused too as GCC contracts it); for double, its
// scalar path (four partial sums, separate multiply and add). The __d*_rn intrinsics keep nvcc
// from contracting or reordering.
template <typename T>
__device__ __forceinline__ double exact_squared_distance(const T* __restrict__ a, const T* __restrict__ b,
                                                         int64_t d) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (; i + 8 <= d; i += 8) {
#pragma unroll
      for (int l = 0; l < 8; ++l) {
        const double diff = __dsub_rn(static_cast<double>(a[i + l]), static_cast<double>(b[i + l]));
        acc[l] = __fma_rn(diff, diff, acc[l]);
      }
    }
    double sum = __dadd_rn(__dadd_rn(__dadd_rn(acc[0], acc[4]), __dadd_rn(acc[1], acc[5])),
                           __dadd_rn(__dadd_rn(acc[2], acc[6]), __dadd_rn(acc[3], acc[7])));
    for (; i < d; ++i) {
      const double diff = __dsub_rn(static_cast<double>(a[i]), static_cast<double>(b[i]));
      sum = __fma_rn(diff, diff, sum);
    }
    return sum;
  } else {
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (; i + 4 <= d; i += 4) {
#pragma unroll
      for (int l = 0; l < 4; ++l) {
        const double diff = __dsub_rn(static_cast<double>(a[i + l]), static_cast<double>(b[i + l]));
        acc[l] = __dadd_rn(acc[l], __dmul_rn(diff, diff));
      }
    }
    for (; i < d; ++i) {
      const double diff = __dsub_rn(static_cast<double>(a[i]), static_cast<double>(b[i]));
      acc[0] = __dadd_rn(acc[0], __dmul_rn(diff, diff));
    }
    return __dadd_rn(__dadd_rn(acc[0], acc[1]), __dadd_rn(acc[2], acc[3]));
  }
}

// norms[p] = ||sorted[p]||^2 (double accumulation, rounded to T), one warp per row.
template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    row_norms_kernel(const T* __restrict__ rows, int64_t n, int64_t d, T* __restrict__ norms) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= n) return;  // the same for the whole warp: blockDim is a multiple of 32
  double acc = 0.0;
  for (int64_t l = lane; l < d; l += 32) {
    const double v = static_cast<double>(rows[row * d + l]);
    acc += v * v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if (lane == 0) norms[row] = static_cast<T>(acc);
}

// One block per row r of a chunk: the row at position query_pos[r] (selection slot
// query_pos[r] - pos0) takes the scores prod[r * cols + c] of the columns c < cols, positions
// col_pos + c (rows col_rows[c], squared norms col_norms[c]), but its own, into its selection.
template <typename T>
__global__ void __launch_bounds__(kSelectThreads)
    ivf_select_kernel(const T* __restrict__ prod, int64_t cols, int64_t col_pos, const T* __restrict__ col_norms,
                      const int64_t* __restrict__ col_rows, const int64_t* __restrict__ query_pos, int64_t pos0,
                      T* __restrict__ list_val, int64_t* __restrict__ list_idx, int cap, int cand) {
  extern __shared__ unsigned char smem[];
  int64_t* s_list_idx = reinterpret_cast<int64_t*>(smem);
  int64_t* s_buf_idx = s_list_idx + cap;
  T* s_list_val = reinterpret_cast<T*>(s_buf_idx + kSelectBuffer);
  T* s_buf_val = s_list_val + cap;
  __shared__ int s_count;

  const int tid = threadIdx.x;
  const int64_t pos = query_pos[blockIdx.x];
  const int64_t list0 = (pos - pos0) * cap;
  for (int i = tid; i < cap; i += kSelectThreads) {
    s_list_val[i] = list_val[list0 + i];
    s_list_idx[i] = list_idx[list0 + i];
  }
  if (tid == 0) s_count = 0;
  __syncthreads();
  T thr_val = s_list_val[cand - 1];
  int64_t thr_idx = s_list_idx[cand - 1];

  const T* row = prod + static_cast<int64_t>(blockIdx.x) * cols;
  for (int64_t base = 0; base < cols; base += kSelectRound) {
#pragma unroll
    for (int it = 0; it < kSelectItems; ++it) {
      const int64_t c = base + it * kSelectThreads + tid;
      if (c < cols && col_pos + c != pos) {
        const T s = col_norms[c] - T(2) * row[c];
        const int64_t j = col_rows[c];
        if (pair_less(s, j, thr_val, thr_idx)) {
          const int slot = atomicAdd(&s_count, 1);
          s_buf_val[slot] = s;
          s_buf_idx[slot] = j;
        }
      }
    }
    // Without a merge the buffer keeps at most kSelectBuffer - kSelectRound: room for a round.
    end_round(&s_count, s_list_val, s_list_idx, s_buf_val, s_buf_idx, cap, cand, kSelectBuffer - kSelectRound,
              base + kSelectRound >= cols, thr_val, thr_idx);
  }
  for (int i = tid; i < cap; i += kSelectThreads) {
    list_val[list0 + i] = s_list_val[i];
    list_idx[list0 + i] = s_list_idx[i];
  }
}

// One block per row of the batch at positions pos0 + blockIdx.x: refines its selection's first
// cand candidates (file comment, step 4). x: the rows (scaled, not centred) by row number.
template <typename T, typename out_t>
__global__ void __launch_bounds__(kRefineThreads)
    ivf_refine_kernel(const T* __restrict__ x, const T* __restrict__ sorted, int64_t d,
                      const int64_t* __restrict__ list_ids, int64_t pos0, const T* __restrict__ list_val,
                      const int64_t* __restrict__ list_idx, int cap, int cand, int64_t k, double inv_scale,
                      ExpansionBound bound, out_t* __restrict__ dist, int64_t* __restrict__ idx,
                      uint8_t* __restrict__ failed) {
  extern __shared__ unsigned char smem[];
  int64_t* s_idx = reinterpret_cast<int64_t*>(smem);
  double* s_d2 = reinterpret_cast<double*>(s_idx + cap);
  __shared__ bool s_ok;

  const int64_t slot = blockIdx.x;
  const int64_t pos = pos0 + slot;
  const int64_t row = list_ids[pos];
  const T* q = x + row * d;
  for (int c = threadIdx.x; c < cap; c += kRefineThreads) {
    const int64_t j = c < cand ? list_idx[slot * cap + c] : kNoIndex;
    s_idx[c] = j;
    s_d2[c] = j == kNoIndex ? positive_infinity<double>() : exact_squared_distance(q, x + j * d, d);
  }
  __syncthreads();
  bitonic_sort(s_d2, s_idx, cap);
  if (threadIdx.x == 0) {
    const double thr = static_cast<double>(list_val[slot * cap + cand - 1]);
    bool ok = isinf(thr);  // the row's lists held at most cand other rows: all are candidates
    if (!ok) {
      // The centred squared norm in the CPU kernel's order (knn_certificate.h).
      const T* q_exp = sorted + pos * d;
      double q_norm2 = 0.0;
      for (int64_t l = 0; l < d; ++l) {
        const double v = static_cast<double>(q_exp[l]);
        q_norm2 = __dadd_rn(q_norm2, __dmul_rn(v, v));
      }
      ok = certifies(bound, s_d2[k - 1], thr, q_norm2);
    }
    s_ok = ok;
    if (!ok) failed[row] = 1;
  }
  __syncthreads();
  if (!s_ok) return;  // the same for the whole block
  for (int64_t c = threadIdx.x; c < k; c += kRefineThreads) {
    const bool found = s_idx[c] != kNoIndex;
    const double value = found ? sqrt(s_d2[c]) * inv_scale : positive_infinity<double>();
    if constexpr (std::is_same_v<out_t, double>) {
      dist[row * k + c] = value;
    } else {
      dist[row * k + c] = static_cast<out_t>(static_cast<float>(value));
    }
    idx[row * k + c] = found ? s_idx[c] : -1;
  }
}

// A 1-D int64 device tensor's values on the host (one synchronisation).
inline std::vector<int64_t> host_values(const at::Tensor& t) {
  const at::Tensor h = t.to(at::kCPU).contiguous();
  return std::vector<int64_t>(h.data_ptr<int64_t>(), h.data_ptr<int64_t>() + h.numel());
}

// One GEMM chunk: query rows [q_begin, q_begin + rows) of the batch's sorted pairs against the
// columns [col_pos, col_pos + cols) of one list.
struct Chunk {
  int64_t q_begin;
  int64_t rows;
  int64_t col_pos;
  int64_t cols;
};

// The tiled join (file comment) of the rows xs ([N, D], compute type T, scaled, contiguous) over
// the checked lists (ptr, ids, probes contiguous on the device). Writes dist and idx ([N, k]) of
// every certified row and returns failed ([N] uint8): 1 for the rows left to the row kernel.
template <typename T, typename out_t>
at::Tensor ivf_tiles_join(const at::Tensor& xs, const at::Tensor& ptr, const at::Tensor& ids,
                          const at::Tensor& probes, int64_t k, double inv_scale, const TileBounds& bounds,
                          at::Tensor& dist, at::Tensor& idx) {
  const int64_t n = xs.size(0);
  const int64_t d = xs.size(1);
  const int64_t num_lists = ptr.size(0) - 1;
  const int64_t num_probes = probes.size(1);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::TensorOptions long_options = ids.options();

  at::Tensor sorted = xs.index_select(0, ids);
  sorted.sub_(expansion_center(xs));
  at::Tensor norms = at::empty({n}, xs.options());
  row_norms_kernel<T><<<static_cast<unsigned int>((n * 32 + kNormThreads - 1) / kNormThreads), kNormThreads, 0,
                        stream>>>(sorted.data_ptr<T>(), n, d, norms.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const ExpansionBound bound = expansion_bound<T>(d, norms.max().item<double>());

  const int cand = static_cast<int>(std::min({k + kKnnMargin, n - 1, kKnnCudaMaxCandidates}));
  int cap = 32;
  while (cap < cand) cap <<= 1;
  const std::vector<int64_t> list_ptr = host_values(ptr);
  int64_t max_size = 0;
  for (int64_t b = 0; b < num_lists; ++b) max_size = std::max(max_size, list_ptr[b + 1] - list_ptr[b]);

  const int64_t batch_rows = std::clamp<int64_t>(
      std::min(bounds.state_entries / cap, bounds.pair_entries / num_probes), 1, n);
  at::Tensor list_val = at::empty({batch_rows * cap}, xs.options());
  at::Tensor list_idx = at::empty({batch_rows * cap}, long_options);
  at::Tensor tile = at::empty({std::max<int64_t>(1, std::min(bounds.tile_elements, batch_rows * max_size))},
                              xs.options());
  at::Tensor gathered = at::empty({std::min(bounds.gather_rows, batch_rows * num_probes), d}, xs.options());
  at::Tensor failed = at::zeros({n}, long_options.dtype(at::kByte));
  const at::Tensor list_keys = at::arange(num_lists + 1, long_options) * n;
  const size_t select_smem = static_cast<size_t>(cap + kSelectBuffer) * (sizeof(int64_t) + sizeof(T));
  const size_t refine_smem = static_cast<size_t>(cap) * (sizeof(int64_t) + sizeof(double));
  // Full float32 products: TF32 would round the inputs to 10 mantissa bits.
  at::NoTF32Guard no_tf32;

  for (int64_t pos0 = 0; pos0 < n; pos0 += batch_rows) {
    const int64_t rows = std::min(batch_rows, n - pos0);
    // Step 1, in place where it can be: the sorted keys become the positions Q_b.
    at::Tensor query_pos = probes.index_select(0, ids.narrow(0, pos0, rows));
    query_pos.mul_(n).add_(at::arange(pos0, pos0 + rows, long_options).unsqueeze(1));
    query_pos = std::get<0>(at::sort(query_pos.flatten()));
    const std::vector<int64_t> q_ptr = host_values(at::searchsorted(query_pos, list_keys));
    query_pos.remainder_(n);
    list_val.fill_(std::numeric_limits<T>::infinity());
    list_idx.fill_(kNoIndex);

    // Chunks wait in `pending` until the gather that feeds them: rows [g_begin, g_end) of the
    // sorted pairs (those of empty lists between them included) in `gathered`.
    std::vector<Chunk> pending;
    int64_t g_begin = 0;
    int64_t g_end = 0;
    const auto flush = [&]() {
      if (pending.empty()) return;
      at::Tensor queries = gathered.narrow(0, 0, g_end - g_begin);
      at::index_select_out(queries, sorted, 0, query_pos.narrow(0, g_begin, g_end - g_begin));
      for (const Chunk& c : pending) {
        at::Tensor prod = tile.narrow(0, 0, c.rows * c.cols).view({c.rows, c.cols});
        at::mm_out(prod, queries.narrow(0, c.q_begin - g_begin, c.rows), sorted.narrow(0, c.col_pos, c.cols).t());
        ivf_select_kernel<T><<<static_cast<unsigned int>(c.rows), kSelectThreads, select_smem, stream>>>(
            prod.data_ptr<T>(), c.cols, c.col_pos, norms.data_ptr<T>() + c.col_pos,
            ids.data_ptr<int64_t>() + c.col_pos, query_pos.data_ptr<int64_t>() + c.q_begin, pos0,
            list_val.data_ptr<T>(), list_idx.data_ptr<int64_t>(), cap, cand);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      pending.clear();
    };
    for (int64_t b = 0; b < num_lists; ++b) {
      const int64_t size = list_ptr[b + 1] - list_ptr[b];
      if (size == 0 || q_ptr[b + 1] == q_ptr[b]) continue;
      const int64_t chunk_cols = std::min(size, bounds.tile_elements);
      const int64_t chunk_rows = std::max<int64_t>(1, std::min(bounds.gather_rows, bounds.tile_elements / chunk_cols));
      for (int64_t r0 = q_ptr[b]; r0 < q_ptr[b + 1]; r0 += chunk_rows) {
        const int64_t r = std::min(chunk_rows, q_ptr[b + 1] - r0);
        if (!pending.empty() && r0 + r - g_begin > bounds.gather_rows) flush();
        if (pending.empty()) g_begin = r0;
        g_end = r0 + r;
        for (int64_t c0 = 0; c0 < size; c0 += chunk_cols) {
          pending.push_back({r0, r, list_ptr[b] + c0, std::min(chunk_cols, size - c0)});
        }
      }
    }
    flush();

    ivf_refine_kernel<T, out_t><<<static_cast<unsigned int>(rows), kRefineThreads, refine_smem, stream>>>(
        xs.data_ptr<T>(), sorted.data_ptr<T>(), d, ids.data_ptr<int64_t>(), pos0, list_val.data_ptr<T>(),
        list_idx.data_ptr<int64_t>(), cap, cand, k, inv_scale, bound, dist.data_ptr<out_t>(),
        idx.data_ptr<int64_t>(), failed.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return failed;
}

}  // namespace knn_ivf_cuda_detail
}  // namespace hdml
