// NFA clamped channel gate on CUDA.
//
// Contiguous x ([B, C, S] rows, one gate per row):
//   forward  one elementwise pass in memory order with 16-byte loads and stores; each vector
//            finds its row by multiply-shift division and recomputes the sigmoid only when the
//            row changes.
//   backward a group of threads per (b, c) row reads dy and x once, writes dx and reduces
//            sum(dy * x) in the same pass (warp shuffles, then shared memory across warps), and
//            writes grad_logits directly.
// Channels-last x ([B, S, C], one gate vector per batch item): a block per (batch item, chunk
// of positions, tile of channels); each thread holds the gates of its VEC channels in registers
// and walks the chunk's positions.
//   forward  y = x * g' in that walk.
//   backward dx in that walk, plus one partial sum per channel, reduced across the block's
//            thread rows in shared memory into a [B, chunks, C] buffer; a small second kernel
//            adds the chunks in order and applies the slope.
// No atomics: results do not depend on scheduling.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "nfa_gate.h"

namespace hdml {
namespace {

using at::cuda::detail::IntDivider;
using namespace nfa_gate_detail;

constexpr int kThreads = 256;
// Positions each thread of the channels-last kernels walks per chunk (a chunk is ty * this).
constexpr int64_t kChunkIters = 8;

// A 16-byte (or narrower, for N = 1) group of elements, loaded and stored in one instruction.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename scalar_t>
constexpr int vec_size() {
  return static_cast<int>(16 / sizeof(scalar_t));
}

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// Contiguous forward: element e of x belongs to row e / S, whose gate is g'(logits[row]).
template <typename scalar_t, typename logit_t, typename index_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    nfa_gate_forward_rows_kernel(const scalar_t* __restrict__ x,
                                 const logit_t* __restrict__ logits, scalar_t* __restrict__ y,
                                 index_t numel, IntDivider<index_t> spatial,
                                 at::opmath_type<scalar_t> lo, at::opmath_type<scalar_t> hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t n_vec = numel / VEC;
  const index_t start = static_cast<index_t>(blockIdx.x) * kThreads + threadIdx.x;
  const index_t stride = static_cast<index_t>(gridDim.x) * kThreads;
  for (index_t v = start; v < n_vec; v += stride) {
    const index_t e0 = v * VEC;
    const Pack<scalar_t, VEC> in = load_pack<scalar_t, VEC>(x + e0);
    Pack<scalar_t, VEC> out;
    index_t row = spatial.div(e0);
    acc_t g = gate(static_cast<acc_t>(logits[row]), lo, hi);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      if (k > 0) {
        const index_t row_k = spatial.div(e0 + k);
        if (row_k != row) {  // only where S is not a multiple of VEC
          row = row_k;
          g = gate(static_cast<acc_t>(logits[row]), lo, hi);
        }
      }
      out.v[k] = static_cast<scalar_t>(static_cast<acc_t>(in.v[k]) * g);
    }
    store_pack<scalar_t, VEC>(y + e0, out);
  }
  // The last numel % VEC elements, one per thread.
  const index_t tail = numel - n_vec * VEC;
  if (start < tail) {
    const index_t e = n_vec * VEC + start;
    const acc_t g = gate(static_cast<acc_t>(logits[spatial.div(e)]), lo, hi);
    y[e] = static_cast<scalar_t>(static_cast<acc_t>(x[e]) * g);
  }
}

// The channels-last block of a (batch item, chunk of positions, tile of channels) grid:
// blockDim = (tx, ty), tx * ty = kThreads; thread (tx_i, ty_i) takes channels c0 .. c0 + VEC - 1,
// c0 = (tile * tx + tx_i) * VEC, at positions chunk * chunk_len + ty_i + j * ty.
struct ChannelsLastBlock {
  int64_t b, chunk, c0, s_begin, s_end;
  bool active;  // c0 < C: this thread has channels to work on

  __device__ __forceinline__ ChannelsLastBlock(int64_t channels, int64_t spatial, int64_t tiles,
                                               int64_t chunks, int64_t chunk_len, int vec) {
    int64_t block = blockIdx.x;
    const int64_t tile = block % tiles;
    block /= tiles;
    chunk = block % chunks;
    b = block / chunks;
    c0 = (tile * blockDim.x + threadIdx.x) * vec;
    active = c0 < channels;
    s_begin = chunk * chunk_len + threadIdx.y;
    s_end = std::min(spatial, (chunk + 1) * chunk_len);
  }
};

template <typename scalar_t, typename logit_t, int VEC>
__device__ __forceinline__ void load_gates(const logit_t* __restrict__ logits, int64_t index,
                                           bool active, at::opmath_type<scalar_t> lo,
                                           at::opmath_type<scalar_t> hi,
                                           at::opmath_type<scalar_t> (&g)[VEC]) {
  using acc_t = at::opmath_type<scalar_t>;
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    g[k] = active ? gate(static_cast<acc_t>(logits[index + k]), lo, hi) : acc_t(0);
  }
}

// Channels-last forward: y = x * g' over the block's positions and channels. VEC divides C.
template <typename scalar_t, typename logit_t, int VEC>
__global__ void __launch_bounds__(kThreads) nfa_gate_forward_channels_last_kernel(
    const scalar_t* __restrict__ x, const logit_t* __restrict__ logits, scalar_t* __restrict__ y,
    int64_t channels, int64_t spatial, int64_t tiles, int64_t chunks, int64_t chunk_len,
    at::opmath_type<scalar_t> lo, at::opmath_type<scalar_t> hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelsLastBlock blk(channels, spatial, tiles, chunks, chunk_len, VEC);
  if (!blk.active) return;
  acc_t g[VEC];
  load_gates<scalar_t, logit_t, VEC>(logits, blk.b * channels + blk.c0, true, lo, hi, g);
  for (int64_t s = blk.s_begin; s < blk.s_end; s += blockDim.y) {
    const int64_t off = (blk.b * spatial + s) * channels + blk.c0;
    const Pack<scalar_t, VEC> in = load_pack<scalar_t, VEC>(x + off);
    Pack<scalar_t, VEC> out;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      out.v[k] = static_cast<scalar_t>(static_cast<acc_t>(in.v[k]) * g[k]);
    }
    store_pack<scalar_t, VEC>(y + off, out);
  }
}

// blockDim = (tx, ty), tx * ty = kThreads, tx a power of two: ty rows per step, tx threads per
// row. Rows are [B * C] of `spatial` elements; VEC divides `spatial`.
template <typename scalar_t, typename logit_t, int VEC>
__global__ void __launch_bounds__(kThreads)
    nfa_gate_backward_rows_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                                  const logit_t* __restrict__ logits, scalar_t* __restrict__ dx,
                                  logit_t* __restrict__ dlogits, int64_t rows, int64_t spatial,
                                  at::opmath_type<scalar_t> lo, at::opmath_type<scalar_t> hi) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t warp_sums[kThreads / 32];
  const int tx = blockDim.x;
  const int ty = blockDim.y;
  const int lanes = tx < 32 ? tx : 32;
  const int64_t n_vec = spatial / VEC;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * ty; base < rows;
       base += static_cast<int64_t>(gridDim.x) * ty) {
    const int64_t r = base + threadIdx.y;
    acc_t sum(0);
    acc_t logit(0);
    if (r < rows) {
      logit = static_cast<acc_t>(logits[r]);
      const acc_t g = gate(logit, lo, hi);
      const int64_t off = r * spatial;
      for (int64_t v = threadIdx.x; v < n_vec; v += tx) {
        const Pack<scalar_t, VEC> d = load_pack<scalar_t, VEC>(dy + off + v * VEC);
        const Pack<scalar_t, VEC> xv = load_pack<scalar_t, VEC>(x + off + v * VEC);
        Pack<scalar_t, VEC> out;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          const acc_t dk = static_cast<acc_t>(d.v[k]);
          out.v[k] = static_cast<scalar_t>(dk * g);
          sum += dk * static_cast<acc_t>(xv.v[k]);
        }
        store_pack<scalar_t, VEC>(dx + off + v * VEC, out);
      }
    }
    // The tx threads of a row are `lanes`-aligned groups of one warp, or whole warps.
    for (int offset = lanes / 2; offset > 0; offset /= 2) {
      sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    }
    if (tx > 32) {
      const int warps_per_row = tx / 32;
      if (threadIdx.x % 32 == 0) warp_sums[threadIdx.y * warps_per_row + threadIdx.x / 32] = sum;
      __syncthreads();
      if (threadIdx.x == 0) {
        sum = acc_t(0);
        for (int w = 0; w < warps_per_row; ++w) sum += warp_sums[threadIdx.y * warps_per_row + w];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0 && r < rows) {
      dlogits[r] = static_cast<logit_t>(sum * slope(logit, lo, hi));
    }
  }
}

// Channels-last backward: dx = dy * g' over the block's positions and channels, and
// partial[b, chunk, c] = sum over the chunk's positions of dy * x. VEC divides C.
template <typename scalar_t, typename logit_t, int VEC>
__global__ void __launch_bounds__(kThreads) nfa_gate_backward_channels_last_kernel(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
    const logit_t* __restrict__ logits, scalar_t* __restrict__ dx,
    at::opmath_type<scalar_t>* __restrict__ partial, int64_t channels, int64_t spatial,
    int64_t tiles, int64_t chunks, int64_t chunk_len, at::opmath_type<scalar_t> lo,
    at::opmath_type<scalar_t> hi) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t smem[VEC * kThreads];  // [VEC][ty][tx]
  const int tx = blockDim.x;
  const int ty = blockDim.y;
  const ChannelsLastBlock blk(channels, spatial, tiles, chunks, chunk_len, VEC);
  acc_t g[VEC];
  acc_t acc[VEC];
  load_gates<scalar_t, logit_t, VEC>(logits, blk.b * channels + blk.c0, blk.active, lo, hi, g);
#pragma unroll
  for (int k = 0; k < VEC; ++k) acc[k] = acc_t(0);
  if (blk.active) {
    for (int64_t s = blk.s_begin; s < blk.s_end; s += ty) {
      const int64_t off = (blk.b * spatial + s) * channels + blk.c0;
      const Pack<scalar_t, VEC> d = load_pack<scalar_t, VEC>(dy + off);
      const Pack<scalar_t, VEC> xv = load_pack<scalar_t, VEC>(x + off);
      Pack<scalar_t, VEC> out;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const acc_t dk = static_cast<acc_t>(d.v[k]);
        out.v[k] = static_cast<scalar_t>(dk * g[k]);
        acc[k] += dk * static_cast<acc_t>(xv.v[k]);
      }
      store_pack<scalar_t, VEC>(dx + off, out);
    }
  }
  // Every thread reaches the barrier (no early return above).
#pragma unroll
  for (int k = 0; k < VEC; ++k) smem[(k * ty + threadIdx.y) * tx + threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && blk.active) {
    acc_t* out = partial + (blk.b * chunks + blk.chunk) * channels + blk.c0;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      acc_t total(0);
      for (int j = 0; j < ty; ++j) total += smem[(k * ty + j) * tx + threadIdx.x];
      out[k] = total;
    }
  }
}

// grad_logits[b, c] = sum_chunk partial[b, chunk, c] * slope(logits[b, c]).
template <typename acc_t, typename logit_t>
__global__ void __launch_bounds__(kThreads)
    nfa_gate_backward_finish_kernel(const acc_t* __restrict__ partial,
                                    const logit_t* __restrict__ logits,
                                    logit_t* __restrict__ dlogits, int64_t rows, int64_t channels,
                                    int64_t chunks, acc_t lo, acc_t hi) {
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t b = r / channels;
    const int64_t c = r % channels;
    const acc_t* p = partial + b * chunks * channels + c;
    acc_t sum(0);
    for (int64_t k = 0; k < chunks; ++k) sum += p[k * channels];
    dlogits[r] = static_cast<logit_t>(sum * slope(static_cast<acc_t>(logits[r]), lo, hi));
  }
}

// Enough resident blocks to fill the current device (a grid-stride loop does the rest).
// ATen/cuda/CUDAContext.h is not included: it needs the cuSPARSE/cuBLAS headers, which a
// bare CUDA toolkit does not carry.
int64_t max_blocks() {
  int device = 0;
  int sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return static_cast<int64_t>(sms) * (2048 / kThreads);
}

int64_t blocks_for(int64_t work_items) {
  return std::max<int64_t>(1, std::min((work_items + kThreads - 1) / kThreads, max_blocks()));
}

int floor_pow2(int64_t n) {
  int p = 1;
  while (p * 2 <= n && p * 2 <= kThreads) p *= 2;
  return p;
}

// The (batch item, chunk, tile) grid of the channels-last kernels for VEC channels per thread.
struct ChannelsLastGrid {
  int tx, ty;
  int64_t tiles, chunks, chunk_len;
};

ChannelsLastGrid channels_last_grid(const Dims& d, int vec) {
  ChannelsLastGrid grid{};
  const int64_t c_vec = d.channels / vec;
  grid.tx = 1;
  while (grid.tx < c_vec && grid.tx < 64) grid.tx *= 2;  // up to 64 threads across channels
  grid.ty = kThreads / grid.tx;
  grid.tiles = (c_vec + grid.tx - 1) / grid.tx;
  const int64_t outer = d.batch * grid.tiles;
  constexpr int64_t kMaxGrid = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(outer <= kMaxGrid, "nfa_gate: x with B = ", d.batch, " and C = ", d.channels,
              " in channels-last layout needs more CUDA blocks than a grid holds");
  grid.chunk_len = grid.ty * kChunkIters;
  grid.chunks = (d.spatial + grid.chunk_len - 1) / grid.chunk_len;
  if (grid.chunks > kMaxGrid / outer) {
    grid.chunk_len = (d.spatial + kMaxGrid / outer - 1) / (kMaxGrid / outer);
    grid.chunks = (d.spatial + grid.chunk_len - 1) / grid.chunk_len;
  }
  return grid;
}

template <typename scalar_t, typename logit_t, typename index_t, int VEC>
void launch_forward_rows(const scalar_t* x, const logit_t* logits, scalar_t* y, const Dims& d,
                         int64_t numel, double lo, double hi) {
  using acc_t = at::opmath_type<scalar_t>;
  nfa_gate_forward_rows_kernel<scalar_t, logit_t, index_t, VEC>
      <<<blocks_for(numel / VEC), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          x, logits, y, static_cast<index_t>(numel),
          IntDivider<index_t>(static_cast<index_t>(d.spatial)), static_cast<acc_t>(lo),
          static_cast<acc_t>(hi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename logit_t, int VEC>
void forward_rows(const scalar_t* x, const logit_t* logits, scalar_t* y, const Dims& d,
                  int64_t numel, double lo, double hi) {
  // 32-bit indices (and their multiply-shift division) whenever every index fits.
  if (numel <= std::numeric_limits<int32_t>::max()) {
    launch_forward_rows<scalar_t, logit_t, uint32_t, VEC>(x, logits, y, d, numel, lo, hi);
  } else {
    launch_forward_rows<scalar_t, logit_t, uint64_t, VEC>(x, logits, y, d, numel, lo, hi);
  }
}

template <typename scalar_t, typename logit_t, int VEC>
void forward_channels_last(const scalar_t* x, const logit_t* logits, scalar_t* y, const Dims& d,
                           double lo, double hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelsLastGrid grid = channels_last_grid(d, VEC);
  nfa_gate_forward_channels_last_kernel<scalar_t, logit_t, VEC>
      <<<d.batch * grid.tiles * grid.chunks, dim3(grid.tx, grid.ty), 0,
         c10::cuda::getCurrentCUDAStream()>>>(x, logits, y, d.channels, d.spatial, grid.tiles,
                                              grid.chunks, grid.chunk_len,
                                              static_cast<acc_t>(lo), static_cast<acc_t>(hi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename logit_t>
void forward(const at::Tensor& x, const logit_t* logits, at::Tensor& y, const Dims& d,
             Layout layout, double lo, double hi) {
  constexpr int kVec = vec_size<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const bool aligned = aligned16(xp) && aligned16(yp);
  if (layout == Layout::kContiguous) {
    if (aligned) {
      forward_rows<scalar_t, logit_t, kVec>(xp, logits, yp, d, x.numel(), lo, hi);
    } else {
      forward_rows<scalar_t, logit_t, 1>(xp, logits, yp, d, x.numel(), lo, hi);
    }
  } else if (aligned && d.channels % kVec == 0) {
    forward_channels_last<scalar_t, logit_t, kVec>(xp, logits, yp, d, lo, hi);
  } else {
    forward_channels_last<scalar_t, logit_t, 1>(xp, logits, yp, d, lo, hi);
  }
}

template <typename scalar_t, typename logit_t, int VEC>
void launch_backward_rows(const scalar_t* dy, const scalar_t* x, const logit_t* logits,
                          scalar_t* dx, logit_t* dlogits, const Dims& d, double lo, double hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t rows = d.batch * d.channels;
  // About four vectors per thread along a row; the rest of the block takes further rows.
  const int tx = floor_pow2((d.spatial / VEC + 3) / 4);
  const int ty = kThreads / tx;
  const int64_t blocks = std::max<int64_t>(1, std::min((rows + ty - 1) / ty, max_blocks() * 8));
  nfa_gate_backward_rows_kernel<scalar_t, logit_t, VEC>
      <<<blocks, dim3(tx, ty), 0, c10::cuda::getCurrentCUDAStream()>>>(
          dy, x, logits, dx, dlogits, rows, d.spatial, static_cast<acc_t>(lo),
          static_cast<acc_t>(hi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename logit_t, int VEC>
void launch_backward_channels_last(const scalar_t* dy, const scalar_t* x, const logit_t* logits,
                                   scalar_t* dx, logit_t* dlogits, const Dims& d,
                                   const at::TensorOptions& acc_options, double lo, double hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const ChannelsLastGrid grid = channels_last_grid(d, VEC);
  at::Tensor partial = at::empty({d.batch, grid.chunks, d.channels}, acc_options);
  acc_t* pp = partial.mutable_data_ptr<acc_t>();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  nfa_gate_backward_channels_last_kernel<scalar_t, logit_t, VEC>
      <<<d.batch * grid.tiles * grid.chunks, dim3(grid.tx, grid.ty), 0, stream>>>(
          dy, x, logits, dx, pp, d.channels, d.spatial, grid.tiles, grid.chunks, grid.chunk_len,
          static_cast<acc_t>(lo), static_cast<acc_t>(hi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t rows = d.batch * d.channels;
  nfa_gate_backward_finish_kernel<acc_t, logit_t><<<blocks_for(rows), kThreads, 0, stream>>>(
      pp, logits, dlogits, rows, d.channels, grid.chunks, static_cast<acc_t>(lo),
      static_cast<acc_t>(hi));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, typename logit_t>
void backward(const at::Tensor& dy, const at::Tensor& x, const logit_t* logits, at::Tensor& dx,
              logit_t* dlogits, const Dims& d, Layout layout, double lo, double hi) {
  constexpr int kVec = vec_size<scalar_t>();
  const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
  const bool aligned = aligned16(dyp) && aligned16(xp) && aligned16(dxp);
  if (layout == Layout::kContiguous) {
    if (aligned && d.spatial % kVec == 0) {
      launch_backward_rows<scalar_t, logit_t, kVec>(dyp, xp, logits, dxp, dlogits, d, lo, hi);
    } else {
      launch_backward_rows<scalar_t, logit_t, 1>(dyp, xp, logits, dxp, dlogits, d, lo, hi);
    }
    return;
  }
  const auto acc_options = x.options().dtype(at::toOpMathType(x.scalar_type()));
  if (aligned && d.channels % kVec == 0) {
    launch_backward_channels_last<scalar_t, logit_t, kVec>(dyp, xp, logits, dxp, dlogits, d,
                                                           acc_options, lo, hi);
  } else {
    launch_backward_channels_last<scalar_t, logit_t, 1>(dyp, xp, logits, dxp, dlogits, d,
                                                        acc_options, lo, hi);
  }
}

// Logits as the kernels read them: contiguous, and in x's dtype or else x's accumulation type
// (a [B, C] copy), so that the kernels are instantiated for logit_t = scalar_t and acc_t only.
at::Tensor logits_for_kernel(const at::Tensor& logits, const at::Tensor& x) {
  if (logits.scalar_type() == x.scalar_type()) return logits.contiguous();
  return logits.to(at::toOpMathType(x.scalar_type())).contiguous();
}

void check_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), "x should be a CUDA tensor, got ", x.device());
}

}  // namespace

at::Tensor nfa_gate_cuda(const at::Tensor& x_in, const at::Tensor& logits, double lo, double hi) {
  nfa_gate_detail::check_forward_args(x_in, logits, lo, hi);
  check_cuda(x_in);
  const at::cuda::CUDAGuard guard(x_in.device());
  // Not a structured binding: the dispatch lambda captures x and layout, which C++17 forbids
  // for structured bindings (torch < 2.10 builds extensions as C++17).
  at::Tensor x;
  Layout layout;
  std::tie(x, layout) = choose_layout(x_in);
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  const Dims d = dims_of(x);
  const at::Tensor lg = logits_for_kernel(logits, x);
  const bool same = lg.scalar_type() == x.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "nfa_gate_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (same) {
      forward<scalar_t, scalar_t>(x, lg.const_data_ptr<scalar_t>(), y, d, layout, lo, hi);
    } else {
      forward<scalar_t, acc_t>(x, lg.const_data_ptr<acc_t>(), y, d, layout, lo, hi);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> nfa_gate_backward_cuda(const at::Tensor& grad_y,
                                                          const at::Tensor& x_in,
                                                          const at::Tensor& logits, double lo,
                                                          double hi) {
  nfa_gate_detail::check_backward_args(grad_y, x_in, logits, lo, hi);
  check_cuda(x_in);
  const at::cuda::CUDAGuard guard(x_in.device());
  // Not a structured binding: the dispatch lambda captures x and layout, which C++17 forbids
  // for structured bindings (torch < 2.10 builds extensions as C++17).
  at::Tensor x;
  Layout layout;
  std::tie(x, layout) = choose_layout(x_in);
  const at::Tensor dy = to_layout(grad_y, layout);
  at::Tensor dx = at::empty_like(x);
  if (x.numel() == 0) return {dx, at::zeros_like(logits, at::MemoryFormat::Contiguous)};
  const Dims d = dims_of(x);
  const at::Tensor lg = logits_for_kernel(logits, x);
  const bool same = lg.scalar_type() == x.scalar_type();
  at::Tensor dlogits = at::empty({d.batch, d.channels}, lg.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "nfa_gate_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        if (same) {
          backward<scalar_t, scalar_t>(dy, x, lg.const_data_ptr<scalar_t>(), dx,
                                       dlogits.mutable_data_ptr<scalar_t>(), d, layout, lo, hi);
        } else {
          backward<scalar_t, acc_t>(dy, x, lg.const_data_ptr<acc_t>(), dx,
                                    dlogits.mutable_data_ptr<acc_t>(), d, layout, lo, hi);
        }
      });
  return {dx, dlogits.to(logits.scalar_type())};
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("nfa_gate", &nfa_gate_cuda);
  m.impl("nfa_gate_backward", &nfa_gate_backward_cuda);
}

}  // namespace hdml
