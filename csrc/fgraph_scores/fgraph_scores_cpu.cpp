// CPU kernel of fgraph_scores: link scores of F-Graphs at inference, fused per tile of graphs.
//
// at::parallel_for shares tiles of `graphs_per_tile` graphs out to the threads. Each thread
// runs the whole stack on one tile before the next, in buffers of its own that are kept from
// call to call (no allocation per batch), so a tile's activations stay in its core's caches:
//
//   layer 0   one pass X = ReLU(own + Â nbr + b) reading each node's [own | nbr] projection
//             straight from the shared table (the next graph's rows prefetched); Â's rows are
//             lists of (source, weight) built once per tile from adj, so the normalised matrix
//             never exists and zero entries cost nothing;
//   layer l   P = X W_l^T (GEMM), then the same pass on P's rows;
//   attention A = X Wa^T (GEMM, the BatchNorm folded into Wa), then one pass
//             X *= sigmoid(ReLU(A + ba)), after every layer that has it;
//   head      E = each non-focus node's edge input (tile * k rows), H = E W1^T (GEMM), then one
//             pass per edge: sigmoid(w2 . PReLU(H + b1) + b2 + priors).
//
// The GEMMs are ATen's (MKL or its fallback), called inside the parallel region, where they run
// on the calling thread. The passes between them are compiled for AVX-512, AVX2 + FMA and the
// baseline, chosen at run time by cpu_isa() (utils.h), as in gcn_aggregate. float32 sigmoids use
// a vectorised exp (Cephes' expf: range reduction by ln 2, a degree-7 polynomial, relative error
// below 2e-7); float64 calls std::exp.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "fgraph_scores.h"

#if defined(__GNUC__)
#define HDML_SCORE_INLINE inline __attribute__((always_inline))
#else
#define HDML_SCORE_INLINE inline
#endif

// The helpers below take and return vector-extension registers by value; every one of them is
// always inlined into its variant, so no such value crosses a call (GCC warns on the declarations).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace hdml {
namespace {

// One SIMD register of `Bytes` bytes of T (a GCC/Clang vector-extension type), and the int
// register of the same width. No register is passed by value between differently compiled
// functions: every helper is inlined into its variant.
template <typename T, int Bytes>
struct Simd {
  static constexpr int64_t kLanes = Bytes / static_cast<int>(sizeof(T));
  typedef T V __attribute__((vector_size(Bytes)));
  typedef std::conditional_t<std::is_same_v<T, float>, int32_t, int64_t> I;
  typedef I VI __attribute__((vector_size(Bytes)));

  static HDML_SCORE_INLINE V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static HDML_SCORE_INLINE void store(T* p, V v) {
    std::memcpy(p, &v, sizeof(V));
  }
  static HDML_SCORE_INLINE V splat(T x) {
    return V{} + x;
  }
  static HDML_SCORE_INLINE V max0(V v) {
    return v > V{} ? v : V{};
  }
  static HDML_SCORE_INLINE T sum(V v) {
    T lanes[kLanes];
    std::memcpy(lanes, &v, sizeof(V));
    T total = 0;
    for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
    return total;
  }
  // exp(x) per lane. float: Cephes' expf (x clamped to [-87.3, 88.3], where 2^n stays a normal
  // float), with n = round(x / ln 2) found by adding 1.5 * 2^23, which leaves n in the low
  // mantissa bits; float64: std::exp per lane.
  static HDML_SCORE_INLINE V exp(V x) {
    if constexpr (std::is_same_v<T, float>) {
      constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
      x = x < splat(88.3f) ? x : splat(88.3f);
      x = x > splat(-87.3f) ? x : splat(-87.3f);
      const V shifted = x * 1.44269504088896341f + kMagic;
      const V nf = shifted - kMagic;
      V r = x - nf * 0.693359375f;
      r = r - nf * -2.12194440e-4f;
      V y = splat(1.9875691500e-4f);
      y = y * r + 1.3981999507e-3f;
      y = y * r + 8.3334519073e-3f;
      y = y * r + 4.1665795894e-2f;
      y = y * r + 1.6666665459e-1f;
      y = y * r + 5.0000001201e-1f;
      y = y * (r * r) + (r + 1.0f);
      VI bits;
      std::memcpy(&bits, &shifted, sizeof(V));
      bits = (bits + (127 - 0x4B400000)) << 23;  // 2^n: n = bits - 0x4B400000, biased by 127
      V scale;
      std::memcpy(&scale, &bits, sizeof(V));
      return y * scale;
    } else {
      T lanes[kLanes];
      std::memcpy(lanes, &x, sizeof(V));
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] = std::exp(lanes[l]);
      V out;
      std::memcpy(&out, lanes, sizeof(V));
      return out;
    }
  }
  static HDML_SCORE_INLINE V sigmoid(V x) {
    return splat(T(1)) / (splat(T(1)) + exp(-x));
  }
};

template <typename T>
HDML_SCORE_INLINE T scalar_sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// The normalised undirected adjacency of the graphs of one tile, as source lists: row i of
// graph g has cnt[g n + i] sources idx[(g n + i) n + c] with weights w[...] = A_ij d_i d_j, and
// their sum rowsum[g n + i].
template <typename T>
struct NormLists {
  int64_t n = 0;
  std::vector<int32_t> idx;
  std::vector<T> w;
  std::vector<int32_t> cnt;
  std::vector<T> rowsum;
  std::vector<T> inv_sqrt_deg;
  std::vector<T> und;  // one graph's undirected [n, n]
};

// Fill `lists` for graphs [g0, g0 + graphs) of adj ([B, n, n], any strides).
template <typename T, typename adj_t>
void build_norm_lists(const adj_t* adj, int64_t s_graph, int64_t s_row, int64_t s_col, int64_t g0, int64_t graphs,
                      NormLists<T>& lists) {
  const int64_t n = lists.n;
  for (int64_t g = 0; g < graphs; ++g) {
    const adj_t* a = adj + (g0 + g) * s_graph;
    T* und = lists.und.data();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const T aij = static_cast<T>(a[i * s_row + j * s_col]);
        const T aji = static_cast<T>(a[j * s_row + i * s_col]);
        und[i * n + j] = std::max(aij, aji);
      }
    }
    T* d = lists.inv_sqrt_deg.data();
    for (int64_t i = 0; i < n; ++i) {
      T deg = 0;
      for (int64_t j = 0; j < n; ++j) deg += und[i * n + j];
      d[i] = deg > T(0) ? T(1) / std::sqrt(deg) : T(0);
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = g * n + i;
      int32_t* idx = lists.idx.data() + row * n;
      T* w = lists.w.data() + row * n;
      int32_t c = 0;
      T total = 0;
      for (int64_t j = 0; j < n; ++j) {
        const T wij = und[i * n + j] * d[i] * d[j];
        idx[c] = static_cast<int32_t>(j);
        w[c] = wij;
        c += wij != T(0) ? 1 : 0;
        total += wij;
      }
      lists.cnt[row] = c;
      lists.rowsum[row] = total;
    }
  }
}

// Arguments of the passes over one tile.
template <typename T>
struct Tile {
  int64_t graphs;        // graphs in the tile
  int64_t n;             // nodes per graph
  const int64_t* nodes;  // [graphs, n] the tile's table rows
  const NormLists<T>* lists;
  const T** rows;        // scratch for n row pointers
};

// X[r, :d] = ReLU(own_r + sum_s w_s nbr_{idx_s} + b) for one node r of a graph, columns
// [c, c + U lanes), where rows[i] points at node i's projection [own (d) | nbr (d)]. relative:
// own and nbr are taken relative to the focus (rows[0]): own_r - own_f + sum_s w_s nbr_s -
// rowsum_r nbr_f.
template <int Bytes, int U, bool kRelative, typename T>
HDML_SCORE_INLINE void combine_cols(const T* const* rows, const T* own, const int32_t* idx, const T* w, int32_t cnt,
                                    T rowsum, const T* bias, int64_t d, int64_t c, T* out) {
  using S = Simd<T, Bytes>;
  using V = typename S::V;
  constexpr int64_t L = S::kLanes;
  V acc[U];
  for (int u = 0; u < U; ++u) acc[u] = V{};
  for (int32_t s = 0; s < cnt; ++s) {
    const V ws = S::splat(w[s]);
    const T* src = rows[idx[s]] + d + c;
    for (int u = 0; u < U; ++u) acc[u] += ws * S::load(src + u * L);
  }
  for (int u = 0; u < U; ++u) {
    V v = S::load(own + c + u * L) + acc[u] + S::load(bias + c + u * L);
    if constexpr (kRelative) {
      const T* focus = rows[0];
      v -= S::load(focus + c + u * L) + S::splat(rowsum) * S::load(focus + d + c + u * L);
    }
    S::store(out + c + u * L, S::max0(v));
  }
}

// One layer's aggregation, bias and ReLU for the tile: X [R, d] from the projections of its
// nodes, rows of `P` ([*, 2d] rows `ldp` apart): row nodes[r] of the table when `gather`, else row r.
template <int Bytes, bool kRelative, typename T>
HDML_SCORE_INLINE void combine_impl(const Tile<T>& t, const T* P, int64_t ldp, bool gather, const T* bias, int64_t d,
                                    T* X, int64_t ldx) {
  constexpr int64_t L = Simd<T, Bytes>::kLanes;
  const NormLists<T>& nl = *t.lists;
  const int64_t n = t.n;
  const T** rows = t.rows;
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(T));
  for (int64_t g = 0; g < t.graphs; ++g) {
    for (int64_t i = 0; i < n; ++i) rows[i] = P + (gather ? t.nodes[g * n + i] : g * n + i) * ldp;
    if (gather && g + 1 < t.graphs) {
      // The next graph's rows are scattered over the table: fetch them into L2 while this
      // graph is summed.
      for (int64_t i = 0; i < n; ++i) {
        const T* next = P + t.nodes[(g + 1) * n + i] * ldp;
        for (int64_t c = 0; c < 2 * d; c += kLine) __builtin_prefetch(next + c, 0, 2);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = g * n + i;
      const int32_t* idx = nl.idx.data() + row * n;
      const T* w = nl.w.data() + row * n;
      const int32_t cnt = nl.cnt[row];
      const T rowsum = nl.rowsum[row];
      const T* own = rows[i];
      T* out = X + row * ldx;
      int64_t c = 0;
      for (; c + 8 * L <= d; c += 8 * L) combine_cols<Bytes, 8, kRelative>(rows, own, idx, w, cnt, rowsum, bias, d, c, out);
      for (; c + L <= d; c += L) combine_cols<Bytes, 1, kRelative>(rows, own, idx, w, cnt, rowsum, bias, d, c, out);
      for (; c < d; ++c) {
        T acc = 0;
        for (int32_t s = 0; s < cnt; ++s) acc += w[s] * rows[idx[s]][d + c];
        T v = own[c] + acc + bias[c];
        if constexpr (kRelative) v -= rows[0][c] + rowsum * rows[0][d + c];
        out[c] = std::max(v, T(0));
      }
    }
  }
}

// X[r, :d] *= sigmoid(ReLU(A[r, :d] + ba)) for rows [0, rows).
template <int Bytes, typename T>
HDML_SCORE_INLINE void attend_impl(int64_t rows, const T* A, int64_t lda, const T* ba, int64_t d, T* X, int64_t ldx) {
  using S = Simd<T, Bytes>;
  constexpr int64_t L = S::kLanes;
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = A + r * lda;
    T* x = X + r * ldx;
    int64_t c = 0;
    for (; c + L <= d; c += L) {
      const auto gate = S::sigmoid(S::max0(S::load(a + c) + S::load(ba + c)));
      S::store(x + c, S::load(x + c) * gate);
    }
    for (; c < d; ++c) x[c] *= scalar_sigmoid(std::max(a[c] + ba[c], T(0)));
  }
}

// E's row g k + i - 1 = the edge input of node i = 1..k of tile graph g, from X [R, d].
template <typename T>
HDML_SCORE_INLINE void edge_inputs_impl(const Tile<T>& t, EdgeInput kind, const T* X, int64_t ldx, int64_t d,
                                        const T* cosine, T* E, int64_t lde) {
  const int64_t n = t.n;
  const int64_t k = n - 1;
  for (int64_t g = 0; g < t.graphs; ++g) {
    const T* f = X + g * n * ldx;
    for (int64_t i = 1; i < n; ++i) {
      const T* h = X + (g * n + i) * ldx;
      T* e = E + (g * k + i - 1) * lde;
      switch (kind) {
        case EdgeInput::kNode:
          for (int64_t c = 0; c < d; ++c) e[c] = h[c];
          break;
        case EdgeInput::kRelative:
          for (int64_t c = 0; c < d; ++c) e[c] = h[c] - f[c];
          break;
        case EdgeInput::kPair:
          for (int64_t c = 0; c < d; ++c) {
            e[c] = h[c];
            e[d + c] = f[c];
            e[2 * d + c] = std::abs(h[c] - f[c]);
          }
          break;
        case EdgeInput::kRelativeCosine:
          for (int64_t c = 0; c < d; ++c) e[c] = h[c] - f[c];
          e[d] = cosine[g * k + i - 1];
          break;
      }
    }
  }
}

// out[r] = sigmoid(w2 . PReLU(H[r] + b1) + b2 + prior[r]) for the tile's rows r < rows.
template <int Bytes, typename T>
HDML_SCORE_INLINE void head_impl(int64_t rows, const T* H, int64_t ldh, int64_t h, const T* b1, const T* slope,
                                 bool per_channel, const T* w2, T b2, const T* prior, T* out) {
  using S = Simd<T, Bytes>;
  using V = typename S::V;
  constexpr int64_t L = S::kLanes;
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = H + r * ldh;
    V acc = V{};
    int64_t c = 0;
    for (; c + L <= h; c += L) {
      const V v = S::load(x + c) + S::load(b1 + c);
      const V a = per_channel ? S::load(slope + c) : S::splat(slope[0]);
      acc += S::load(w2 + c) * (v > V{} ? v : a * v);
    }
    T logit = S::sum(acc);
    for (; c < h; ++c) {
      const T v = x[c] + b1[c];
      logit += w2[c] * (v > T(0) ? v : slope[per_channel ? c : 0] * v);
    }
    logit += b2 + (prior != nullptr ? prior[r] : T(0));
    out[r] = scalar_sigmoid(logit);
  }
}

// (a . a, a . b) over D entries, in two independent chains.
template <int Bytes, typename T>
HDML_SCORE_INLINE void dots(const T* a, const T* b, int64_t D, T& aa, T& ab) {
  using S = Simd<T, Bytes>;
  constexpr int64_t L = S::kLanes;
  typename S::V acc_aa{};
  typename S::V acc_ab{};
  int64_t c = 0;
  for (; c + L <= D; c += L) {
    const auto va = S::load(a + c);
    acc_aa += va * va;
    acc_ab += va * S::load(b + c);
  }
  aa = S::sum(acc_aa);
  ab = S::sum(acc_ab);
  for (; c < D; ++c) {
    aa += a[c] * a[c];
    ab += a[c] * b[c];
  }
}

// cos(z_i, z_f) of nodes i = 1..k of the tile's graphs (z: table rows; each norm at least 1e-12,
// as functional.normalize's eps).
template <int Bytes, typename T>
HDML_SCORE_INLINE void cosines_impl(const Tile<T>& t, const T* table, int64_t ld, int64_t D, T* out) {
  const int64_t n = t.n;
  for (int64_t g = 0; g < t.graphs; ++g) {
    const T* f = table + t.nodes[g * n] * ld;
    T ff = 0;
    T unused = 0;
    dots<Bytes>(f, f, D, ff, unused);
    const T norm_f = std::max(std::sqrt(ff), T(1e-12));
    for (int64_t i = 1; i < n; ++i) {
      T zz = 0;
      T zf = 0;
      dots<Bytes>(table + t.nodes[g * n + i] * ld, f, D, zz, zf);
      out[g * (n - 1) + i - 1] = zf / (std::max(std::sqrt(zz), T(1e-12)) * norm_f);
    }
  }
}

template <int Bytes, typename T>
HDML_SCORE_INLINE void combine_any(const Tile<T>& t, const T* P, int64_t ldp, bool gather, const T* bias, int64_t d,
                                   T* X, int64_t ldx, bool relative) {
  if (relative) {
    combine_impl<Bytes, true>(t, P, ldp, gather, bias, d, X, ldx);
  } else {
    combine_impl<Bytes, false>(t, P, ldp, gather, bias, d, X, ldx);
  }
}

// The passes of one instruction set, as non-inlined entry points.
#define HDML_SCORE_VARIANT(NAME, BYTES, ...)                                                                          \
  template <typename T>                                                                                             \
  __VA_ARGS__ void combine_##NAME(const Tile<T>& t, const T* P, int64_t ldp, bool gather, const T* bias, int64_t d, \
                                  T* X, int64_t ldx, bool relative) {                                               \
    combine_any<BYTES>(t, P, ldp, gather, bias, d, X, ldx, relative);                                               \
  }                                                                                                                 \
  template <typename T>                                                                                             \
  __VA_ARGS__ void attend_##NAME(int64_t rows, const T* A, int64_t lda, const T* ba, int64_t d, T* X, int64_t ldx) { \
    attend_impl<BYTES>(rows, A, lda, ba, d, X, ldx);                                                                \
  }                                                                                                                 \
  template <typename T>                                                                                             \
  __VA_ARGS__ void edge_inputs_##NAME(const Tile<T>& t, EdgeInput kind, const T* X, int64_t ldx, int64_t d,         \
                                      const T* cosine, T* E, int64_t lde) {                                        \
    edge_inputs_impl(t, kind, X, ldx, d, cosine, E, lde);                                                           \
  }                                                                                                                 \
  template <typename T>                                                                                             \
  __VA_ARGS__ void head_##NAME(int64_t rows, const T* H, int64_t ldh, int64_t h, const T* b1, const T* slope,       \
                               bool per_channel, const T* w2, T b2, const T* prior, T* out) {                       \
    head_impl<BYTES>(rows, H, ldh, h, b1, slope, per_channel, w2, b2, prior, out);                                  \
  }                                                                                                                 \
  template <typename T>                                                                                             \
  __VA_ARGS__ void cosines_##NAME(const Tile<T>& t, const T* table, int64_t ld, int64_t D, T* out) {                 \
    cosines_impl<BYTES>(t, table, ld, D, out);                                                                      \
  }

#ifdef HDML_X86_DISPATCH
HDML_SCORE_VARIANT(avx512, 64, __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2"))))
HDML_SCORE_VARIANT(avx2, 32, __attribute__((target("avx2,fma,bmi,bmi2"))))
#endif
HDML_SCORE_VARIANT(baseline, 16, )

// The variant of each pass for the running CPU.
template <typename T>
struct Kernels {
  void (*combine)(const Tile<T>&, const T*, int64_t, bool, const T*, int64_t, T*, int64_t, bool);
  void (*attend)(int64_t, const T*, int64_t, const T*, int64_t, T*, int64_t);
  void (*edge_inputs)(const Tile<T>&, EdgeInput, const T*, int64_t, int64_t, const T*, T*, int64_t);
  void (*head)(int64_t, const T*, int64_t, int64_t, const T*, const T*, bool, const T*, T, const T*, T*);
  void (*cosines)(const Tile<T>&, const T*, int64_t, int64_t, T*);
};

template <typename T>
Kernels<T> kernels_for(CpuIsa isa) {
#ifdef HDML_X86_DISPATCH
  if (isa == CpuIsa::kAvx512) {
    return {&combine_avx512<T>, &attend_avx512<T>, &edge_inputs_avx512<T>, &head_avx512<T>, &cosines_avx512<T>};
  }
  if (isa == CpuIsa::kAvx2) return {&combine_avx2<T>, &attend_avx2<T>, &edge_inputs_avx2<T>, &head_avx2<T>, &cosines_avx2<T>};
#endif
  (void)isa;
  return {&combine_baseline<T>, &attend_baseline<T>, &edge_inputs_baseline<T>, &head_baseline<T>, &cosines_baseline<T>};
}

// A thread's buffers, kept from call to call (grown when a call needs more): scoring allocates
// nothing per batch once each thread has run one.
template <typename T>
struct Workspace {
  std::vector<T> data;  // P, X, E and H, each starting on a 64-byte boundary
  NormLists<T> lists;
  std::vector<T> cosine;
  std::vector<T> prior;
  std::vector<const T*> rows;

  static Workspace& of_this_thread() {
    thread_local Workspace workspace;
    return workspace;
  }
};

template <typename V>
void ensure_size(std::vector<V>& v, int64_t size) {
  if (static_cast<int64_t>(v.size()) < size) v.resize(size);
}

// Entries of T from `offset` rounded up to a 64-byte boundary.
template <typename T>
int64_t aligned(int64_t offset) {
  constexpr int64_t kStep = 64 / static_cast<int64_t>(sizeof(T));
  return (offset + kStep - 1) / kStep * kStep;
}

// out[:rows, :cols] = in[:rows, :inner] W^T for W [cols, inner], both buffers row-major with
// leading dimensions ld_out and ld_in (ATen's GEMM, on this thread inside the parallel region).
template <typename T>
void project(T* out, int64_t ld_out, const T* in, int64_t ld_in, int64_t rows, int64_t cols, int64_t inner,
             const at::Tensor& W) {
  const auto options = W.options();
  at::Tensor out_t = at::from_blob(out, {rows, cols}, {ld_out, 1}, options);
  const at::Tensor in_t = at::from_blob(const_cast<T*>(in), {rows, inner}, {ld_in, 1}, options);
  at::mm_out(out_t, in_t, W.t());
}

template <typename T>
void scores_kernel(const at::Tensor& projected, const at::Tensor& nodes, const at::Tensor& adj,
                   at::TensorList weights, at::TensorList biases, at::TensorList attention, at::TensorList head,
                   const std::optional<at::Tensor>& table, EdgeInput edge_input, bool relative_input,
                   at::ArrayRef<double> cosine_prior, std::optional<double> overlap_prior, int64_t tile,
                   const std::vector<int64_t>& dims, at::Tensor& scores) {
  const int64_t B = nodes.size(0);
  const int64_t n = nodes.size(1);
  const int64_t k = n - 1;
  const int64_t L = static_cast<int64_t>(dims.size());
  const int64_t dmax = *std::max_element(dims.begin(), dims.end());
  const int64_t d_last = dims[L - 1];
  const int64_t hidden = head[0].size(0);
  const int64_t width = head[0].size(1);
  const bool with_attention = !attention.empty();
  const bool with_cosine = edge_input == EdgeInput::kRelativeCosine || !cosine_prior.empty();
  const bool with_prior = !cosine_prior.empty() || overlap_prior.has_value();
  const T* proj_p = projected.data_ptr<T>();
  const int64_t ld_proj = projected.stride(0);
  const int64_t* nodes_p = nodes.data_ptr<int64_t>();
  const int64_t a_graph = adj.stride(0);
  const int64_t a_row = adj.stride(1);
  const int64_t a_col = adj.stride(2);
  const T* table_p = with_cosine ? table->data_ptr<T>() : nullptr;
  const int64_t ld_table = with_cosine ? table->stride(0) : 0;
  const int64_t D = with_cosine ? table->size(1) : 0;
  const T* b1 = head[1].data_ptr<T>();
  const T* slope = head[2].data_ptr<T>();
  const bool per_channel = head[2].size(0) == hidden && hidden > 1;
  const T* w2 = head[3].data_ptr<T>();
  const T b2 = head[4].data_ptr<T>()[0];
  T* scores_p = scores.data_ptr<T>();
  const Kernels<T> kern = kernels_for<T>(cpu_isa());

  at::parallel_for(0, B, tile, [&](int64_t begin, int64_t end) {
    // A tile larger than this thread's chunk of graphs needs no larger buffers.
    const int64_t per_tile = std::min(tile, end - begin);
    const int64_t rows_max = per_tile * n;
    // P: projections and attention pre-activations [R, 2 dmax]; X: layer outputs [R, dmax];
    // E, H: the head's inputs [tile k, width] and hidden layer [tile k, hidden].
    const int64_t ldP = 2 * dmax;
    const int64_t ldX = dmax;
    const int64_t off_X = aligned<T>(rows_max * ldP);
    const int64_t off_E = aligned<T>(off_X + rows_max * ldX);
    const int64_t off_H = aligned<T>(off_E + per_tile * k * width);
    const int64_t total = aligned<T>(off_H + per_tile * k * hidden);
    Workspace<T>& ws = Workspace<T>::of_this_thread();
    ensure_size(ws.data, total + 64 / static_cast<int64_t>(sizeof(T)));
    void* raw = ws.data.data();
    size_t space = ws.data.size() * sizeof(T);
    T* P_p = static_cast<T*>(std::align(64, total * sizeof(T), raw, space));
    T* X_p = P_p + off_X;
    T* E_p = P_p + off_E;
    T* H_p = P_p + off_H;
    NormLists<T>& lists = ws.lists;
    lists.n = n;
    ensure_size(lists.idx, rows_max * n);
    ensure_size(lists.w, rows_max * n);
    ensure_size(lists.cnt, rows_max);
    ensure_size(lists.rowsum, rows_max);
    ensure_size(lists.inv_sqrt_deg, n);
    ensure_size(lists.und, n * n);
    ensure_size(ws.cosine, with_cosine ? per_tile * k : 0);
    ensure_size(ws.prior, with_prior ? per_tile * k : 0);
    ensure_size(ws.rows, n);
    T* cosine = ws.cosine.data();
    T* prior = ws.prior.data();

    for (int64_t g0 = begin; g0 < end; g0 += per_tile) {
      const int64_t graphs = std::min(per_tile, end - g0);
      const int64_t rows = graphs * n;
      const int64_t* tile_nodes = nodes_p + g0 * n;
      AT_DISPATCH_SWITCH(adj.scalar_type(), "fgraph_scores_cpu_adj",
                         AT_DISPATCH_CASE_FLOATING_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, [&] {
        const scalar_t* a = adj.data_ptr<scalar_t>();
        build_norm_lists<T>(a, a_graph, a_row, a_col, g0, graphs, lists);
        if (overlap_prior.has_value()) {
          for (int64_t g = 0; g < graphs; ++g) {
            for (int64_t i = 1; i < n; ++i) {
              const scalar_t* row = a + (g0 + g) * a_graph + i * a_row;
              T sum = 0;
              for (int64_t j = 0; j < n; ++j) sum += static_cast<T>(row[j * a_col]);
              prior[g * k + i - 1] = static_cast<T>(*overlap_prior) * (sum / static_cast<T>(k));
            }
          }
        }
      }));
      const Tile<T> t{graphs, n, tile_nodes, &lists, ws.rows.data()};
      if (with_cosine) kern.cosines(t, table_p, ld_table, D, cosine);
      if (!cosine_prior.empty()) {
        const T scale = static_cast<T>(cosine_prior[0]);
        const T bias = static_cast<T>(cosine_prior[1]);
        for (int64_t r = 0; r < graphs * k; ++r) {
          const T term = scale * cosine[r] + bias;
          prior[r] = overlap_prior.has_value() ? prior[r] + term : term;
        }
      }
      for (int64_t l = 0; l < L; ++l) {
        const int64_t d = dims[l];
        if (l == 0) {  // the first layer reads its projections from the shared table
          kern.combine(t, proj_p, ld_proj, true, biases[0].data_ptr<T>(), d, X_p, ldX, relative_input);
        } else {
          project(P_p, ldP, X_p, ldX, rows, 2 * d, dims[l - 1], weights[l - 1]);
          kern.combine(t, P_p, ldP, false, biases[l].data_ptr<T>(), d, X_p, ldX, false);
        }
        if (with_attention) {
          project(P_p, ldP, X_p, ldX, rows, d, d, attention[2 * l]);
          kern.attend(rows, P_p, ldP, attention[2 * l + 1].data_ptr<T>(), d, X_p, ldX);
        }
      }
      kern.edge_inputs(t, edge_input, X_p, ldX, d_last, cosine, E_p, width);
      project(H_p, hidden, E_p, width, graphs * k, hidden, width, head[0]);
      kern.head(graphs * k, H_p, hidden, hidden, b1, slope, per_channel, w2, b2, with_prior ? prior : nullptr,
                scores_p + g0 * k);
    }
  });
}

}  // namespace

at::Tensor fgraph_scores_cpu(const at::Tensor& projected, const at::Tensor& nodes, const at::Tensor& adj,
                             at::TensorList weights, at::TensorList biases, at::TensorList attention,
                             at::TensorList head, const std::optional<at::Tensor>& table,
                             c10::string_view edge_input, bool relative_input, at::ArrayRef<double> cosine_prior,
                             std::optional<double> overlap_prior, int64_t graphs_per_tile) {
  const EdgeInput kind = parse_edge_input(edge_input);
  const std::vector<int64_t> dims = check_fgraph_scores_args(projected, nodes, adj, weights, biases, attention, head,
                                                             table, kind, cosine_prior, graphs_per_tile);
  const int64_t B = nodes.size(0);
  const int64_t n = nodes.size(1);
  if (B > 0) {
    const int64_t lo = nodes.min().item<int64_t>();
    const int64_t hi = nodes.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < projected.size(0), "nodes should hold row ids in [0, ", projected.size(0),
                ") of projected, got ids from ", lo, " to ", hi);
  }
  // The kernel reads these with unit column strides.
  std::vector<at::Tensor> w(weights.begin(), weights.end());
  std::vector<at::Tensor> b(biases.begin(), biases.end());
  std::vector<at::Tensor> a(attention.begin(), attention.end());
  std::vector<at::Tensor> h(head.begin(), head.end());
  for (auto* list : {&w, &b, &a, &h}) {
    for (at::Tensor& t : *list) t = t.contiguous();
  }
  const at::Tensor proj = projected.stride(1) == 1 ? projected : projected.contiguous();
  const at::Tensor ids = nodes.contiguous();
  std::optional<at::Tensor> rows = table;
  if (rows.has_value() && rows->stride(1) != 1) rows = rows->contiguous();
  at::Tensor scores = at::empty({B, n - 1}, projected.options());
  if (B == 0) return scores;
  AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "fgraph_scores_cpu", [&] {
    scores_kernel<scalar_t>(proj, ids, adj, w, b, a, h, rows, kind, relative_input, cosine_prior, overlap_prior,
                            graphs_per_tile, dims, scores);
  });
  return scores;
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("fgraph_scores", &fgraph_scores_cpu);
}

}  // namespace hdml
