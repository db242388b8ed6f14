// CUDA version of fgraph_scores: the same steps as the CPU kernel, each a batched ATen call
// over the whole batch of graphs (cuBLAS GEMMs on [B n, d] rows, the fused gcn_aggregate kernel
// for the normalised aggregation). A GPU runs these shapes near its GEMM rate when the batch is
// large, so this file composes library calls rather than fusing by tile as the CPU kernel does.

#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../gcn_aggregate/gcn_aggregate.h"
#include "fgraph_scores.h"

namespace hdml {

at::Tensor fgraph_scores_cuda(const at::Tensor& projected, const at::Tensor& nodes, const at::Tensor& adj,
                              at::TensorList weights, at::TensorList biases, at::TensorList attention,
                              at::TensorList head, const std::optional<at::Tensor>& table,
                              c10::string_view edge_input, bool relative_input, at::ArrayRef<double> cosine_prior,
                              std::optional<double> overlap_prior, int64_t graphs_per_tile) {
  const EdgeInput kind = parse_edge_input(edge_input);
  const std::vector<int64_t> dims = check_fgraph_scores_args(projected, nodes, adj, weights, biases, attention, head,
                                                             table, kind, cosine_prior, graphs_per_tile);
  const c10::cuda::CUDAGuard guard(projected.device());
  const int64_t B = nodes.size(0);
  const int64_t n = nodes.size(1);
  const int64_t k = n - 1;
  if (B == 0) return at::empty({0, k}, projected.options());
  const int64_t lo = nodes.min().item<int64_t>();
  const int64_t hi = nodes.max().item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < projected.size(0), "nodes should hold row ids in [0, ", projected.size(0),
              ") of projected, got ids from ", lo, " to ", hi);

  const at::Tensor undirected =
      adj.scalar_type() == at::kBool ? at::logical_or(adj, adj.transpose(1, 2)) : at::maximum(adj, adj.transpose(1, 2));
  const at::Tensor flat_nodes = nodes.reshape(-1);
  at::Tensor p = projected.index_select(0, flat_nodes).view({B, n, 2 * dims[0]});
  at::Tensor x;
  for (size_t l = 0; l < dims.size(); ++l) {
    const int64_t d = dims[l];
    if (l > 0) p = at::matmul(x, weights[l - 1].t());
    if (l == 0 && relative_input) p = p - p.narrow(1, 0, 1);
    x = at::relu(p.narrow(2, 0, d) + gcn_aggregate_cuda(undirected, p.narrow(2, d, d)) + biases[l]);
    if (!attention.empty()) {
      x = x * at::sigmoid(at::relu(at::matmul(x, attention[2 * l].t()) + attention[2 * l + 1]));
    }
  }
  const at::Tensor h_nodes = x.narrow(1, 1, k);
  const at::Tensor h_focus = x.narrow(1, 0, 1);
  at::Tensor cosine;
  if (kind == EdgeInput::kRelativeCosine || !cosine_prior.empty()) {
    const at::Tensor z = table->index_select(0, flat_nodes).view({B, n, table->size(1)});
    const at::Tensor unit = z / at::linalg_vector_norm(z, 2, {-1}, true).clamp_min(1e-12);
    cosine = (unit.narrow(1, 1, k) * unit.narrow(1, 0, 1)).sum(-1);
  }
  at::Tensor e;
  switch (kind) {
    case EdgeInput::kNode:
      e = h_nodes;
      break;
    case EdgeInput::kRelative:
      e = h_nodes - h_focus;
      break;
    case EdgeInput::kPair:
      e = at::cat({h_nodes, h_focus.expand_as(h_nodes), (h_nodes - h_focus).abs()}, -1);
      break;
    case EdgeInput::kRelativeCosine:
      e = at::cat({h_nodes - h_focus, cosine.unsqueeze(-1)}, -1);
      break;
  }
  const at::Tensor hidden = at::matmul(e, head[0].t()) + head[1];
  at::Tensor logit = at::matmul(at::where(hidden > 0, hidden, head[2] * hidden), head[3]) + head[4];
  if (!cosine_prior.empty()) logit = logit + cosine_prior[0] * cosine + cosine_prior[1];
  if (overlap_prior.has_value()) {
    logit = logit + *overlap_prior * adj.narrow(1, 1, k).to(logit.scalar_type()).sum(-1) / static_cast<double>(k);
  }
  return at::sigmoid(logit);
}

TORCH_LIBRARY_IMPL(hdml, CUDA, m) {
  m.impl("fgraph_scores", &fgraph_scores_cuda);
}

}  // namespace hdml
