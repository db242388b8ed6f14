// CPU kernel of fgraph_adjacency: at::parallel_for over the focus nodes. Per focus, an O(1)
// lookup from node id to position in its node list (an array indexed by id for N < 2^18, a
// small open-addressing hash above), then one pass over its members' neighbour lists that
// marks the hits, then each output row written once. The common case (k <= 61, N < 2^18,
// dense rows) has an AVX-512 variant, chosen at run time by cpu_isa() (utils.h; honours
// ATEN_CPU_CAPABILITY: avx2 or default turns it off).

#include "fgraph_adjacency.h"

#include "../utils.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef HDML_X86_DISPATCH
#include <immintrin.h>
#endif

namespace hdml {
namespace {

// Per focus, membership tests map a node id to the first position holding it in the F-Graph's
// node list, or to the sink position n when it is not there. Both lookups below select
// without branching on hit or miss: about half the neighbour-of-neighbour lookups hit, which
// no branch predictor can learn.

// Direct addressing: pos_of[id] for every id in [0, N), and pos_of[N] = n + 1, the position
// that ids outside [0, N) are clamped to, so that they flag themselves. One load per lookup;
// used while the array stays L2-sized (N < kDirectMaxNodes).
constexpr int64_t kDirectMaxNodes = int64_t{1} << 18;

struct DirectLookup {
  static constexpr bool kFlagsBadIds = true;

  const int32_t* pos_of;
  uint64_t num_nodes;

  int64_t find(int64_t id) const { return pos_of[std::min(static_cast<uint64_t>(id), num_nodes)]; }
};

// Open addressing with linear probing in a power-of-two table at most 1/8 full, without
// wrap-around (the arrays are padded by n + kMaxUnrolledWindow slots), so every key lies within
// `window` slots of its home, where `window` - 1 is the largest displacement among this focus's
// keys. A lookup compares kWindow >= window slots (window slots when kWindow is 0) and keeps
// the value of the one that matches. Empty slots hold key -1 and value sink; an id outside
// [0, N) is no key and finds the sink, so the caller checks ranges itself.
constexpr int64_t kMaxUnrolledWindow = 4;

template <int kWindow>
struct HashLookup {
  static constexpr bool kFlagsBadIds = false;

  const int64_t* keys;
  const int32_t* vals;
  int64_t window;
  int32_t sink;
  int shift;

  int64_t find(int64_t id) const {
    const int64_t slot = home(id, shift);
    const int64_t count = kWindow > 0 ? kWindow : window;
    int32_t pos = sink;
    for (int64_t s = 0; s < count; ++s) pos = keys[slot + s] == id ? vals[slot + s] : pos;
    return pos;
  }

  // Fibonacci hashing: the top bits of id * 2^64 / golden ratio.
  static int64_t home(int64_t id, int shift) {
    return static_cast<int64_t>((static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull) >> shift);
  }
};

// Per-thread scratch for one focus at a time, allocated once per parallel chunk: the node
// list, the lookup of the node ids (direct or hashed), the first position of each position's
// id, and the hit marks.
//
// Hits are recorded in an (n+2) x (n+2) byte matrix indexed by first positions (rows and
// columns n and n+1 are the sinks for misses and for out-of-range ids): marks[x][y] = 1 when
// the node at first position y is in the list of the node at first position x (with
// symmetric, marks[y][x] too). An id that is repeated in the node list has one row and one
// column there; the output expands them.
class FocusScratch {
 public:
  // with_marks: allocate the byte marks (the AVX-512 path keeps its hits in bit rows instead).
  FocusScratch(int64_t n, int64_t num_nodes, bool with_marks)
      : n_(n),
        num_nodes_(num_nodes),
        nodes_(n),
        first_(n),
        slots_(n),
        marks_(with_marks ? (n + 2) * (n + 2) : 0, 0) {
    const auto sink = static_cast<int32_t>(n);
    if (direct()) {
      pos_of_.assign(num_nodes + 1, sink);
      pos_of_[num_nodes] = static_cast<int32_t>(n + 1);
      return;
    }
    int bits = 3;
    while ((int64_t{1} << bits) < 8 * n) ++bits;
    shift_ = 64 - bits;
    const int64_t table_size = (int64_t{1} << bits) + n + kMaxUnrolledWindow;
    keys_.assign(table_size, -1);
    vals_.assign(table_size, sink);
  }

  bool direct() const { return num_nodes_ < kDirectMaxNodes; }

  // Fills the node list [f, row(0), ..., row(k-1)] (ids in [0, N)) and the lookup; returns
  // whether some id is repeated in it.
  template <typename Row>
  bool load(int64_t f, int64_t k, const Row& focus_row) {
    bool repeated = false;
    window_ = 1;
    const auto sink = static_cast<int32_t>(n_);
    for (int64_t pos = 0; pos <= k; ++pos) {
      const int64_t id = pos == 0 ? f : focus_row(pos - 1);
      nodes_[pos] = id;
      int32_t* holder = nullptr;
      if (direct()) {
        holder = &pos_of_[id];
      } else {
        int64_t slot = HashLookup<0>::home(id, shift_);
        const int64_t home = slot;
        while (keys_[slot] != -1 && keys_[slot] != id) ++slot;
        keys_[slot] = id;
        slots_[pos] = slot;
        window_ = std::max(window_, slot - home + 1);
        holder = &vals_[slot];
      }
      if (*holder == sink) {
        *holder = static_cast<int32_t>(pos);
        first_[pos] = pos;
      } else {
        first_[pos] = *holder;
        repeated = true;
      }
    }
    return repeated;
  }

  // Empties the lookup (only the entries this focus set) and the marks.
  void reset() {
    const auto sink = static_cast<int32_t>(n_);
    for (int64_t pos = 0; pos < n_; ++pos) {
      if (direct()) {
        pos_of_[nodes_[pos]] = sink;
      } else {
        keys_[slots_[pos]] = -1;
        vals_[slots_[pos]] = sink;
      }
    }
    if (!marks_.empty()) std::memset(marks_.data(), 0, marks_.size());
  }

  DirectLookup direct_lookup() const { return DirectLookup{pos_of_.data(), static_cast<uint64_t>(num_nodes_)}; }

  template <int kWindow>
  HashLookup<kWindow> hash_lookup() const {
    return HashLookup<kWindow>{keys_.data(), vals_.data(), window_, static_cast<int32_t>(n_), shift_};
  }

  int64_t window() const { return window_; }
  const int64_t* nodes() const { return nodes_.data(); }
  const int64_t* first() const { return first_.data(); }
  uint8_t* marks() { return marks_.data(); }

 private:
  int64_t n_;
  int64_t num_nodes_;
  std::vector<int64_t> nodes_;
  std::vector<int64_t> first_;
  std::vector<int64_t> slots_;
  std::vector<uint8_t> marks_;
  std::vector<int32_t> pos_of_;
  std::vector<int64_t> keys_;
  std::vector<int32_t> vals_;
  int64_t window_ = 1;
  int shift_ = 0;
};

// The members' rows are scattered over knn_idx, which is larger than L2 for realistic N:
// loading them a few rows ahead hides most of the cache misses, which otherwise dominate.
constexpr int64_t kPrefetchRows = 3;

template <bool kUnitStride>
inline void prefetch_row(const int64_t* row, int64_t col_stride, int64_t k) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr int64_t kIdsPerLine = 64 / sizeof(int64_t);
  if (kUnitStride) {
    for (int64_t j = 0; j < k; j += kIdsPerLine) __builtin_prefetch(row + j);
    if (k > 0) __builtin_prefetch(row + k - 1);
  } else {
    for (int64_t j = 0; j < k; ++j) __builtin_prefetch(row + j * col_stride);
  }
#else
  (void)row;
  (void)col_stride;
  (void)k;
#endif
}

// Raises the error for the first id outside [0, num_nodes) in knn_idx row `node`. Out of line,
// taking values: the hot loops then keep their variables in registers.
[[noreturn]] C10_NOINLINE void report_bad_row(const int64_t* row, int64_t col_stride, int64_t node, int64_t k,
                                              int64_t num_nodes) {
  for (int64_t j = 0; j < k; ++j) {
    const int64_t id = row[j * col_stride];
    TORCH_CHECK(id >= 0 && id < num_nodes, "fgraph_adjacency: knn_idx should hold node ids in [0, ", num_nodes,
                "), got ", id, " at knn_idx[", node, ", ", j, "]");
  }
  TORCH_INTERNAL_ASSERT(false, "fgraph_adjacency: report_bad_row found no bad id");
}

[[noreturn]] C10_NOINLINE void report_bad_focus(int64_t f, int64_t b, int64_t num_nodes) {
  TORCH_CHECK(false, "fgraph_adjacency: focus should hold node ids in [0, ", num_nodes, "), got ", f,
              " at focus[", b, "]");
}

// Marks the hits of every distinct member's neighbour list (see FocusScratch). Raw pointers
// in locals: the byte stores to `marks` may alias anything, which would otherwise make the
// compiler reload every member through `scratch` after each store.
template <bool kSymmetric, bool kUnitStride, typename Lookup>
void mark_neighbours(const Lookup lookup, const int64_t* nodes, const int64_t* first, uint8_t* marks,
                     const int64_t* knn, int64_t row_stride, int64_t col_stride, int64_t num_nodes, int64_t k) {
  const int64_t n = k + 1;
  const int64_t width = n + 2;
  const uint64_t range = static_cast<uint64_t>(num_nodes);
  for (int64_t a = 0; a < kPrefetchRows && a < n; ++a) {
    prefetch_row<kUnitStride>(knn + nodes[a] * row_stride, col_stride, k);
  }
  for (int64_t a = 0; a < n; ++a) {
    if (a + kPrefetchRows < n) {
      prefetch_row<kUnitStride>(knn + nodes[a + kPrefetchRows] * row_stride, col_stride, k);
    }
    if (first[a] != a) continue;  // a repeated id: its row is the first one's
    const int64_t node = nodes[a];
    const int64_t* row = knn + node * row_stride;
    uint8_t* marks_row = marks + a * width;
    uint8_t* marks_col = marks + a;
    // Out-of-range ids land in a sink, so the row is range-checked once, after it is marked:
    // no branch per id in the inner loop.
    uint64_t largest = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t id = row[kUnitStride ? j : j * col_stride];
      if constexpr (!Lookup::kFlagsBadIds) largest = std::max(largest, static_cast<uint64_t>(id));
      const int64_t c = lookup.find(id);
      marks_row[c] = 1;
      if (kSymmetric) marks_col[c * width] = 1;
    }
    const bool bad_row = Lookup::kFlagsBadIds ? marks_row[n + 1] != 0 : k > 0 && largest >= range;
    if (C10_UNLIKELY(bad_row)) report_bad_row(row, col_stride, node, k, num_nodes);
  }
}

// Fills adj [B, n, n] for the focus nodes [begin, end). kUnitStride: knn_idx's rows are dense.
template <bool kSymmetric, bool kUnitStride>
void fgraph_adjacency_range(const int64_t* knn, int64_t row_stride, int64_t col_stride,
                            int64_t num_nodes, int64_t k, const int64_t* focus, int64_t focus_stride,
                            bool* adj, int64_t begin, int64_t end) {
  const int64_t n = k + 1;
  const int64_t width = n + 2;
  const uint64_t range = static_cast<uint64_t>(num_nodes);
  FocusScratch scratch(n, num_nodes, /*with_marks=*/true);
  const int64_t* nodes = scratch.nodes();
  const int64_t* first = scratch.first();
  uint8_t* marks = scratch.marks();
  const auto mark = [&](const auto lookup) {
    mark_neighbours<kSymmetric, kUnitStride>(lookup, nodes, first, marks, knn, row_stride, col_stride, num_nodes,
                                             k);
  };
  for (int64_t b = begin; b < end; ++b) {
    const int64_t f = focus == nullptr ? b : focus[b * focus_stride];
    if (C10_UNLIKELY(static_cast<uint64_t>(f) >= range)) report_bad_focus(f, b, num_nodes);
    const int64_t* focus_row = knn + f * row_stride;
    const bool repeated = scratch.load(f, k, [&](int64_t j) {
      const int64_t id = focus_row[kUnitStride ? j : j * col_stride];
      if (C10_UNLIKELY(static_cast<uint64_t>(id) >= range)) report_bad_row(focus_row, col_stride, f, k, num_nodes);
      return id;
    });

    if (scratch.direct()) {
      mark(scratch.direct_lookup());
    } else if (scratch.window() == 1) {
      mark(scratch.hash_lookup<1>());
    } else if (scratch.window() == 2) {
      mark(scratch.hash_lookup<2>());
    } else if (scratch.window() <= kMaxUnrolledWindow) {
      mark(scratch.hash_lookup<kMaxUnrolledWindow>());
    } else {
      mark(scratch.hash_lookup<0>());
    }

    // Each output row is written once, completely: marks expanded to positions, diagonal off.
    bool* block = adj + b * n * n;
    for (int64_t a = 0; a < n; ++a) {
      bool* out_row = block + a * n;
      if (repeated) {
        const uint8_t* src = marks + first[a] * width;
        for (int64_t c = 0; c < n; ++c) out_row[c] = src[first[c]] != 0;
      } else {
        std::memcpy(out_row, marks + a * width, static_cast<size_t>(n));
      }
      out_row[a] = false;
    }
    scratch.reset();
  }
}

#ifdef HDML_X86_DISPATCH

// The AVX-512 path: for n <= kMaxBitRowNodes a row of hits fits one uint64 (bit c: position c
// is in the row's list), so 8 ids are looked up at once with a gather from pos_of (direct
// addressing), turned into bits with a variable shift and OR-ed together. Misses set the sink
// bit n, ids outside [0, N) the bit n + 1 (pos_of[N], see DirectLookup), both off the n
// columns. The symmetric closure is a 64 x 64 bit transpose, and each output row is written by
// one masked byte store.
constexpr int64_t kMaxBitRowNodes = 62;

// In-place transpose of a 64 x 64 bit matrix (bit c of rows[r] is entry (r, c)): six rounds
// of block swaps (Hacker's Delight, section 7-3).
inline void transpose_bits(uint64_t* rows) {
  uint64_t mask = 0x00000000FFFFFFFFull;
  for (int width = 32; width != 0; width >>= 1, mask ^= mask << width) {
    for (int r = 0; r < 64; r = ((r | width) + 1) & ~width) {
      const uint64_t swap = ((rows[r] >> width) ^ rows[r | width]) & mask;
      rows[r] ^= swap << width;
      rows[r | width] ^= swap;
    }
  }
}

// GCC 12 warns, wrongly, that the intrinsics' own undefined-value placeholders may be used
// uninitialised (GCC bug 105593, fixed in GCC 13).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <bool kSymmetric>
__attribute__((target("avx512f,avx512bw"))) void fgraph_adjacency_range_avx512(
    const int64_t* knn, int64_t row_stride, int64_t num_nodes, int64_t k, const int64_t* focus,
    int64_t focus_stride, bool* adj, int64_t begin, int64_t end) {
  const int64_t n = k + 1;
  const uint64_t range = static_cast<uint64_t>(num_nodes);
  FocusScratch scratch(n, num_nodes, /*with_marks=*/false);
  const int32_t* pos_of = scratch.direct_lookup().pos_of;
  const int64_t* nodes = scratch.nodes();
  const int64_t* first = scratch.first();
  const __m512i clamp = _mm512_set1_epi64(num_nodes);
  const __m512i one = _mm512_set1_epi64(1);
  const __m256i sink = _mm256_set1_epi32(static_cast<int32_t>(n));
  const __mmask8 tail = static_cast<__mmask8>((1u << (k % 8)) - 1);
  const uint64_t columns = (uint64_t{1} << n) - 1;
  const uint64_t bad_bit = uint64_t{1} << (n + 1);
  uint64_t bits[64];
  uint64_t rows[64];
  uint64_t transposed[64];
  for (int64_t b = begin; b < end; ++b) {
    const int64_t f = focus == nullptr ? b : focus[b * focus_stride];
    if (C10_UNLIKELY(static_cast<uint64_t>(f) >= range)) report_bad_focus(f, b, num_nodes);
    const int64_t* focus_row = knn + f * row_stride;
    const bool repeated = scratch.load(f, k, [&](int64_t j) {
      const int64_t id = focus_row[j];
      if (C10_UNLIKELY(static_cast<uint64_t>(id) >= range)) report_bad_row(focus_row, 1, f, k, num_nodes);
      return id;
    });

    for (int64_t a = 0; a < kPrefetchRows && a < n; ++a) prefetch_row<true>(knn + nodes[a] * row_stride, 1, k);
    for (int64_t a = 0; a < n; ++a) {
      if (a + kPrefetchRows < n) prefetch_row<true>(knn + nodes[a + kPrefetchRows] * row_stride, 1, k);
      if (first[a] != a) continue;  // a repeated id: its row is the first one's
      const int64_t* row = knn + nodes[a] * row_stride;
      __m512i hits = _mm512_setzero_si512();
      int64_t j = 0;
      for (; j + 8 <= k; j += 8) {
        const __m512i ids = _mm512_min_epu64(_mm512_loadu_si512(row + j), clamp);
        const __m256i pos = _mm512_i64gather_epi32(ids, pos_of, 4);
        hits = _mm512_or_si512(hits, _mm512_sllv_epi64(one, _mm512_cvtepu32_epi64(pos)));
      }
      if (j < k) {
        const __m512i ids = _mm512_min_epu64(_mm512_maskz_loadu_epi64(tail, row + j), clamp);
        const __m256i pos = _mm512_mask_i64gather_epi32(sink, tail, ids, pos_of, 4);
        hits = _mm512_or_si512(hits, _mm512_sllv_epi64(one, _mm512_cvtepu32_epi64(pos)));
      }
      bits[a] = static_cast<uint64_t>(_mm512_reduce_or_epi64(hits));
      if (C10_UNLIKELY(bits[a] & bad_bit)) report_bad_row(row, 1, nodes[a], k, num_nodes);
    }

    // Hits from first positions to positions, the transpose OR-ed in, diagonal and sinks off.
    for (int64_t a = 0; a < n; ++a) {
      if (!repeated) {
        rows[a] = bits[a];
        continue;
      }
      const uint64_t src = bits[first[a]];
      uint64_t expanded = 0;
      for (int64_t c = 0; c < n; ++c) expanded |= ((src >> first[c]) & 1) << c;
      rows[a] = expanded;
    }
    if (kSymmetric) {
      std::memcpy(transposed, rows, sizeof(uint64_t) * n);
      std::memset(transposed + n, 0, sizeof(uint64_t) * (64 - n));
      transpose_bits(transposed);
    }
    bool* block = adj + b * n * n;
    for (int64_t a = 0; a < n; ++a) {
      const uint64_t row_bits = (kSymmetric ? rows[a] | transposed[a] : rows[a]) & columns & ~(uint64_t{1} << a);
      _mm512_mask_storeu_epi8(block + a * n, columns, _mm512_maskz_set1_epi8(row_bits, 1));
    }
    scratch.reset();
  }
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // HDML_X86_DISPATCH

// Checks knn_idx and focus; the number of F-Graphs B.
int64_t check_cpu_args(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus) {
  const int64_t num_graphs = fgraph_adjacency_check_args(knn_idx, focus);
  TORCH_CHECK(knn_idx.device().is_cpu(), "fgraph_adjacency (CPU kernel): knn_idx should be on the CPU, got ",
              knn_idx.device());
  TORCH_CHECK(knn_idx.size(1) < std::numeric_limits<int32_t>::max(),
              "fgraph_adjacency: knn_idx should have fewer than 2^31 - 1 columns, got ", knn_idx.size(1));
  return num_graphs;
}

// Writes every element of adj (contiguous bool [B, k+1, k+1], checked by the caller).
void fill_adjacency(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                    at::Tensor& adj) {
  const int64_t num_graphs = adj.size(0);
  const int64_t num_nodes = knn_idx.size(0);
  const int64_t k = knn_idx.size(1);
  const int64_t n = k + 1;
  if (num_graphs == 0) return;

  const int64_t* knn = knn_idx.const_data_ptr<int64_t>();
  const int64_t row_stride = knn_idx.stride(0);
  const int64_t col_stride = knn_idx.stride(1);
  const int64_t* focus_ptr = focus.has_value() ? focus->const_data_ptr<int64_t>() : nullptr;
  const int64_t focus_stride = focus.has_value() ? focus->stride(0) : 0;
  bool* out = adj.mutable_data_ptr<bool>();
  // About at::internal::GRAIN_SIZE neighbour reads per task.
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, n * k));

  const auto run = [&](auto symmetric_tag, auto unit_stride_tag) {
    constexpr bool kSymmetric = decltype(symmetric_tag)::value;
    constexpr bool kUnitStride = decltype(unit_stride_tag)::value;
    at::parallel_for(0, num_graphs, grain, [&](int64_t begin, int64_t end) {
      fgraph_adjacency_range<kSymmetric, kUnitStride>(knn, row_stride, col_stride, num_nodes, k, focus_ptr,
                                                      focus_stride, out, begin, end);
    });
  };
  const bool unit_stride = col_stride == 1 || k <= 1;
#ifdef HDML_X86_DISPATCH
  if (unit_stride && n <= kMaxBitRowNodes && num_nodes < kDirectMaxNodes && cpu_isa() == CpuIsa::kAvx512) {
    at::parallel_for(0, num_graphs, grain, [&](int64_t begin, int64_t end) {
      if (symmetric) {
        fgraph_adjacency_range_avx512<true>(knn, row_stride, num_nodes, k, focus_ptr, focus_stride, out, begin, end);
      } else {
        fgraph_adjacency_range_avx512<false>(knn, row_stride, num_nodes, k, focus_ptr, focus_stride, out, begin,
                                             end);
      }
    });
    return;
  }
#endif
  if (symmetric) {
    unit_stride ? run(std::true_type{}, std::true_type{}) : run(std::true_type{}, std::false_type{});
  } else {
    unit_stride ? run(std::false_type{}, std::true_type{}) : run(std::false_type{}, std::false_type{});
  }
}

}  // namespace

at::Tensor fgraph_adjacency_cpu(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus,
                                bool symmetric) {
  const int64_t num_graphs = check_cpu_args(knn_idx, focus);
  const int64_t n = knn_idx.size(1) + 1;
  at::Tensor adj = at::empty({num_graphs, n, n}, knn_idx.options().dtype(at::kBool));
  fill_adjacency(knn_idx, focus, symmetric, adj);
  return adj;
}

void fgraph_adjacency_out_cpu(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                              at::Tensor& out) {
  const int64_t num_graphs = check_cpu_args(knn_idx, focus);
  fgraph_adjacency_check_out(out, knn_idx, num_graphs);
  fill_adjacency(knn_idx, focus, symmetric, out);
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("fgraph_adjacency", &fgraph_adjacency_cpu);
  m.impl("fgraph_adjacency.out", &fgraph_adjacency_out_cpu);
}

}  // namespace hdml
