// CUDA kernels of gcn_aggregate (out = D^-1/2 A D^-1/2 z) and its transpose (the backward).
//
// One block per (graph, tile of kTileF feature columns), a grid-stride loop over them. The block
// computes its graph's inverse square-root degrees into shared memory (one warp per row, a warp
// reduction; for graphs too large for that, a first kernel writes them to global memory), then
// for each block of kRowBlock output rows walks the source nodes in chunks of 32: the chunk's
// feature tile, pre-scaled by d_j, and the matching kRowBlock x 32 block of A (rows of A in the
// forward, columns in the backward, both read coalesced) are staged in shared memory; each warp
// owns kRowsPerWarp output rows and, for each, takes a ballot of the non-zero entries of its
// row of the A block, so that the warp visits only the edges (uniformly, without divergence)
// and each lane accumulates two feature columns in registers. The normalised matrix is never
// formed.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "gcn_aggregate.h"

namespace hdml {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTileF = 64;  // feature columns per block: two per lane
constexpr int kRowsPerWarp = 8;
constexpr int kRowBlock = kWarps * kRowsPerWarp;  // output rows per pass: 64 (an F-Graph at k = 50 in one)
constexpr int kSrcChunk = 32;                     // source nodes per staged chunk: one per lane
constexpr int kCoefStride = kSrcChunk + 1;        // padded rows of the staged A block
// Degrees go to shared memory up to this size; beyond it a separate kernel computes them.
constexpr int64_t kMaxSharedDegreeBytes = 12 * 1024;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename acc_t>
__device__ __forceinline__ acc_t inv_sqrt_degree(acc_t deg) {
  return deg > acc_t(0) ? acc_t(1) / sqrt(deg) : acc_t(0);
}

// sum_j row[j] over the whole warp (every lane gets the total).
template <typename adj_t, typename acc_t>
__device__ __forceinline__ acc_t warp_row_sum(const adj_t* row, int64_t n, int lane) {
  acc_t sum = 0;
  for (int64_t j = lane; j < n; j += 32) sum += static_cast<acc_t>(row[j]);
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(kFullMask, sum, offset);
  return sum;
}

// d[row] = deg^-1/2 (0 where deg <= 0) for rows = B * n rows of A, one warp per row.
template <typename adj_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    inv_sqrt_degrees_kernel(const adj_t* __restrict__ adj, acc_t* __restrict__ d, int64_t rows, int64_t n) {
  const int lane = threadIdx.x % 32;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; row < rows; row += stride) {
    const acc_t deg = warp_row_sum<adj_t, acc_t>(adj + row * n, n, lane);
    if (lane == 0) d[row] = inv_sqrt_degree(deg);
  }
}

// dst[b] = (D^-1/2 A D^-1/2) src[b], or its transpose applied to src[b] (kTranspose); adj, src
// and dst contiguous. d_global: [B, n] degrees from inv_sqrt_degrees_kernel, or null to compute
// them per block into shared memory.
template <bool kTranspose, typename scalar_t, typename adj_t>
__global__ void __launch_bounds__(kThreads)
    gcn_aggregate_kernel(const adj_t* __restrict__ adj, const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                         const at::opmath_type<scalar_t>* __restrict__ d_global, int64_t B, int64_t n, int64_t F,
                         int64_t f_tiles) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  acc_t* zs = reinterpret_cast<acc_t*>(smem);     // [kSrcChunk, kTileF] d_j * src[b, j, tile]
  acc_t* coef = zs + kSrcChunk * kTileF;          // [kRowBlock, kCoefStride] the A block
  acc_t* d_shared = coef + kRowBlock * kCoefStride;  // [n] when d_global is null
  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int64_t items = B * f_tiles;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t b = item / f_tiles;
    const int64_t f0 = (item % f_tiles) * kTileF;
    const adj_t* a = adj + b * n * n;
    const scalar_t* s_graph = src + b * n * F;
    scalar_t* d_graph_out = dst + b * n * F;
    const acc_t* d = d_global != nullptr ? d_global + b * n : d_shared;
    __syncthreads();  // the previous item is done with shared memory
    if (d_global == nullptr) {
      for (int64_t i = warp; i < n; i += kWarps) {
        const acc_t deg = warp_row_sum<adj_t, acc_t>(a + i * n, n, lane);
        if (lane == 0) d_shared[i] = inv_sqrt_degree(deg);
      }
      __syncthreads();
    }
    for (int64_t r0 = 0; r0 < n; r0 += kRowBlock) {
      acc_t acc[kRowsPerWarp][2];
#pragma unroll
      for (int k = 0; k < kRowsPerWarp; ++k) acc[k][0] = acc[k][1] = acc_t(0);
      for (int64_t s0 = 0; s0 < n; s0 += kSrcChunk) {
        __syncthreads();  // everyone is done with the previous chunk
        for (int e = tid; e < kSrcChunk * kTileF; e += kThreads) {
          const int64_t node = s0 + e / kTileF;
          const int64_t col = f0 + e % kTileF;
          acc_t v = acc_t(0);
          if (node < n && col < F) v = d[node] * static_cast<acc_t>(s_graph[node * F + col]);
          zs[e] = v;
        }
        for (int e = tid; e < kRowBlock * kSrcChunk; e += kThreads) {
          // Consecutive threads read consecutive entries of A: along its rows in the forward,
          // along its columns (= the output rows) in the backward.
          const int r = kTranspose ? e % kRowBlock : e / kSrcChunk;
          const int s = kTranspose ? e / kRowBlock : e % kSrcChunk;
          const int64_t row = r0 + r;
          const int64_t node = s0 + s;
          acc_t w = acc_t(0);
          if (row < n && node < n) w = static_cast<acc_t>(kTranspose ? a[node * n + row] : a[row * n + node]);
          coef[r * kCoefStride + s] = w;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < kRowsPerWarp; ++k) {
          const int r = warp * kRowsPerWarp + k;
          if (r0 + r < n) {  // uniform across the warp
            const acc_t w = coef[r * kCoefStride + lane];
            for (unsigned mask = __ballot_sync(kFullMask, w != acc_t(0)); mask != 0; mask &= mask - 1) {
              const int s = __ffs(static_cast<int>(mask)) - 1;
              const acc_t c = __shfl_sync(kFullMask, w, s);
              acc[k][0] += c * zs[s * kTileF + lane];
              acc[k][1] += c * zs[s * kTileF + lane + 32];
            }
          }
        }
      }
#pragma unroll
      for (int k = 0; k < kRowsPerWarp; ++k) {
        const int64_t row = r0 + warp * kRowsPerWarp + k;
        if (row < n) {
          const acc_t dr = d[row];
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int64_t col = f0 + lane + 32 * h;
            if (col < F) d_graph_out[row * F + col] = static_cast<scalar_t>(dr == acc_t(0) ? acc_t(0) : dr * acc[k][h]);
          }
        }
      }
    }
  }
}

template <bool kTranspose, typename scalar_t, typename adj_t>
void launch(const at::Tensor& adj, const at::Tensor& src, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = src.size(0);
  const int64_t n = src.size(1);
  const int64_t F = src.size(2);
  const int64_t f_tiles = (F + kTileF - 1) / kTileF;
  const int64_t max_blocks = int64_t{1} << 30;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool shared_degrees = n * static_cast<int64_t>(sizeof(acc_t)) <= kMaxSharedDegreeBytes;
  at::Tensor d_all;
  const acc_t* d_global = nullptr;
  if (!shared_degrees) {
    d_all = at::empty({B, n}, src.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const int64_t rows = B * n;
    const int64_t blocks = std::min((rows + kWarps - 1) / kWarps, max_blocks);
    inv_sqrt_degrees_kernel<adj_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        adj.data_ptr<adj_t>(), d_all.data_ptr<acc_t>(), rows, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    d_global = d_all.data_ptr<acc_t>();
  }
  const size_t smem = (kSrcChunk * kTileF + kRowBlock * kCoefStride + (shared_degrees ? n : 0)) * sizeof(acc_t);
  const int64_t blocks = std::min(B * f_tiles, max_blocks);
  gcn_aggregate_kernel<kTranspose, scalar_t, adj_t><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
      adj.data_ptr<adj_t>(), src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), d_global, B, n, F, f_tiles);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <bool kTranspose>
at::Tensor aggregate_cuda(const at::Tensor& adj_in, const at::Tensor& src_in) {
  const c10::cuda::CUDAGuard guard(src_in.device());
  const at::Tensor adj = adj_in.contiguous();
  const at::Tensor src = src_in.contiguous();
  at::Tensor out = at::empty(src.sizes(), src.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "gcn_aggregate_cuda", [&] {
    using src_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, adj.scalar_type(), "gcn_aggregate_cuda_adj",
                                    [&] { launch<kTranspose, src_t, scalar_t>(adj, src, out); });
  });
  return out;
}

}  // namespace

at::Tensor gcn_aggregate_cuda(const at::Tensor& adj, const at::Tensor& z) {
  check_gcn_aggregate_args(adj, z, "z");
  return aggregate_cuda<false>(adj, z);
}

at::Tensor gcn_aggregate_backward_cuda(const at::Tensor& grad_out, const at::Tensor& adj) {
  check_gcn_aggregate_args(adj, grad_out, "grad_out");
  return aggregate_cuda<true>(adj, grad_out);
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("gcn_aggregate", &gcn_aggregate_cuda);
  m.impl("gcn_aggregate_backward", &gcn_aggregate_backward_cuda);
}

}  // namespace hdml
