// The running top-c selection of the CPU kNN kernel (knn_cpu.cpp): one buffer of candidates
// per query row, compacted to the best c when full, with a threshold that rejects later scores.
//
// Candidates are held as order-preserving integer keys of their scores (with their indices), so
// the compaction can find the c-th best by a branch-free bisection that the compiler vectorises;
// its AVX2 build is chosen at run time by cpu_isa() (utils.h). Every row sees the points in
// increasing index order, so a score equal to the threshold loses its tie and the strict `<`
// of the scans (knn_cpu_scan.h) is exact.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "../utils.h"

#if defined(__GNUC__) || defined(__clang__)
#define HDML_KNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define HDML_KNN_PREFETCH(address) __builtin_prefetch(address)
#else
#define HDML_KNN_ALWAYS_INLINE inline
#define HDML_KNN_PREFETCH(address) static_cast<void>(address)
#endif

namespace hdml {
namespace knn_cpu_detail {

// Scores as integers of the same order: the float's bits, with the magnitude bits of negative
// values flipped (one-to-one, order-preserving for every non-NaN value but -0, which no score
// takes: a difference that is exactly 0 rounds to +0).
template <typename T>
using score_key_t = std::conditional_t<std::is_same_v<T, float>, int32_t, int64_t>;

template <typename T>
inline score_key_t<T> score_key(T score) {
  score_key_t<T> bits;
  std::memcpy(&bits, &score, sizeof(T));
  return bits >= 0 ? bits : bits ^ std::numeric_limits<score_key_t<T>>::max();
}

template <typename T>
inline T key_score(score_key_t<T> key) {
  const score_key_t<T> bits = key >= 0 ? key : key ^ std::numeric_limits<score_key_t<T>>::max();
  T score;
  std::memcpy(&score, &bits, sizeof(T));
  return score;
}

// Keeps the `keep` best of keys[0, count) (and their ids), in their order, and returns the worst
// key kept, t: every key dropped is >= t, and of the keys equal to t the earliest (smallest
// indices) are kept, so later keys >= t can be rejected. t, the keep-th smallest key, is found by
// bisection on the key range, each step one branch-free (vectorised) count; a stable pass then
// moves the kept entries down. count < 2^31.
template <typename K>
HDML_KNN_ALWAYS_INLINE K compact_keys_impl(K* keys, int64_t* ids, int64_t count, int64_t keep) {
  // The ids are only read by the final pass: request them now, the bisection hides the latency.
  for (int64_t i = 0; i < count; i += 64 / static_cast<int64_t>(sizeof(int64_t))) HDML_KNN_PREFETCH(ids + i);
  K lo = keys[0];
  K hi = keys[0];
  for (int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, keys[i]);
    hi = std::max(hi, keys[i]);
  }
  const int32_t n = static_cast<int32_t>(count);
  const int32_t want = static_cast<int32_t>(keep);
  using U = std::make_unsigned_t<K>;
  while (lo < hi) {
    // Unsigned arithmetic: hi - lo may exceed the signed range.
    const K mid = static_cast<K>(static_cast<U>(lo) + (static_cast<U>(hi) - static_cast<U>(lo)) / 2);
    int32_t at_most = 0;
    for (int32_t i = 0; i < n; ++i) at_most += static_cast<int32_t>(keys[i] <= mid);
    if (at_most >= want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const K t = lo;
  int32_t below = 0;
  for (int32_t i = 0; i < n; ++i) below += static_cast<int32_t>(keys[i] < t);
  int32_t ties_left = want - below;
  int64_t out = 0;
  for (int32_t i = 0; i < n; ++i) {
    // Branch-free: whether an entry is kept is close to a coin toss.
    const K key = keys[i];
    const int32_t tie = static_cast<int32_t>(key == t) & static_cast<int32_t>(ties_left > 0);
    ties_left -= tie;
    keys[out] = key;
    ids[out] = ids[i];
    out += static_cast<int64_t>(static_cast<int32_t>(key < t) | tie);
  }
  return t;
}

#ifdef HDML_X86_DISPATCH
__attribute__((target("avx2"))) inline int32_t compact_keys_avx2(int32_t* keys, int64_t* ids, int64_t count,
                                                                 int64_t keep) {
  return compact_keys_impl(keys, ids, count, keep);
}
#endif

template <typename K>
K compact_keys(K* keys, int64_t* ids, int64_t count, int64_t keep) {
#ifdef HDML_X86_DISPATCH
  if constexpr (std::is_same_v<K, int32_t>) {
    if (cpu_isa() >= CpuIsa::kAvx2) return compact_keys_avx2(keys, ids, count, keep);
  }
#endif
  return compact_keys_impl(keys, ids, count, keep);
}

// One row's running selection: (keys, ids)[0, count) are candidates in increasing index order,
// all with an index below every point still to come. Once the buffer has been compacted,
// `threshold` is the keep-th best score (+inf before): later points are accepted only below it.
// A view into a SelectionStore's arrays.
template <typename T>
struct RowSelection {
  using K = score_key_t<T>;
  K* keys;
  int64_t* ids;
  int64_t count;
  int64_t keep;
  int64_t capacity;
  T threshold;

  // Keeps the `keep` best candidates, in their order; the threshold becomes the worst of them.
  void compact() {
    threshold = key_score<T>(compact_keys(keys, ids, count, keep));
    count = keep;
  }

  // Appends a candidate whose score beat the threshold (checked by the caller).
  inline void push(T score, int64_t index) {
    keys[count] = score_key(score);
    ids[count] = index;
    if (++count == capacity) compact();
  }
};

// Candidate buffer per row: the kept candidates plus at least this much room before each
// compaction.
constexpr int64_t kMinSlack = 64;

// Candidate buffer capacity for `keep` kept candidates (both CPU kNN kernels).
inline int64_t buffer_capacity(int64_t keep) {
  return keep + std::max(keep, kMinSlack);
}

// Per-row selection state for a range of rows: keys and ids [rows, capacity], counts, thresholds.
// The candidate arrays are left uninitialised: only entries below a row's count are ever read.
template <typename T>
struct SelectionStore {
  int64_t keep;
  int64_t capacity;
  std::unique_ptr<score_key_t<T>[]> keys;
  std::unique_ptr<int64_t[]> ids;
  std::vector<int64_t> counts;
  std::vector<T> thresholds;

  SelectionStore(int64_t rows, int64_t keep_, int64_t capacity_)
      : keep(keep_),
        capacity(capacity_),
        keys(new score_key_t<T>[static_cast<size_t>(rows * capacity_)]),
        ids(new int64_t[static_cast<size_t>(rows * capacity_)]),
        counts(static_cast<size_t>(rows)),
        thresholds(static_cast<size_t>(rows)) {
    reset();
  }

  void reset() {
    std::fill(counts.begin(), counts.end(), 0);
    std::fill(thresholds.begin(), thresholds.end(), std::numeric_limits<T>::infinity());
  }

  RowSelection<T> load(int64_t r) {
    return {keys.get() + r * capacity, ids.get() + r * capacity, counts[r], keep, capacity, thresholds[r]};
  }

  void store(int64_t r, const RowSelection<T>& sel) {
    counts[r] = sel.count;
    thresholds[r] = sel.threshold;
  }

  // Appends a candidate that beat row r's threshold to row r's selection.
  void push(int64_t r, T score, int64_t index) {
    RowSelection<T> sel = load(r);
    sel.push(score, index);
    store(r, sel);
  }
};

}  // namespace knn_cpu_detail
}  // namespace hdml
