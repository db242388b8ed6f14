// Exact kNN on CUDA: cuBLAS tiles into one reused buffer, a block-wide running selection per
// query row, then an exact refinement of the selected candidates.
//
// For each block of up to kTileQueries query rows and kTileElements / rows points at a time,
// at::mm writes the products q.x_j into one tile buffer (TF32 disabled: the expansion needs
// full float32 products). Then select_tile_kernel runs one thread block per query row. The
// row's running list of the `cap` best (score, index) pairs so far (cap = the candidate count
// c = k + margin rounded up to a power of two) lives in global memory between tiles, sorted
// ascending; the kernel loads it into shared memory and streams the tile row past the c-th
// best score: each thread takes kItems scores per round, appends those that beat the
// threshold to a shared buffer (atomicAdd on a shared counter), and when the buffer could
// overflow in the next round, or at the end of the row, the block sorts the buffer (bitonic),
// merges it with the list (the elementwise min of the list and the reversed buffer holds the
// cap best and is bitonic, so one bitonic merge sorts it) and tightens the threshold.
// Scores are s_j = ||x_j||^2 - 2 q.x_j (the squared distance less the row constant ||q||^2; x
// and the queries centred, see knn.h); pairs compare by (score, index), so ties go to the
// smaller index whatever order threads run in. Finally refine_kernel recomputes the c
// candidates' squared distances from the original values by direct differences (one warp per
// candidate, double accumulation), sorts them by (distance, index) and writes the first k.
// at::NoTF32Guard keeps TF32 out of the products on the cuBLAS path; a cuBLASLt path that
// ignores the guard would only make the candidate selection coarser, never the distances.

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "knn.h"
#include "knn_certificate.h"
#include "knn_cuda_select.cuh"

namespace hdml {
namespace {

using namespace knn_detail;
using namespace knn_cuda_detail;

// Selection: threads per block, scores per thread per round, shared candidate buffer size.
constexpr int kSelectThreads = 128;
constexpr int kItems = 4;
constexpr int kRound = kSelectThreads * kItems;
constexpr int kBuffer = 2 * kRound;
static_assert(kBuffer >= kKnnCudaMaxCandidates, "the buffer must hold a whole candidate list");
static_assert((kBuffer & (kBuffer - 1)) == 0, "bitonic sorting needs a power-of-two buffer");
// Refinement: threads per block (whole warps), one query row per block.
constexpr int kRefineThreads = 256;
static_assert(kRefineThreads % 32 == 0, "refine_kernel works in whole warps");
// Norms: threads per block (whole warps), one warp per row.
constexpr int kNormThreads = 256;
// Tile: at most this many query rows and this many elements (rows * points) per GEMM.
constexpr int64_t kTileQueries = 4096;
constexpr int64_t kTileElements = int64_t{1} << 26;

// The sum of acc over the 32 lanes of a warp, in lane 0 (the other lanes hold partial sums).
// Every lane of the warp must call it.
__device__ __forceinline__ double warp_sum(double acc) {
  for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  return acc;
}

// ||p||^2 of a d-vector, accumulated in double by the 32 lanes of a warp, in lane 0. Every lane
// of the warp must call it.
template <typename T>
__device__ __forceinline__ double warp_squared_norm(const T* __restrict__ p, int64_t d, int lane) {
  double acc = 0.0;
  for (int64_t l = lane; l < d; l += 32) {
    const double v = static_cast<double>(p[l]);
    acc += v * v;
  }
  return warp_sum(acc);
}

// norms[j] = ||x_j||^2 (double accumulation), one warp per row.
template <typename T>
__global__ void row_norms_kernel(const T* __restrict__ x, int64_t n, int64_t d, T* __restrict__ norms) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (row >= n) return;  // the same for the whole warp: blockDim is a multiple of 32
  const double norm2 = warp_squared_norm(x + row * d, d, lane);
  if (lane == 0) norms[row] = static_cast<T>(norm2);
}

// One block per query row r of the tile: merges the scores of points col0 .. col0 + cols - 1
// (but self_ids[r], when given) into the row's sorted list (list_val, list_idx)[r * cap, (r + 1) * cap). The threshold is the
// list's entry cand - 1; only the first cand entries are ever used.
template <typename T>
__global__ void __launch_bounds__(kSelectThreads)
    select_tile_kernel(const T* __restrict__ prod, const T* __restrict__ norms, int64_t cols, int64_t col0,
                       const int64_t* __restrict__ self_ids, T* __restrict__ list_val,
                       int64_t* __restrict__ list_idx, int cap, int cand) {
  extern __shared__ unsigned char smem[];
  int64_t* s_list_idx = reinterpret_cast<int64_t*>(smem);
  int64_t* s_buf_idx = s_list_idx + cap;
  T* s_list_val = reinterpret_cast<T*>(s_buf_idx + kBuffer);
  T* s_buf_val = s_list_val + cap;
  __shared__ int s_count;

  const int tid = threadIdx.x;
  const int64_t r = blockIdx.x;
  const int64_t list0 = r * cap;
  for (int i = tid; i < cap; i += kSelectThreads) {
    s_list_val[i] = list_val[list0 + i];
    s_list_idx[i] = list_idx[list0 + i];
  }
  if (tid == 0) s_count = 0;
  __syncthreads();
  T thr_val = s_list_val[cand - 1];
  int64_t thr_idx = s_list_idx[cand - 1];

  // The point this row skips (its own, when the queries are x), else -1.
  const int64_t self = self_ids == nullptr ? -1 : self_ids[r];
  const T* row = prod + r * cols;
  for (int64_t base = 0; base < cols; base += kRound) {
#pragma unroll
    for (int it = 0; it < kItems; ++it) {
      const int64_t c = base + it * kSelectThreads + tid;
      if (c < cols) {
        const int64_t j = col0 + c;
        const T s = norms[j] - T(2) * row[c];
        if (j != self && pair_less(s, j, thr_val, thr_idx)) {
          const int slot = atomicAdd(&s_count, 1);
          s_buf_val[slot] = s;
          s_buf_idx[slot] = j;
        }
      }
    }
    // Without a merge the buffer keeps at most kBuffer - kRound, room for one more round.
    end_round(&s_count, s_list_val, s_list_idx, s_buf_val, s_buf_idx, cap, cand, kBuffer - kRound,
              base + kRound >= cols, thr_val, thr_idx);
  }
  for (int i = tid; i < cap; i += kSelectThreads) {
    list_val[list0 + i] = s_list_val[i];
    list_idx[list0 + i] = s_list_idx[i];
  }
}

// The certificate of refine_kernel (knn_certificate.h).
struct Certificate {
  ExpansionBound bound;
  bool trivial;  // every point is a candidate: nothing to certify
};

// One block per query row r of the block starting at query q0: the exact squared distances of
// the row's first cand candidates, sorted by (distance, index); the first k are written out as
// distances (sqrt, times inv_scale) and indices. failed[r] becomes 1 when no certificate shows
// that every other point is farther than the k-th: non-candidates had scores at least the
// list's entry cand - 1 (thr).
template <typename T, typename out_t>
__global__ void __launch_bounds__(kRefineThreads)
    refine_kernel(const T* __restrict__ x, const T* __restrict__ queries, const T* __restrict__ queries_exp,
                  int64_t d, const T* __restrict__ list_val, const int64_t* __restrict__ list_idx, int cap, int cand,
                  int64_t k, double inv_scale, Certificate cert, out_t* __restrict__ dist,
                  int64_t* __restrict__ idx, uint8_t* __restrict__ failed) {
  extern __shared__ unsigned char smem[];
  int64_t* s_idx = reinterpret_cast<int64_t*>(smem);
  double* s_d2 = reinterpret_cast<double*>(s_idx + cap);
  __shared__ double s_q_norm2;

  const int64_t r = blockIdx.x;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  constexpr int kWarps = kRefineThreads / 32;
  const T* q = queries + r * d;
  // c is the same in every lane of a warp, so the shuffles below see the full warp.
  for (int c = warp; c < cap; c += kWarps) {
    if (c < cand) {
      const int64_t j = list_idx[r * cap + c];
      const T* p = x + j * d;
      double acc = 0.0;
      for (int64_t l = lane; l < d; l += 32) {
        const double diff = static_cast<double>(q[l]) - static_cast<double>(p[l]);
        acc += diff * diff;
      }
      acc = warp_sum(acc);
      if (lane == 0) {
        s_d2[c] = acc;
        s_idx[c] = j;
      }
    } else if (lane == 0) {
      s_d2[c] = positive_infinity<double>();
      s_idx[c] = kNoIndex;
    }
  }
  if (warp == 0) {
    const double q_norm2 = warp_squared_norm(queries_exp + r * d, d, lane);
    if (lane == 0) s_q_norm2 = q_norm2;
  }
  __syncthreads();
  bitonic_sort(s_d2, s_idx, cap);
  if (threadIdx.x == 0) {
    const double thr = static_cast<double>(list_val[r * cap + cand - 1]);
    bool ok = cert.trivial || isinf(thr);
    if (!ok) ok = certifies(cert.bound, s_d2[k - 1], thr, s_q_norm2);
    failed[r] = ok ? 0 : 1;
  }
  for (int64_t c = threadIdx.x; c < k; c += kRefineThreads) {
    const double value = sqrt(s_d2[c]) * inv_scale;
    if constexpr (std::is_same_v<out_t, double>) {
      dist[r * k + c] = value;
    } else {
      dist[r * k + c] = static_cast<out_t>(static_cast<float>(value));
    }
    idx[r * k + c] = s_idx[c];
  }
}

int next_power_of_two(int64_t v) {
  int p = 32;
  while (p < v) p <<= 1;
  return p;
}

// The points, as every search below uses them.
struct CudaPoints {
  at::Tensor x;      // [n, d] scaled like the queries (exact distances)
  at::Tensor x_exp;  // [n, d] centred (expansion)
  at::Tensor norms;  // [n] ||x~_j||^2
  int64_t k;
  double inv_scale;
  ExpansionBound bound;  // the certificate's rounding bound
};

// Searches the queries (q, q_exp: [m, d], contiguous) with `cand` candidates per row; self_ids
// ([m] int64 on the device, or undefined) gives the point each row skips. Writes dist and idx
// ([m, k]) and failed ([m] uint8: 1 where the result is not certified).
template <typename T, typename out_t>
void cuda_search(const CudaPoints& pts, const at::Tensor& q, const at::Tensor& q_exp, const at::Tensor& self_ids,
                 int64_t cand64, at::Tensor& dist, at::Tensor& idx, at::Tensor& failed) {
  const at::Tensor& xe = pts.x_exp;
  const int64_t n = xe.size(0);
  const int64_t d = xe.size(1);
  const int64_t m = q.size(0);
  const int64_t k = pts.k;
  const int cand = static_cast<int>(cand64);
  const int cap = next_power_of_two(cand);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const Certificate cert{pts.bound, cand64 >= (self_ids.defined() ? n - 1 : n)};

  const int64_t tile_rows = std::min(kTileQueries, m);
  const int64_t tile_cols = std::min(n, std::max<int64_t>(kRound, kTileElements / tile_rows));
  at::Tensor tile = at::empty({tile_rows * tile_cols}, xe.options());
  at::Tensor list_val = at::empty({tile_rows * cap}, xe.options());
  at::Tensor list_idx = at::empty({tile_rows * cap}, xe.options().dtype(at::kLong));
  const size_t select_smem = static_cast<size_t>(cap + kBuffer) * (sizeof(int64_t) + sizeof(T));
  const size_t refine_smem = static_cast<size_t>(cap) * (sizeof(int64_t) + sizeof(double));
  const int64_t* self_p = self_ids.defined() ? self_ids.data_ptr<int64_t>() : nullptr;
  // Full float32 products: TF32 would round the inputs to 10 mantissa bits.
  at::NoTF32Guard no_tf32;

  for (int64_t q0 = 0; q0 < m; q0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, m - q0);
    list_val.fill_(std::numeric_limits<T>::infinity());
    list_idx.fill_(kNoIndex);
    const at::Tensor q_block = q_exp.narrow(0, q0, rows);
    for (int64_t c0 = 0; c0 < n; c0 += tile_cols) {
      const int64_t cols = std::min(tile_cols, n - c0);
      at::Tensor prod = tile.narrow(0, 0, rows * cols).view({rows, cols});
      at::mm_out(prod, q_block, xe.narrow(0, c0, cols).t());
      select_tile_kernel<T><<<static_cast<unsigned int>(rows), kSelectThreads, select_smem, stream>>>(
          prod.data_ptr<T>(), pts.norms.data_ptr<T>(), cols, c0, self_p == nullptr ? nullptr : self_p + q0,
          list_val.data_ptr<T>(), list_idx.data_ptr<int64_t>(), cap, cand);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    refine_kernel<T, out_t><<<static_cast<unsigned int>(rows), kRefineThreads, refine_smem, stream>>>(
        pts.x.data_ptr<T>(), q.data_ptr<T>() + q0 * d, q_exp.data_ptr<T>() + q0 * d, d, list_val.data_ptr<T>(),
        list_idx.data_ptr<int64_t>(), cap, cand, k, pts.inv_scale, cert, dist.data_ptr<out_t>() + q0 * k,
        idx.data_ptr<int64_t>() + q0 * k, failed.data_ptr<uint8_t>() + q0);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// The exact k nearest of the query rows `rows` ([f] int64, device) by direct differences in
// float64 (torch.cdist without the matrix-product form) and a stable sort: ties by index.
// Blocks of rows keep the [rows, n] distance matrix under 2^26 entries.
template <typename T>
void brute_force_rows(const CudaPoints& pts, const at::Tensor& q, const at::Tensor& rows, bool exclude_self,
                      at::Tensor& dist, at::Tensor& idx) {
  const int64_t n = pts.x.size(0);
  const int64_t k = pts.k;
  const at::Tensor x64 = pts.x.to(at::kDouble);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 26) / n);
  for (int64_t start = 0; start < rows.size(0); start += chunk) {
    const at::Tensor part = rows.narrow(0, start, std::min(chunk, rows.size(0) - start));
    at::Tensor d = at::_cdist_forward(q.index_select(0, part).to(at::kDouble), x64, 2.0, /*compute_mode=*/2);
    if (exclude_self) d.scatter_(1, part.unsqueeze(1), std::numeric_limits<double>::infinity());
    auto [values, order] = at::sort(d, /*stable=*/true, /*dim=*/1, /*descending=*/false);
    dist.index_copy_(0, part, (values.narrow(1, 0, k) * pts.inv_scale).to(dist.scalar_type()));
    idx.index_copy_(0, part, order.narrow(1, 0, k));
  }
}

template <typename T, typename out_t>
void knn_cuda_impl(const KnnOperands& operands, bool exclude_self, int64_t k, at::Tensor& dist, at::Tensor& idx) {
  const at::Tensor& xe = operands.x_exp;
  const int64_t n = xe.size(0);
  const int64_t d = xe.size(1);
  const int64_t m = operands.queries.size(0);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  // ||x_j||^2 of the centred points, once.
  at::Tensor norms = at::empty({n}, xe.options());
  {
    const int64_t blocks = (n * 32 + kNormThreads - 1) / kNormThreads;
    row_norms_kernel<T><<<static_cast<unsigned int>(blocks), kNormThreads, 0, stream>>>(
        xe.data_ptr<T>(), n, d, norms.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const CudaPoints pts{operands.x, xe, norms, k, operands.inv_scale,
                       expansion_bound<T>(d, norms.max().item<double>())};

  const int64_t available = exclude_self ? n - 1 : n;
  const int64_t cand = knn_num_candidates(n, exclude_self, k);
  at::Tensor failed = at::zeros({m}, xe.options().dtype(at::kByte));
  const at::Tensor self_ids = exclude_self ? at::arange(m, xe.options().dtype(at::kLong)) : at::Tensor();
  cuda_search<T, out_t>(pts, operands.queries, operands.q_exp, self_ids, cand, dist, idx, failed);

  // Rows whose result is not certified: again with as many candidates as the selection keeps,
  // then, for any still not certified, by brute force.
  at::Tensor rows = failed.nonzero().squeeze(1);
  const int64_t retry_cand = std::min(available, kKnnCudaMaxCandidates);
  if (rows.numel() > 0 && retry_cand > cand) {
    const int64_t f = rows.size(0);
    const at::Tensor q = operands.queries.index_select(0, rows);
    const at::Tensor q_exp = operands.q_exp.index_select(0, rows);
    at::Tensor sub_dist = at::empty({f, k}, dist.options());
    at::Tensor sub_idx = at::empty({f, k}, idx.options());
    at::Tensor sub_failed = at::zeros({f}, failed.options());
    cuda_search<T, out_t>(pts, q, q_exp, exclude_self ? rows : at::Tensor(), retry_cand, sub_dist, sub_idx,
                          sub_failed);
    dist.index_copy_(0, rows, sub_dist);
    idx.index_copy_(0, rows, sub_idx);
    rows = rows.index_select(0, sub_failed.nonzero().squeeze(1));
  }
  if (rows.numel() > 0) brute_force_rows<T>(pts, operands.queries, rows, exclude_self, dist, idx);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& x, const std::optional<at::Tensor>& queries,
                                            int64_t k) {
  const int64_t m = knn_check_args(x, queries, k);
  // Neighbour search is not differentiable: inputs that require grad are read as plain values.
  const at::NoGradGuard no_grad;
  TORCH_CHECK(x.is_cuda(), "knn: x should be a CUDA tensor for the CUDA kernel, got ", x.device());
  const bool exclude_self = !queries.has_value();
  TORCH_CHECK(knn_num_candidates(x.size(0), exclude_self, k) <= kKnnCudaMaxCandidates,
              "knn: k should be <= ", kKnnCudaMaxCandidates - kKnnMargin, " on CUDA (the selection keeps k + ",
              kKnnMargin, " candidates per query, at most ", kKnnCudaMaxCandidates, "), got ", k);
  const c10::cuda::CUDAGuard guard(x.device());
  double max_abs = checked_max_abs(x, "x");
  if (queries.has_value()) max_abs = std::max(max_abs, checked_max_abs(*queries, "queries"));

  at::Tensor dist = at::empty({m, k}, x.options());
  at::Tensor idx = at::empty({m, k}, x.options().dtype(at::kLong));
  if (m == 0) return {dist, idx};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_cuda", [&] {
    // float16 and bfloat16 are computed in float32; the distances come back in x's dtype.
    using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const at::ScalarType compute = c10::CppTypeToScalarType<compute_t>::value;
    const KnnOperands operands = knn_operands(x, queries, compute, max_abs);
    knn_cuda_impl<compute_t, scalar_t>(operands, exclude_self, k, dist, idx);
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("knn", &knn_cuda);
}

}  // namespace hdml
