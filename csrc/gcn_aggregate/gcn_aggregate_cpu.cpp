// CPU kernels of gcn_aggregate (out = D^-1/2 A D^-1/2 z) and its transpose (the backward).
//
// Work is split into items (graph b, block of output rows); at::parallel_for shares the items
// out. An item computes its graph's degrees, then describes the sources of each output row
// (the non-zero entries of A's row in the forward, of A's column in the backward): a bit mask
// per row for a bool adjacency, a list of (source, A * d_source) for a weighted one. Then it
// walks the features in tiles of eight SIMD registers: each output row sums its sources' tile
// rows in registers and is scaled by its own d_i. For a bool adjacency the tile of every source
// row is first staged, pre-scaled by d_j, in a small buffer that stays in L1, so the sums are
// plain adds (measured 5% faster than scaling inside the loop at F = 256, 20% at F = 1536);
// weighted float32/float64 features are read in place. Zero entries of A cost nothing, and the
// normalised matrix never exists.
//
// The build has no -march flags, so the tile loop is compiled three times, for AVX-512, for
// AVX2 + FMA and for the baseline, and the variant is chosen at run time by cpu_isa()
// (utils.h), which follows ATen's CPU capability (and so honours ATEN_CPU_CAPABILITY).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/llvmMathExtras.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "gcn_aggregate.h"

// C++17 (torch < 2.10 builds extensions so): no <bit>, so std::endian is spelled with the
// compilers' byte-order macros and countr_zero is c10's countTrailingZeros.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
constexpr bool kLittleEndian = false;
#endif

#if defined(__GNUC__)
#define HDML_GCN_INLINE inline __attribute__((always_inline))
#else
#define HDML_GCN_INLINE inline
#endif

namespace hdml {
namespace {

// Bytes of one feature tile row: 8 registers of the widest variant (AVX-512, 64 bytes).
constexpr int64_t kMaxTileBytes = 8 * 64;
// Bound on the source-list entries (rows x n) of one item, which bounds its scratch memory.
constexpr int64_t kMaxListEntries = int64_t{1} << 20;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// One SIMD register of `Bytes` bytes of T. With GCC and Clang a vector-extension type, so that
// the accumulators of a tile live in xmm/ymm/zmm registers in each compiled variant; elsewhere an
// array the compiler may vectorise. No Vec is passed or returned by value (that would change the
// ABI between variants).
template <typename T, int Bytes>
struct Vec {
  static constexpr int64_t kLanes = Bytes / static_cast<int>(sizeof(T));
#if defined(__GNUC__)
  typedef T Raw __attribute__((vector_size(Bytes)));
  Raw v;
  HDML_GCN_INLINE void set_zero() {
    v = Raw{};
  }
  // v += p[0:kLanes]
  HDML_GCN_INLINE void add(const T* p) {
    Raw x;
    std::memcpy(&x, p, sizeof(Raw));
    v += x;
  }
  // v += c * p[0:kLanes]
  HDML_GCN_INLINE void fma(T c, const T* p) {
    Raw x;
    std::memcpy(&x, p, sizeof(Raw));
    v += c * x;
  }
  // p[0:kLanes] = c * v
  HDML_GCN_INLINE void store_scaled(T c, T* p) const {
    const Raw y = c * v;
    std::memcpy(p, &y, sizeof(Raw));
  }
#else
  T v[kLanes];
  HDML_GCN_INLINE void set_zero() {
    for (int64_t l = 0; l < kLanes; ++l) v[l] = T(0);
  }
  HDML_GCN_INLINE void add(const T* p) {
    for (int64_t l = 0; l < kLanes; ++l) v[l] += p[l];
  }
  HDML_GCN_INLINE void fma(T c, const T* p) {
    for (int64_t l = 0; l < kLanes; ++l) v[l] += c * p[l];
  }
  HDML_GCN_INLINE void store_scaled(T c, T* p) const {
    for (int64_t l = 0; l < kLanes; ++l) p[l] = c * v[l];
  }
#endif
};

// What one item computes: output rows [r0, r1) of one graph.
template <typename scalar_t, typename acc_t>
struct Item {
  const scalar_t* src;  // the graph's source features [n, F], strides (src_row, src_col)
  int64_t src_row;
  int64_t src_col;
  int64_t n;
  int64_t F;
  const acc_t* d;  // [n] inverse square-root degrees of the graph (0 for degree <= 0)
  int64_t r0;      // first output row
  int64_t r1;      // one past the last output row
  // Bool adjacency: bit j of masks[(r - r0) * words + j / 64] set iff source j feeds row r.
  const uint64_t* masks;
  int64_t words;
  // Weighted adjacency: row r's sources idx[(r - r0) * n + k] with coefficients A * d_source
  // val[(r - r0) * n + k], for k < count[r - r0].
  const int64_t* idx;
  const acc_t* val;
  const int64_t* count;
  scalar_t* dst;  // the graph's output [n, F], contiguous
  acc_t* stage;   // [n, kMaxTileBytes / sizeof(acc_t)] staging buffer, 64-byte aligned
};

// Columns [f0, f0 + cols) of the item's output rows, cols <= U * lanes.
// kMasks: bool adjacency; the staged source rows are pre-scaled by d_j and simply added.
// kStage: copy the tile of every source row, converted to acc_t and zero-padded, into the
// L1-sized staging buffer first (always with kMasks; otherwise for float16/bfloat16, strided
// features and a last partial tile). Without it the sums read acc_t source rows in place.
template <int VBytes, int U, bool kMasks, bool kStage, typename scalar_t, typename acc_t>
HDML_GCN_INLINE void aggregate_tile(const Item<scalar_t, acc_t>& it, int64_t f0, int64_t cols) {
  static_assert(kStage || !kMasks, "the bool path adds pre-scaled staged rows");
  using V = Vec<acc_t, VBytes>;
  constexpr int64_t L = V::kLanes;
  constexpr int64_t W = U * L;
  constexpr bool kSame = std::is_same_v<scalar_t, acc_t>;
  const acc_t* base = nullptr;
  int64_t stride = W;
  if constexpr (kStage) {
    for (int64_t s = 0; s < it.n; ++s) {
      const acc_t scale = kMasks ? it.d[s] : acc_t(1);
      const scalar_t* p = it.src + s * it.src_row + f0 * it.src_col;
      acc_t* q = it.stage + s * W;
      if (it.src_col == 1) {
        for (int64_t c = 0; c < cols; ++c) q[c] = scale * static_cast<acc_t>(p[c]);
      } else {
        for (int64_t c = 0; c < cols; ++c) q[c] = scale * static_cast<acc_t>(p[c * it.src_col]);
      }
      for (int64_t c = cols; c < W; ++c) q[c] = acc_t(0);
    }
    base = it.stage;
  } else {
    static_assert(kSame, "only acc_t features are read in place");
    base = it.src + f0;
    stride = it.src_row;
  }
  for (int64_t r = it.r0; r < it.r1; ++r) {
    scalar_t* out = it.dst + r * it.F + f0;
    const acc_t dr = it.d[r];
    if (dr == acc_t(0)) {
      std::fill(out, out + cols, scalar_t(0));
      continue;
    }
    V acc[U];
    for (int u = 0; u < U; ++u) acc[u].set_zero();
    if constexpr (kMasks) {
      const uint64_t* mask = it.masks + (r - it.r0) * it.words;
      for (int64_t w = 0; w < it.words; ++w) {
        for (uint64_t bits = mask[w]; bits != 0; bits &= bits - 1) {
          const acc_t* row = base + (w * 64 + c10::llvm::countTrailingZeros(bits)) * stride;
          for (int u = 0; u < U; ++u) acc[u].add(row + u * L);
        }
      }
    } else {
      const int64_t* idx = it.idx + (r - it.r0) * it.n;
      const acc_t* val = it.val + (r - it.r0) * it.n;
      const int64_t cnt = it.count[r - it.r0];
      for (int64_t k = 0; k < cnt; ++k) {
        const acc_t w = val[k];
        const acc_t* row = base + idx[k] * stride;
        for (int u = 0; u < U; ++u) acc[u].fma(w, row + u * L);
      }
    }
    if constexpr (kSame) {
      if (cols == W) {
        for (int u = 0; u < U; ++u) acc[u].store_scaled(dr, out + u * L);
        continue;
      }
    }
    alignas(64) acc_t tmp[W];
    for (int u = 0; u < U; ++u) acc[u].store_scaled(dr, tmp + u * L);
    for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<scalar_t>(tmp[c]);
  }
}

// All feature tiles of one item: full tiles of 8 registers, then one narrower tile for the rest.
template <int VBytes, bool kMasks, typename scalar_t, typename acc_t>
HDML_GCN_INLINE void aggregate_tiles(const Item<scalar_t, acc_t>& it) {
  constexpr int64_t L = Vec<acc_t, VBytes>::kLanes;
  int64_t f0 = 0;
  if constexpr (std::is_same_v<scalar_t, acc_t> && !kMasks) {
    if (it.src_col == 1) {
      for (; it.F - f0 >= 8 * L; f0 += 8 * L) aggregate_tile<VBytes, 8, kMasks, false>(it, f0, 8 * L);
    }
  }
  for (; it.F - f0 >= 8 * L; f0 += 8 * L) aggregate_tile<VBytes, 8, kMasks, true>(it, f0, 8 * L);
  const int64_t rest = it.F - f0;
  if (rest > 4 * L) {
    aggregate_tile<VBytes, 8, kMasks, true>(it, f0, rest);
  } else if (rest > 2 * L) {
    aggregate_tile<VBytes, 4, kMasks, true>(it, f0, rest);
  } else if (rest > L) {
    aggregate_tile<VBytes, 2, kMasks, true>(it, f0, rest);
  } else if (rest > 0) {
    aggregate_tile<VBytes, 1, kMasks, true>(it, f0, rest);
  }
}

template <int VBytes, typename scalar_t, typename acc_t>
HDML_GCN_INLINE void aggregate_item(const Item<scalar_t, acc_t>& it) {
  if (it.masks != nullptr) {
    aggregate_tiles<VBytes, true>(it);
  } else {
    aggregate_tiles<VBytes, false>(it);
  }
}

#ifdef HDML_X86_DISPATCH
// F16C comes with every AVX2 CPU (x86-64-v3), so the variants may use it for float16 loads.
template <typename scalar_t, typename acc_t>
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2"))) void aggregate_item_avx512(
    const Item<scalar_t, acc_t>& it) {
  aggregate_item<64>(it);
}

template <typename scalar_t, typename acc_t>
__attribute__((target("avx2,fma,f16c,bmi,bmi2"))) void aggregate_item_avx2(const Item<scalar_t, acc_t>& it) {
  aggregate_item<32>(it);
}
#endif

template <typename scalar_t, typename acc_t>
void aggregate_item_baseline(const Item<scalar_t, acc_t>& it) {
  aggregate_item<16>(it);
}

template <typename scalar_t, typename acc_t>
void run_item(CpuIsa isa, const Item<scalar_t, acc_t>& it) {
#ifdef HDML_X86_DISPATCH
  if (isa == CpuIsa::kAvx512) return aggregate_item_avx512(it);
  if (isa == CpuIsa::kAvx2) return aggregate_item_avx2(it);
#endif
  (void)isa;
  aggregate_item_baseline(it);
}

template <typename acc_t>
HDML_GCN_INLINE acc_t inv_sqrt_degree(acc_t deg) {
  return deg > acc_t(0) ? acc_t(1) / std::sqrt(deg) : acc_t(0);
}

// A view of one graph's adjacency with its strides.
template <typename adj_t>
struct Adj {
  const adj_t* p;
  int64_t s_row;
  int64_t s_col;
  template <typename acc_t>
  HDML_GCN_INLINE acc_t at(int64_t i, int64_t j) const {
    return static_cast<acc_t>(p[i * s_row + j * s_col]);
  }
  // Whether rows are runs of 0/1 bytes that can be read eight at a time.
  bool packed_bool_rows() const {
    return std::is_same_v<adj_t, bool> && s_col == 1 && kLittleEndian;
  }
};

constexpr uint64_t kLowBits = 0x0101010101010101ull;

// Bit k set iff p[k], for k < len <= 64: eight bools per multiply (their bytes are 0 or 1).
HDML_GCN_INLINE uint64_t bool_mask(const bool* p, int64_t len) {
  constexpr uint64_t kGather = 0x0102040810204080ull;  // moves byte k's low bit to bit 56 + k
  uint64_t mask = 0;
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) {
    uint64_t word;
    std::memcpy(&word, p + k, 8);
    mask |= (((word & kLowBits) * kGather) >> 56) << k;
  }
  if (k < len) {
    uint64_t word = 0;
    std::memcpy(&word, p + k, static_cast<size_t>(len - k));
    mask |= (((word & kLowBits) * kGather) >> 56) << k;
  }
  return mask;
}

// Bit k set iff A[i, j0 + k] is true, for k < len <= 64.
HDML_GCN_INLINE uint64_t row_mask(const Adj<bool>& a, int64_t i, int64_t j0, int64_t len) {
  if (a.packed_bool_rows()) return bool_mask(a.p + i * a.s_row + j0, len);
  uint64_t mask = 0;
  for (int64_t k = 0; k < len; ++k) mask |= static_cast<uint64_t>(a.p[i * a.s_row + (j0 + k) * a.s_col]) << k;
  return mask;
}

// The number of true entries of p[0:len]: eight bools per multiply (which sums the bytes).
HDML_GCN_INLINE int64_t bool_count(const bool* p, int64_t len) {
  int64_t total = 0;
  int64_t k = 0;
  for (; k + 8 <= len; k += 8) {
    uint64_t word;
    std::memcpy(&word, p + k, 8);
    total += static_cast<int64_t>(((word & kLowBits) * kLowBits) >> 56);
  }
  for (; k < len; ++k) total += p[k] ? 1 : 0;
  return total;
}

// d[i] = deg_i^-1/2 (0 where deg_i <= 0) for every node of one graph; deg_i = row sum of A.
template <typename adj_t, typename acc_t>
void inv_sqrt_degrees(const Adj<adj_t>& a, int64_t n, acc_t* d) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<adj_t, bool>) {
      int64_t deg = 0;
      if (a.packed_bool_rows()) {
        deg = bool_count(a.p + i * a.s_row, n);
      } else {
        for (int64_t j = 0; j < n; ++j) deg += a.p[i * a.s_row + j * a.s_col] ? 1 : 0;
      }
      d[i] = inv_sqrt_degree(static_cast<acc_t>(deg));
    } else {
      acc_t deg = 0;
      for (int64_t j = 0; j < n; ++j) deg += a.template at<acc_t>(i, j);
      d[i] = inv_sqrt_degree(deg);
    }
  }
}

// In-place transpose of a 64 x 64 bit matrix, row k = a[k], column c = bit c: afterwards bit r
// of a[c] is the old bit c of a[r]. Six rounds of swapping off-diagonal blocks of half the size.
HDML_GCN_INLINE void transpose64(uint64_t* a) {
  uint64_t m = 0x00000000FFFFFFFFull;
  for (int j = 32; j != 0; j >>= 1, m ^= m << j) {
    for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
      const uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
      a[k | j] ^= t;
      a[k] ^= t << j;
    }
  }
}

// The source masks of output rows [r0, r1) of a bool adjacency: A's rows (forward) or A's
// columns (kTranspose, backward), without the sources of zero degree (they contribute 0).
// `live` is scratch for `words` words (the forward's mask of sources of non-zero degree).
template <bool kTranspose, typename acc_t>
void build_masks(const Adj<bool>& a, int64_t n, int64_t r0, int64_t r1, const acc_t* d, int64_t words,
                 uint64_t* masks, uint64_t* live) {
  if constexpr (!kTranspose) {
    std::fill(live, live + words, uint64_t{0});
    for (int64_t j = 0; j < n; ++j) live[j / 64] |= static_cast<uint64_t>(d[j] != acc_t(0)) << (j % 64);
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t w = 0; w < words; ++w) {
        masks[(r - r0) * words + w] = row_mask(a, r, w * 64, std::min<int64_t>(64, n - w * 64)) & live[w];
      }
    }
  } else {
    // Columns of A as 64 x 64 bit blocks: rows rb * 64 + k of the block, columns cb * 64 + c,
    // transposed so that block[c] holds column cb * 64 + c.
    uint64_t block[64];
    for (int64_t cb = r0 / 64; cb * 64 < r1; ++cb) {
      const int64_t c_len = std::min<int64_t>(64, n - cb * 64);
      for (int64_t rb = 0; rb < words; ++rb) {
        for (int64_t k = 0; k < 64; ++k) {
          const int64_t i = rb * 64 + k;
          block[k] = i < n && d[i] != acc_t(0) ? row_mask(a, i, cb * 64, c_len) : 0;
        }
        transpose64(block);
        for (int64_t j = std::max(r0, cb * 64); j < std::min(r1, cb * 64 + 64); ++j) {
          masks[(j - r0) * words + rb] = block[j - cb * 64];
        }
      }
    }
  }
}

// The source lists of output rows [r0, r1) of a weighted adjacency: the entries of A's rows
// (forward) or of A's columns (kTranspose, backward) whose coefficient A[i, j] * d_source is
// non-zero, in increasing source order. Branch-free: every entry is written, the count
// advances past non-zeros only.
template <bool kTranspose, typename adj_t, typename acc_t>
void build_lists(const Adj<adj_t>& a, int64_t n, int64_t r0, int64_t r1, const acc_t* d, int64_t* idx,
                 acc_t* val, int64_t* count) {
  if constexpr (!kTranspose) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t* ri = idx + (r - r0) * n;
      acc_t* rv = val + (r - r0) * n;
      int64_t c = 0;
      for (int64_t j = 0; j < n; ++j) {
        const acc_t w = a.template at<acc_t>(r, j) * d[j];
        ri[c] = j;
        rv[c] = w;
        c += w != acc_t(0) ? 1 : 0;
      }
      count[r - r0] = c;
    }
  } else {
    std::fill(count, count + (r1 - r0), int64_t{0});
    for (int64_t i = 0; i < n; ++i) {
      const acc_t di = d[i];
      for (int64_t r = r0; r < r1; ++r) {
        const acc_t w = a.template at<acc_t>(i, r) * di;
        const int64_t slot = (r - r0) * n + count[r - r0];
        idx[slot] = i;
        val[slot] = w;
        count[r - r0] += w != acc_t(0) ? 1 : 0;
      }
    }
  }
}

// out[b] = (D^-1/2 A D^-1/2) src[b] (forward) or its transpose times src[b] (kTranspose), for
// every graph b; `out` is contiguous and has src's shape.
template <bool kTranspose, typename scalar_t, typename adj_t>
void aggregate(const at::Tensor& adj, const at::Tensor& src, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kBool = std::is_same_v<adj_t, bool>;
  const int64_t B = src.size(0);
  const int64_t n = src.size(1);
  const int64_t F = src.size(2);
  const adj_t* adj_p = adj.data_ptr<adj_t>();
  const scalar_t* src_p = src.data_ptr<scalar_t>();
  scalar_t* out_p = out.data_ptr<scalar_t>();
  const int64_t a_graph = adj.stride(0);
  const int64_t a_row = adj.stride(1);
  const int64_t a_col = adj.stride(2);
  const int64_t s_graph = src.stride(0);
  const int64_t s_row = src.stride(1);
  const int64_t s_col = src.stride(2);
  const int64_t words = ceil_div(n, 64);

  // Items: whole graphs when there are enough of them to share out; otherwise (few graphs, or
  // graphs so large that their source lists would not fit in kMaxListEntries) blocks of rows.
  const int64_t threads = at::get_num_threads();
  int64_t blocks = B < 4 * threads ? ceil_div(4 * threads, B) : 1;
  blocks = std::min(n, std::max(blocks, ceil_div(n * n, kMaxListEntries)));
  const int64_t rows = ceil_div(n, blocks);
  blocks = ceil_div(n, rows);

  // With row blocks, each graph's degrees are computed once, before the items.
  at::Tensor d_all;
  if (blocks > 1) {
    d_all = at::empty({B, n}, src.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    acc_t* d_p = d_all.data_ptr<acc_t>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        inv_sqrt_degrees(Adj<adj_t>{adj_p + b * a_graph, a_row, a_col}, n, d_p + b * n);
      }
    });
  }
  const acc_t* d_all_p = blocks > 1 ? d_all.data_ptr<acc_t>() : nullptr;

  const CpuIsa isa = cpu_isa();
  constexpr int64_t kStageWidth = kMaxTileBytes / static_cast<int64_t>(sizeof(acc_t));
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    // Scratch for this range of items, reused by each of them.
    std::vector<uint64_t> masks(kBool ? rows * words : 0);
    std::vector<uint64_t> live(kBool ? words : 0);
    std::vector<int64_t> idx(kBool ? 0 : rows * n);
    std::vector<acc_t> val(kBool ? 0 : rows * n);
    std::vector<int64_t> count(kBool ? 0 : rows);
    std::vector<acc_t> d_graph(blocks > 1 ? 0 : n);
    std::vector<acc_t> stage_buf(n * kStageWidth + 64 / sizeof(acc_t));
    void* stage_raw = stage_buf.data();
    size_t space = stage_buf.size() * sizeof(acc_t);
    acc_t* stage = static_cast<acc_t*>(std::align(64, n * kMaxTileBytes, stage_raw, space));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / blocks;
      const int64_t r0 = (item % blocks) * rows;
      const int64_t r1 = std::min(n, r0 + rows);
      const Adj<adj_t> a{adj_p + b * a_graph, a_row, a_col};
      if (d_all_p == nullptr) inv_sqrt_degrees(a, n, d_graph.data());
      const acc_t* d = d_all_p != nullptr ? d_all_p + b * n : d_graph.data();
      Item<scalar_t, acc_t> it{src_p + b * s_graph, s_row, s_col, n, F, d, r0, r1, nullptr, words,
                               nullptr, nullptr, nullptr, out_p + b * n * F, stage};
      if constexpr (kBool) {
        build_masks<kTranspose>(a, n, r0, r1, d, words, masks.data(), live.data());
        it.masks = masks.data();
      } else {
        build_lists<kTranspose>(a, n, r0, r1, d, idx.data(), val.data(), count.data());
        it.idx = idx.data();
        it.val = val.data();
        it.count = count.data();
      }
      run_item(isa, it);
    }
  });
}

template <bool kTranspose>
at::Tensor aggregate_cpu(const at::Tensor& adj, const at::Tensor& src) {
  at::Tensor out = at::empty(src.sizes(), src.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "gcn_aggregate_cpu", [&] {
    using src_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kBool, adj.scalar_type(),
                                    "gcn_aggregate_cpu_adj", [&] { aggregate<kTranspose, src_t, scalar_t>(adj, src, out); });
  });
  return out;
}

}  // namespace

at::Tensor gcn_aggregate_cpu(const at::Tensor& adj, const at::Tensor& z) {
  check_gcn_aggregate_args(adj, z, "z");
  return aggregate_cpu<false>(adj, z);
}

at::Tensor gcn_aggregate_backward_cpu(const at::Tensor& grad_out, const at::Tensor& adj) {
  check_gcn_aggregate_args(adj, grad_out, "grad_out");
  return aggregate_cpu<true>(adj, grad_out);
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("gcn_aggregate", &gcn_aggregate_cpu);
  m.impl("gcn_aggregate_backward", &gcn_aggregate_backward_cpu);
}

}  // namespace hdml
