// Every operator schema of hdml_ext, in one place. Each backend fills these in from its own
// file (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu) with TORCH_LIBRARY_IMPL; autograd and
// fake (meta) kernels are registered from Python in hdml_ext/ops/.

#include <torch/library.h>

TORCH_LIBRARY(hdml, m) {
  // Exact k nearest neighbours (Euclidean). queries=None: the queries are x itself, and each
  // row excludes itself. dist [M, k] ascending (ties: smaller index first), idx [M, k] int64.
  m.def("knn(Tensor x, Tensor? queries, int k) -> (Tensor dist, Tensor idx)");

  // kNN of every row of x among the rows of the inverted lists it probes (list b: rows
  // list_ids[list_ptr[b]:list_ptr[b+1]]; probe [N, P] the lists of each row). Self excluded;
  // dist [N, k] ascending (ties: smaller index first), idx [N, k] int64, -1 / inf where short.
  m.def("knn_ivf(Tensor x, Tensor list_ptr, Tensor list_ids, Tensor probe, int k) -> (Tensor dist, Tensor idx)");

  // F-Graph adjacency: bool [B, k+1, k+1] for the focus nodes (all N when focus is None).
  m.def("fgraph_adjacency(Tensor knn_idx, Tensor? focus, bool symmetric) -> Tensor");
  // The same written into a caller's contiguous bool [B, k+1, k+1] buffer.
  m.def("fgraph_adjacency.out(Tensor knn_idx, Tensor? focus, bool symmetric, *, Tensor(a!) out) -> ()");

  // NFA clamped channel gate (paper eq. 6-8): y = x * g', g' = clamp-rule(sigmoid(logits)).
  m.def("nfa_gate(Tensor x, Tensor logits, float lo, float hi) -> Tensor");
  m.def(
      "nfa_gate_backward(Tensor grad_y, Tensor x, Tensor logits, float lo, float hi) "
      "-> (Tensor grad_x, Tensor grad_logits)");

  // Normalised GCN aggregation per graph: out = D^-1/2 A D^-1/2 z, D = row sums of A.
  m.def("gcn_aggregate(Tensor adj, Tensor z) -> Tensor");
  // grad_z = (D^-1/2 A D^-1/2)^T grad_out (adj is structure and gets no gradient).
  m.def("gcn_aggregate_backward(Tensor grad_out, Tensor adj) -> Tensor");

  // Link scores S_f [B, k] of F-Graphs at inference: the RE-GCN stack after the first layer's
  // shared projection (projected [N, 2 * d0]), then the edge head (see fgraph_scores.h).
  m.def(
      "fgraph_scores(Tensor projected, Tensor nodes, Tensor adj, Tensor[] weights, Tensor[] biases, "
      "Tensor[] attention, Tensor[] head, Tensor? table, str edge_input, bool relative_input, "
      "float[] cosine_prior, float? overlap_prior, int graphs_per_tile) -> Tensor");
}
