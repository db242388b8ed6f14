// The block-wide selection primitives of the CUDA kNN kernels (knn/knn_cuda.cu,
// knn_ivf/knn_ivf_cuda.cu): (value, index) pairs in shared memory ordered by value then index,
// bitonic sorting and merging, and the merge of a buffer of new candidates into a row's sorted
// list of the best ones.
#pragma once

#include <cstdint>
#include <limits>

namespace hdml {
namespace knn_cuda_detail {

constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

template <typename T>
__device__ __forceinline__ T positive_infinity() {
  return std::numeric_limits<T>::infinity();
}

// Order of (value, index) pairs: by value, then by index.
template <typename T>
__device__ __forceinline__ bool pair_less(T va, int64_t ia, T vb, int64_t ib) {
  return va < vb || (va == vb && ia < ib);
}

// Puts pairs lo and hi in ascending order.
template <typename T>
__device__ __forceinline__ void order_pair(T* val, int64_t* idx, int lo, int hi) {
  const T vl = val[lo];
  const T vh = val[hi];
  const int64_t il = idx[lo];
  const int64_t ih = idx[hi];
  if (pair_less(vh, ih, vl, il)) {
    val[lo] = vh;
    val[hi] = vl;
    idx[lo] = ih;
    idx[hi] = il;
  }
}

// Sorts n (a power of two) shared pairs ascending with the whole block. Ends synchronised.
template <typename T>
__device__ void bitonic_sort(T* val, int64_t* idx, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1));
        const int hi = lo + stride;
        if ((lo & size) == 0) {
          order_pair(val, idx, lo, hi);
        } else {
          order_pair(val, idx, hi, lo);
        }
      }
      __syncthreads();
    }
  }
}

// Sorts n (a power of two) shared pairs forming a bitonic sequence ascending. Ends synchronised.
template <typename T>
__device__ void bitonic_merge(T* val, int64_t* idx, int n) {
  for (int stride = n >> 1; stride > 0; stride >>= 1) {
    for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
      const int lo = 2 * t - (t & (stride - 1));
      order_pair(val, idx, lo, lo + stride);
    }
    __syncthreads();
  }
}

// Merges the `count` candidates of the shared buffer (s_buf_val, s_buf_idx) into the sorted
// shared list (s_list_val, s_list_idx) of the cap best so far (cap a power of two; the buffer
// holds at least max(cap, count) rounded up to a power of two entries). The buffer is sorted,
// padded with (+inf, kNoIndex) to a power of two no smaller than cap; then min(list[i],
// buf[cap - 1 - i]) are the cap best of both in a bitonic order, which one bitonic merge sorts.
// Every thread of the block must call it; it starts and ends synchronised.
template <typename T>
__device__ void merge_buffer(T* s_list_val, int64_t* s_list_idx, T* s_buf_val, int64_t* s_buf_idx, int count,
                             int cap) {
  int sort_size = cap;
  while (sort_size < count) sort_size <<= 1;
  for (int i = count + threadIdx.x; i < sort_size; i += blockDim.x) {
    s_buf_val[i] = positive_infinity<T>();
    s_buf_idx[i] = kNoIndex;
  }
  __syncthreads();
  bitonic_sort(s_buf_val, s_buf_idx, sort_size);
  for (int i = threadIdx.x; i < cap; i += blockDim.x) {
    const int b = cap - 1 - i;
    if (pair_less(s_buf_val[b], s_buf_idx[b], s_list_val[i], s_list_idx[i])) {
      s_list_val[i] = s_buf_val[b];
      s_list_idx[i] = s_buf_idx[b];
    }
  }
  __syncthreads();
  bitonic_merge(s_list_val, s_list_idx, cap);
}

// The end of one round of a row's selection, after each thread appended its candidates that
// beat (thr_val, thr_idx) to the shared buffer (*s_count of them): when the buffer holds more
// than `room` (it could overflow in the next round), or `last` and it holds any, they are merged
// into the list and the threshold becomes the list's entry cand - 1. count is read by every
// thread between two barriers, so the whole block takes the branch or none does. Every thread
// of the block must call it.
template <typename T>
__device__ void end_round(int* s_count, T* s_list_val, int64_t* s_list_idx, T* s_buf_val, int64_t* s_buf_idx,
                          int cap, int cand, int room, bool last, T& thr_val, int64_t& thr_idx) {
  __syncthreads();  // the round's candidates are in the buffer
  const int count = *s_count;
  __syncthreads();  // every thread has read count before it changes again
  if (count > room || (last && count > 0)) {
    merge_buffer(s_list_val, s_list_idx, s_buf_val, s_buf_idx, count, cap);
    thr_val = s_list_val[cand - 1];
    thr_idx = s_list_idx[cand - 1];
    if (threadIdx.x == 0) *s_count = 0;
    __syncthreads();
  }
}

}  // namespace knn_cuda_detail
}  // namespace hdml
