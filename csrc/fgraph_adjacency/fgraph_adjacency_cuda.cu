// CUDA kernel of fgraph_adjacency: one block per focus node (grid-stride over the foci). The
// block builds an open-addressing hash of the focus's node list in shared memory, then its
// threads walk the members' neighbour lists together (coalesced reads of knn_idx rows) and
// mark the hits in a shared-memory copy of the focus's [n, n] block, which is then written
// out with coalesced stores. Blocks too large for shared memory are marked in place in global
// memory instead.
//
// Invalid ids: every id the kernel reads is range-checked where it is read. The first bad one
// is recorded in a small device buffer (kind, value, row, column) and the host raises the
// error after the kernel. Cost: one 32-byte device-to-host copy per call, which synchronises
// the stream. A validation pass before the launch would need that same synchronisation to
// raise, and would read all of knn_idx where the kernel reads only the members' rows.

#include "fgraph_adjacency.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace hdml {
namespace {

constexpr int kThreads = 128;
constexpr unsigned long long kEmptyKey = ~0ull;
// Kinds of bad ids recorded in the error buffer.
constexpr unsigned long long kBadFocus = 1;
constexpr unsigned long long kBadKnn = 2;

__device__ __forceinline__ int hash_home(int64_t id, int table_bits) {
  // Fibonacci hashing: the top bits of id * 2^64 / golden ratio.
  return static_cast<int>((static_cast<unsigned long long>(id) * 0x9E3779B97F4A7C15ull) >> (64 - table_bits));
}

// Records the first bad id seen by any thread: error = [kind, value, row, column].
__device__ __forceinline__ void record_bad_id(unsigned long long* error, unsigned long long kind, int64_t value,
                                              int64_t row, int64_t col) {
  if (atomicCAS(error, 0ull, kind) == 0ull) {
    error[1] = static_cast<unsigned long long>(value);
    error[2] = static_cast<unsigned long long>(row);
    error[3] = static_cast<unsigned long long>(col);
  }
}

// Shared memory, in this order: keys [T] (node ids, kEmptyKey when free), nodes [n],
// heads [T] (a position holding the slot's id, -1 when free), next [n] (the next position
// with the same id, -1 at the end), then, when kStaged, the marks [n * n] of this focus.
template <bool kSymmetric, bool kStaged>
__global__ void __launch_bounds__(kThreads)
    fgraph_adjacency_kernel(const int64_t* __restrict__ knn, int64_t row_stride, int64_t col_stride,
                            int64_t num_nodes, int k, const int64_t* __restrict__ focus, int64_t focus_stride,
                            int64_t num_graphs, int table_bits, bool* __restrict__ adj,
                            unsigned long long* __restrict__ error) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int n = k + 1;
  const int table_size = 1 << table_bits;
  unsigned long long* keys = reinterpret_cast<unsigned long long*>(smem);
  int64_t* nodes = reinterpret_cast<int64_t*>(keys + table_size);
  int* heads = reinterpret_cast<int*>(nodes + n);
  int* next = heads + table_size;
  unsigned char* stage = reinterpret_cast<unsigned char*>(next + n);
  __shared__ int bad_member;

  const int tid = static_cast<int>(threadIdx.x);
  const int block_cells = n * n;
  for (int64_t b = blockIdx.x; b < num_graphs; b += gridDim.x) {
    const int64_t f = focus == nullptr ? b : focus[b * focus_stride];
    // After a bad id the whole block stops (the host raises): the exits below are taken by
    // every thread of the block alike, so no barrier is left waiting.
    if (f < 0 || f >= num_nodes) {
      if (tid == 0) record_bad_id(error, kBadFocus, f, b, 0);
      return;
    }
    unsigned char* out = kStaged ? stage : reinterpret_cast<unsigned char*>(adj) + b * block_cells;

    if (tid == 0) bad_member = 0;
    for (int s = tid; s < table_size; s += kThreads) {
      keys[s] = kEmptyKey;
      heads[s] = -1;
    }
    if (kStaged) {
      unsigned int* words = reinterpret_cast<unsigned int*>(stage);
      for (int w = tid; w < (block_cells + 3) / 4; w += kThreads) words[w] = 0u;
    } else {
      for (int i = tid; i < block_cells; i += kThreads) out[i] = 0;
    }
    __syncthreads();

    // The node list and its hash; a repeated id chains all its positions from one slot.
    for (int pos = tid; pos < n; pos += kThreads) {
      const int64_t id = pos == 0 ? f : knn[f * row_stride + (pos - 1) * col_stride];
      if (id < 0 || id >= num_nodes) {
        record_bad_id(error, kBadKnn, id, f, pos - 1);
        bad_member = 1;
        continue;
      }
      nodes[pos] = id;
      const unsigned long long key = static_cast<unsigned long long>(id);
      int slot = hash_home(id, table_bits);
      while (true) {
        const unsigned long long seen = atomicCAS(&keys[slot], kEmptyKey, key);
        if (seen == kEmptyKey || seen == key) break;
        slot = (slot + 1) & (table_size - 1);
      }
      next[pos] = atomicExch(&heads[slot], pos);
    }
    __syncthreads();
    if (bad_member) return;

    // One pass over the members' neighbour lists, n * k reads, row after row.
    const int num_reads = n * k;
    for (int i = tid; i < num_reads; i += kThreads) {
      const int a = i / k;
      const int j = i - a * k;
      const int64_t id = knn[nodes[a] * row_stride + j * col_stride];
      if (id < 0 || id >= num_nodes) {
        record_bad_id(error, kBadKnn, id, nodes[a], j);
        continue;
      }
      const unsigned long long key = static_cast<unsigned long long>(id);
      int slot = hash_home(id, table_bits);
      while (true) {
        const unsigned long long seen = keys[slot];
        if (seen == key) {
          for (int c = heads[slot]; c >= 0; c = next[c]) {
            if (c == a) continue;
            out[a * n + c] = 1;
            if (kSymmetric) out[c * n + a] = 1;
          }
          break;
        }
        if (seen == kEmptyKey) break;
        slot = (slot + 1) & (table_size - 1);
      }
    }
    __syncthreads();

    if (kStaged) {
      unsigned char* dst = reinterpret_cast<unsigned char*>(adj) + b * block_cells;
      for (int i = tid; i < block_cells; i += kThreads) dst[i] = stage[i];
      __syncthreads();  // the next focus reuses the stage
    }
  }
}

// Checks knn_idx and focus; the number of F-Graphs B.
int64_t check_cuda_args(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus) {
  const int64_t num_graphs = fgraph_adjacency_check_args(knn_idx, focus);
  TORCH_CHECK(knn_idx.is_cuda(), "fgraph_adjacency (CUDA kernel): knn_idx should be on a CUDA device, got ",
              knn_idx.device());
  return num_graphs;
}

// Writes every element of adj (contiguous bool [B, k+1, k+1], checked by the caller).
void fill_adjacency(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                    at::Tensor& adj) {
  const at::cuda::CUDAGuard device_guard(knn_idx.device());
  const int64_t num_graphs = adj.size(0);
  const int64_t num_nodes = knn_idx.size(0);
  const int64_t k = knn_idx.size(1);
  const int64_t n = k + 1;
  if (num_graphs == 0) return;

  int table_bits = 1;
  while ((int64_t{1} << table_bits) < 2 * n) ++table_bits;
  const int64_t table_size = int64_t{1} << table_bits;
  const int64_t hash_bytes = table_size * (8 + 4) + n * (8 + 4);
  const int64_t staged_bytes = hash_bytes + (n * n + 3) / 4 * 4;
  // Device attributes through the runtime API: ATen/cuda/CUDAContext.h would pull in the
  // cuSPARSE and cuBLAS headers, which a minimal CUDA toolkit lacks.
  const c10::DeviceIndex device = knn_idx.device().index();
  int max_shared_optin = 0;
  int num_sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&max_shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t max_shared = max_shared_optin;
  TORCH_CHECK(hash_bytes <= max_shared, "fgraph_adjacency (CUDA kernel): knn_idx has k = ", k,
              " columns, too many for the node hash to fit in shared memory (it needs ", hash_bytes,
              " bytes, the GPU has ", max_shared, " per block); use the CPU kernel for such k");
  const bool staged = staged_bytes <= max_shared;
  const int64_t shared_bytes = staged ? staged_bytes : hash_bytes;

  const int64_t* focus_ptr = focus.has_value() ? focus->const_data_ptr<int64_t>() : nullptr;
  const int64_t focus_stride = focus.has_value() ? focus->stride(0) : 0;
  at::Tensor error = at::zeros({4}, knn_idx.options());
  const int64_t grid = std::min<int64_t>(num_graphs, static_cast<int64_t>(num_sms) * 32);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);

  const auto launch = [&](auto kernel) {
    if (shared_bytes > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(shared_bytes)));
    }
    kernel<<<static_cast<unsigned int>(grid), kThreads, static_cast<size_t>(shared_bytes), stream>>>(
        knn_idx.const_data_ptr<int64_t>(), knn_idx.stride(0), knn_idx.stride(1), num_nodes, static_cast<int>(k),
        focus_ptr, focus_stride, num_graphs, table_bits, adj.mutable_data_ptr<bool>(),
        reinterpret_cast<unsigned long long*>(error.mutable_data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (symmetric) {
    staged ? launch(fgraph_adjacency_kernel<true, true>) : launch(fgraph_adjacency_kernel<true, false>);
  } else {
    staged ? launch(fgraph_adjacency_kernel<false, true>) : launch(fgraph_adjacency_kernel<false, false>);
  }

  const at::Tensor found = error.cpu();  // synchronises: raise here, not later and elsewhere
  const int64_t* e = found.const_data_ptr<int64_t>();
  TORCH_CHECK(e[0] != static_cast<int64_t>(kBadFocus), "fgraph_adjacency: focus should hold node ids in [0, ",
              num_nodes, "), got ", e[1], " at focus[", e[2], "]");
  TORCH_CHECK(e[0] != static_cast<int64_t>(kBadKnn), "fgraph_adjacency: knn_idx should hold node ids in [0, ",
              num_nodes, "), got ", e[1], " at knn_idx[", e[2], ", ", e[3], "]");
}

}  // namespace

at::Tensor fgraph_adjacency_cuda(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus,
                                 bool symmetric) {
  const int64_t num_graphs = check_cuda_args(knn_idx, focus);
  const int64_t n = knn_idx.size(1) + 1;
  at::Tensor adj = at::empty({num_graphs, n, n}, knn_idx.options().dtype(at::kBool));
  fill_adjacency(knn_idx, focus, symmetric, adj);
  return adj;
}

void fgraph_adjacency_out_cuda(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                               at::Tensor& out) {
  const int64_t num_graphs = check_cuda_args(knn_idx, focus);
  fgraph_adjacency_check_out(out, knn_idx, num_graphs);
  fill_adjacency(knn_idx, focus, symmetric, out);
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("fgraph_adjacency", &fgraph_adjacency_cuda);
  m.impl("fgraph_adjacency.out", &fgraph_adjacency_out_cuda);
}

}  // namespace hdml
