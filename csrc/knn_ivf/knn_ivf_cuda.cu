// kNN over inverted lists on CUDA. Two kernels compute the same result:
// - the tiled join (knn_ivf_cuda_tiles.cuh), the default: cuBLAS GEMMs of the rows that probe
//   a list against that list's rows, a running selection per row between tiles, an exact
//   refinement certified by the expansion's rounding bound;
// - the row kernel below: one thread block per row, which streams the rows of the lists it
//   probes past a block-wide running selection of its best (squared distance, index) pairs. It
//   searches the rows whose certificate the tiled join cannot give (ties with the k-th,
//   near-duplicates), and every row when the environment says so (below).
//
// Row kernel. Each round covers kRowThreads candidates of a list. Screening: each warp computes
// the squared distances of 32 of them in the compute type, a candidate at a time, the lanes
// reading its coordinates side by side (coalesced) and summing by shuffles; lane c keeps
// candidate c's. A candidate whose screened distance, less its rounding bound, exceeds the
// selection's current k-th pair cannot enter the selection and is dropped. Refinement: the
// others get their squared distance by direct differences in double, summed in the CPU kernel's
// order (exact_squared_distance), and those that beat the k-th pair are appended to a shared
// buffer, which is merged into the sorted list of the best cap >= k pairs (cap a power of two)
// when it could overflow and after the last list (knn/knn_cuda_select.cuh). Pairs compare by
// (distance, index), so ties go to the smaller index whatever order threads run in. The row
// skips itself; a row whose lists hold fewer than k other rows ends in (inf, -1).
//
// The index arguments are checked on the device (ranges, the permutation, distinct probes per
// row) before the search, with one synchronisation each.
//
// Two environment variables, read at each call, serve tests and benchmarks only:
//   HDML_KNN_IVF_CUDA=rows        every row by the row kernel ("tiles", the default: the join);
//   HDML_KNN_IVF_CUDA_TILE=<n>    the tiled join's buffers bounded by n elements instead of 2^26
//                                 (knn_ivf_cuda_tiles.cuh, tile_bounds), so that small inputs
//                                 take many tiles, row batches and chunks of one list.

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "../knn/knn.h"
#include "../knn/knn_cuda_select.cuh"
#include "knn_ivf.h"
#include "knn_ivf_cuda_tiles.cuh"

namespace hdml {
namespace {

using namespace knn_detail;
using namespace knn_cuda_detail;
using namespace knn_ivf_cuda_detail;

constexpr int kRowThreads = 128;
constexpr int kWarp = 32;
// Shared candidate buffer: room for one more round before a merge, and for a whole list of
// kKnnCudaMaxCandidates (the merge sorts at least cap entries of it).
constexpr int kIvfBuffer = 1024;
static_assert(kIvfBuffer >= kKnnCudaMaxCandidates, "the buffer must hold a whole candidate list");
static_assert(kIvfBuffer >= 2 * kRowThreads, "the buffer must hold two rounds");

// Screened squared distances of x[row] to the candidates list_ids[begin + 32 w + c], c < 32, of
// warp w; lane c returns candidate c's (0 past `end`). Every lane of the warp must call it.
template <typename T>
__device__ __forceinline__ T screen_warp_candidates(const T* __restrict__ x, int64_t d, const T* __restrict__ q,
                                                    const int64_t* __restrict__ list_ids, int64_t begin,
                                                    int64_t end, int lane) {
  const int64_t remaining = end - begin;
  const int count = remaining <= 0 ? 0 : (remaining < kWarp ? static_cast<int>(remaining) : kWarp);
  T mine = T(0);
  for (int c = 0; c < count; ++c) {
    const T* xj = x + list_ids[begin + c] * d;
    T partial = T(0);
    for (int64_t l = lane; l < d; l += kWarp) {
      const T diff = q[l] - xj[l];
      partial += diff * diff;
    }
    for (int offset = kWarp / 2; offset > 0; offset >>= 1) partial += __shfl_xor_sync(0xffffffffu, partial, offset);
    if (lane == c) mine = partial;
  }
  return mine;
}

// One block per row rows[blockIdx.x]. screen_factor: 1 less the relative rounding bound of a
// screened distance (0: no screening).
template <typename T, typename out_t>
__global__ void __launch_bounds__(kRowThreads)
    knn_ivf_row_kernel(const T* __restrict__ x, int64_t d, const int64_t* __restrict__ rows,
                       const int64_t* __restrict__ list_ptr,
                       const int64_t* __restrict__ list_ids, const int64_t* __restrict__ probe, int64_t num_probes,
                       int64_t k, int cap, double screen_factor, double inv_scale, out_t* __restrict__ dist,
                       int64_t* __restrict__ idx) {
  extern __shared__ unsigned char smem[];
  double* s_list_val = reinterpret_cast<double*>(smem);
  double* s_buf_val = s_list_val + cap;
  int64_t* s_list_idx = reinterpret_cast<int64_t*>(s_buf_val + kIvfBuffer);
  int64_t* s_buf_idx = s_list_idx + cap;
  __shared__ int s_count;

  const int tid = threadIdx.x;
  const int lane = tid % kWarp;
  const int64_t warp_offset = tid - lane;
  const int64_t row = rows[blockIdx.x];
  const T* q = x + row * d;
  for (int i = tid; i < cap; i += kRowThreads) {
    s_list_val[i] = positive_infinity<double>();
    s_list_idx[i] = kNoIndex;
  }
  if (tid == 0) s_count = 0;
  __syncthreads();
  double thr_val = positive_infinity<double>();
  int64_t thr_idx = kNoIndex;

  for (int64_t p = 0; p < num_probes; ++p) {
    const int64_t b = probe[row * num_probes + p];
    const int64_t begin = list_ptr[b];
    const int64_t end = list_ptr[b + 1];
    const bool last_list = p + 1 == num_probes;
    // Every thread runs the same rounds (the bound is uniform), so the barriers match.
    for (int64_t base = begin; base < end || (last_list && base == begin); base += kRowThreads) {
      const T screened = screen_warp_candidates(x, d, q, list_ids, base + warp_offset, end, lane);
      const int64_t pos = base + tid;
      if (pos < end) {
        const int64_t j = list_ids[pos];
        if (j != row && static_cast<double>(screened) * screen_factor <= thr_val) {
          const double acc = exact_squared_distance(q, x + j * d, d);
          if (pair_less(acc, j, thr_val, thr_idx)) {
            const int slot = atomicAdd(&s_count, 1);
            s_buf_val[slot] = acc;
            s_buf_idx[slot] = j;
          }
        }
      }
      end_round(&s_count, s_list_val, s_list_idx, s_buf_val, s_buf_idx, cap, static_cast<int>(k),
                kIvfBuffer - kRowThreads, last_list && base + kRowThreads >= end, thr_val, thr_idx);
    }
  }
  for (int64_t c = tid; c < k; c += kRowThreads) {
    const bool found = s_list_idx[c] != kNoIndex;
    const double value = found ? sqrt(s_list_val[c]) * inv_scale : positive_infinity<double>();
    if constexpr (std::is_same_v<out_t, double>) {
      dist[row * k + c] = value;
    } else {
      dist[row * k + c] = static_cast<out_t>(static_cast<float>(value));
    }
    idx[row * k + c] = found ? s_list_idx[c] : -1;
  }
}

// 1 less a bound on the relative error of screen_warp_candidates' sum of d squared differences
// in a type of unit roundoff u: each term carries at most 3 roundings, each lane's serial sum
// ceil(d / 32) and the shuffle tree 5 more; (d + 16) u bounds them with room to spare. Data
// scaled into [0.5, 1) keep the terms far from overflow; underflow only lowers a screened
// distance, which keeps more candidates, never fewer.
double screening_factor(int64_t d, double unit_roundoff) {
  return std::max(0.0, 1.0 - 2.0 * static_cast<double>(d + 16) * unit_roundoff);
}

// The value checks of knn_ivf.h on the device: list_ptr, list_ids and probe.
void check_lists_cuda(const at::Tensor& list_ptr, const at::Tensor& list_ids, const at::Tensor& probe, int64_t n) {
  const int64_t num_lists = list_ptr.size(0) - 1;
  const int64_t first = list_ptr[0].item<int64_t>();
  TORCH_CHECK(first == 0, "knn_ivf: list_ptr should start at 0, got list_ptr[0] = ", first);
  TORCH_CHECK(!(list_ptr.diff() < 0).any().item<bool>(), "knn_ivf: list_ptr should be non-decreasing");
  const int64_t last = list_ptr[num_lists].item<int64_t>();
  TORCH_CHECK(last == n, "knn_ivf: list_ptr should end at N = ", n, " (every row in a list), got ", last);
  TORCH_CHECK(at::equal(std::get<0>(list_ids.sort()), at::arange(n, list_ids.options())),
              "knn_ivf: list_ids should be a permutation of 0 .. N - 1 = ", n - 1);
  TORCH_CHECK(!(probe < 0).logical_or(probe >= num_lists).any().item<bool>(),
              "knn_ivf: probe values should be list numbers in [0, ", num_lists, ")");
  if (probe.size(1) > 1) {
    const at::Tensor sorted = std::get<0>(probe.sort(1));
    const at::Tensor repeats = sorted.narrow(1, 1, probe.size(1) - 1) == sorted.narrow(1, 0, probe.size(1) - 1);
    TORCH_CHECK(!repeats.any().item<bool>(), "knn_ivf: probe rows should list distinct lists");
  }
}

// Which kernel serves every row: false for the tiled join (the default), true for the row
// kernel (HDML_KNN_IVF_CUDA=rows; file comment).
bool rows_kernel_requested() {
  const char* value = std::getenv("HDML_KNN_IVF_CUDA");
  if (value == nullptr || *value == '\0') return false;
  const std::string kernel(value);
  TORCH_CHECK(kernel == "tiles" || kernel == "rows",
              "knn_ivf: the environment variable HDML_KNN_IVF_CUDA should be \"tiles\" or \"rows\", got \"", kernel,
              "\"");
  return kernel == "rows";
}

// The tiled join's buffer size in elements: kIvfTileElements, or HDML_KNN_IVF_CUDA_TILE.
int64_t tile_elements_requested() {
  const char* value = std::getenv("HDML_KNN_IVF_CUDA_TILE");
  if (value == nullptr || *value == '\0') return kIvfTileElements;
  char* end = nullptr;
  const long long elements = std::strtoll(value, &end, 10);
  TORCH_CHECK(*end == '\0' && elements >= 1,
              "knn_ivf: the environment variable HDML_KNN_IVF_CUDA_TILE should be a positive number of elements, "
              "got \"", value, "\"");
  return static_cast<int64_t>(elements);
}

// The row kernel on the rows `rows` ([R] int64 on the device, R >= 1) of xs (compute type T,
// scaled by 1 / inv_scale), writing their rows of dist and idx.
template <typename T, typename out_t>
void search_rows(const at::Tensor& xs, const at::Tensor& rows, const at::Tensor& ptr, const at::Tensor& ids,
                 const at::Tensor& probes, int64_t k, double inv_scale, at::Tensor& dist, at::Tensor& idx) {
  int cap = 1;
  while (cap < k) cap <<= 1;
  const size_t smem = static_cast<size_t>(cap + kIvfBuffer) * (sizeof(double) + sizeof(int64_t));
  const double factor = screening_factor(xs.size(1), std::numeric_limits<T>::epsilon() / 2);
  auto kernel = knn_ivf_row_kernel<T, out_t>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<static_cast<unsigned int>(rows.size(0)), kRowThreads, smem, at::cuda::getCurrentCUDAStream()>>>(
      xs.data_ptr<T>(), xs.size(1), rows.data_ptr<int64_t>(), ptr.data_ptr<int64_t>(), ids.data_ptr<int64_t>(),
      probes.data_ptr<int64_t>(), probes.size(1), k, cap, factor, inv_scale, dist.data_ptr<out_t>(),
      idx.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> knn_ivf_cuda(const at::Tensor& x, const at::Tensor& list_ptr,
                                                const at::Tensor& list_ids, const at::Tensor& probe, int64_t k) {
  knn_ivf_check_args(x, list_ptr, list_ids, probe, k);
  TORCH_CHECK(x.is_cuda(), "knn_ivf: x should be a CUDA tensor for the CUDA kernel, got ", x.device());
  TORCH_CHECK(k <= kKnnCudaMaxCandidates, "knn_ivf: k should be <= ", kKnnCudaMaxCandidates,
              " on CUDA (the selection's shared list), got ", k);
  const bool rows_only = rows_kernel_requested();
  const int64_t tile_elements = tile_elements_requested();
  const c10::cuda::CUDAGuard guard(x.device());
  const at::NoGradGuard no_grad;
  const double max_abs = checked_max_abs(x, "x");
  const int64_t n = x.size(0);
  const int64_t d = x.size(1);
  const at::Tensor ptr = list_ptr.contiguous();
  const at::Tensor ids = list_ids.contiguous();
  const at::Tensor probes = probe.contiguous();
  check_lists_cuda(ptr, ids, probes, n);

  at::Tensor dist = at::empty({n, k}, x.options());
  at::Tensor idx = at::empty({n, k}, x.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "knn_ivf_cuda", [&] {
    // float16 and bfloat16 are read as float32; the distances come back in x's dtype.
    using compute_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const at::ScalarType compute = c10::CppTypeToScalarType<compute_t>::value;
    // The scale (knn.h) keeps squares finite in the compute type; it is the CPU kernel's, so
    // both refine the same values.
    const double scale = power_of_two_scale(max_abs, std::is_same_v<compute_t, double>);
    const at::Tensor xs = prepare(x, compute, scale);
    at::Tensor rows = ids;
    if (!rows_only) {
      const at::Tensor failed = ivf_tiles_join<compute_t, scalar_t>(xs, ptr, ids, probes, k, 1.0 / scale,
                                                                    tile_bounds(tile_elements, d), dist, idx);
      rows = failed.nonzero().squeeze(1);
    }
    if (rows.numel() > 0) search_rows<compute_t, scalar_t>(xs, rows, ptr, ids, probes, k, 1.0 / scale, dist, idx);
  });
  return {dist, idx};
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("knn_ivf", &knn_ivf_cuda);
}

}  // namespace hdml
