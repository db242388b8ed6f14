// F-Graph adjacency (paper section III-B, Fig. 2): for each focus node f, the directed or
// undirected "is among the k nearest neighbours of" relation between the k+1 nodes of f's
// F-Graph, as a dense bool matrix. Schemas (csrc/ops.cpp):
//
//   fgraph_adjacency(Tensor knn_idx, Tensor? focus, bool symmetric) -> Tensor
//   fgraph_adjacency.out(Tensor knn_idx, Tensor? focus, bool symmetric, *, Tensor(a!) out) -> ()
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace hdml {

// The F-Graph of focus f has n = k + 1 nodes, in this order:
//   nodes = [f, knn_idx[f, 0], ..., knn_idx[f, k-1]]          (hdml_ext.graph.fgraph_nodes)
//
// Args:
//   knn_idx: int64 [N, k], any strides. Row i holds the k nearest neighbours of node i; every
//            id that is read must lie in [0, N). Repeated ids within a row are allowed.
//   focus:   int64 [B], any stride, ids in [0, N), repeats allowed; or None, meaning all N
//            nodes in order (B = N).
//   symmetric: whether to OR the directed relation with its transpose.
//
// Returns:
//   adj: bool [B, n, n], contiguous, on knn_idx's device (the .out overload writes every element
//        of `out`, which must be exactly that, and returns nothing, so that torch.compile can
//        functionalise it: a caller that reuses one buffer skips the allocation and the first
//        touch of fresh memory). adj[b, a, c] is true iff a != c and
//        nodes[c] occurs in knn_idx[nodes[a], :]; with symmetric, also iff adj[b, c, a] is.
//        The diagonal is false. A node id that occurs twice in one F-Graph's node list stands
//        for two nodes: both positions get the edges of that id.
//
// Both kernels make one pass per focus over its n members' neighbour lists (n * k reads) and
// test membership in O(1): the CUDA kernel with an open-addressing hash of the node list in
// shared memory (a chain links the positions of repeated ids), the CPU kernel with an array
// indexed by node id (N < 2^18) or a hash (see fgraph_adjacency_cpu.cpp). There is no
// [B, n, n, k] intermediate.
//
// Errors (c10::Error, i.e. RuntimeError in Python): knn_idx not 2-D or not int64, focus not
// 1-D or not int64, focus on another device, focus non-empty while N = 0, an id outside
// [0, N) in focus or among the knn_idx entries read (the message gives the value, where it
// was and the valid range). The CUDA kernel also needs (k+1)^2 < 2^31.
at::Tensor fgraph_adjacency_cpu(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus,
                                bool symmetric);
void fgraph_adjacency_out_cpu(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                              at::Tensor& out);

#ifdef WITH_CUDA
at::Tensor fgraph_adjacency_cuda(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus,
                                 bool symmetric);
void fgraph_adjacency_out_cuda(const at::Tensor& knn_idx, const std::optional<at::Tensor>& focus, bool symmetric,
                               at::Tensor& out);
#endif

// Checks shared by both backends: ranks, dtypes, devices and N = 0 with a non-empty focus.
// Returns the number of F-Graphs B.
inline int64_t fgraph_adjacency_check_args(const at::Tensor& knn_idx,
                                           const std::optional<at::Tensor>& focus) {
  TORCH_CHECK(knn_idx.dim() == 2, "fgraph_adjacency: knn_idx should be a 2-D int64 tensor [N, k], got ",
              knn_idx.dim(), "-D");
  TORCH_CHECK(knn_idx.scalar_type() == at::kLong,
              "fgraph_adjacency: knn_idx should have dtype int64 (torch.long), got ", knn_idx.scalar_type());
  const int64_t num_nodes = knn_idx.size(0);
  if (!focus.has_value()) return num_nodes;
  const at::Tensor& f = *focus;
  TORCH_CHECK(f.dim() == 1, "fgraph_adjacency: focus should be a 1-D int64 tensor [B], got ", f.dim(), "-D");
  TORCH_CHECK(f.scalar_type() == at::kLong,
              "fgraph_adjacency: focus should have dtype int64 (torch.long), got ", f.scalar_type());
  TORCH_CHECK(f.device() == knn_idx.device(),
              "fgraph_adjacency: focus and knn_idx should be on the same device, got focus on ", f.device(),
              " and knn_idx on ", knn_idx.device());
  TORCH_CHECK(num_nodes > 0 || f.numel() == 0,
              "fgraph_adjacency: focus should be empty when knn_idx has no rows (N = 0), got ", f.numel(),
              " focus ids");
  return f.size(0);
}

// The .out overload's check: out is a contiguous bool [num_graphs, k+1, k+1] tensor on knn_idx's
// device.
inline void fgraph_adjacency_check_out(const at::Tensor& out, const at::Tensor& knn_idx, int64_t num_graphs) {
  const int64_t n = knn_idx.size(1) + 1;
  TORCH_CHECK(out.scalar_type() == at::kBool, "fgraph_adjacency: out should have dtype bool, got ",
              out.scalar_type());
  TORCH_CHECK(out.device() == knn_idx.device(), "fgraph_adjacency: out should be on knn_idx's device ",
              knn_idx.device(), ", got ", out.device());
  TORCH_CHECK(out.dim() == 3 && out.size(0) == num_graphs && out.size(1) == n && out.size(2) == n,
              "fgraph_adjacency: out should have shape [B, k+1, k+1] = [", num_graphs, ", ", n, ", ", n, "], got ",
              out.sizes());
  TORCH_CHECK(out.is_contiguous(), "fgraph_adjacency: out should be contiguous");
}

}  // namespace hdml
