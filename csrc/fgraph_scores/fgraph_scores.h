// Link scores of F-Graphs (paper eq. 12-14) at inference: the RE-GCN stack after its first
// projection, then the edge head, fused per tile of graphs.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "../utils.h"

namespace hdml {

// What the edge head reads for node i of a graph whose focus is f (h: final RE-GCN features).
enum class EdgeInput { kNode, kRelative, kPair, kRelativeCosine };

// S_f [B, k] of F-Graphs whose nodes are rows of one table, in inference mode (eval BatchNorm).
//
// Args:
//   projected: [N, 2 * d0] the first RE-GCN layer's projection of every table row, [Z W_self,
//              Z W_nbr] without bias; float32 or float64. The graphs gather its rows.
//   nodes:     int64 [B, n], n = k + 1 >= 2: each graph's rows of the table, the focus first.
//   adj:       [B, n, n] bool or floating: each graph's adjacency, directed or symmetric. The
//              RE-GCN runs on its undirected form (A | A^T, or max(A, A^T) for weights), with
//              D^-1/2 A D^-1/2 normalisation (zero-degree rows give zero); the overlap prior reads
//              the adjacency as given.
//   weights:   L - 1 tensors, layer l >= 1's projection [2 * d_l, d_{l-1}] (rows [:d_l]: W_self^T).
//   biases:    L tensors [d_l].
//   attention: empty (plain GCN), or 2L tensors: layer l's channel-attention FC with its
//              BatchNorm folded in, weight [d_l, d_l] and bias [d_l]
//              (cw = sigmoid(ReLU(z W^T + b)), z~ = z * cw).
//   head:      the edge head [W1 [h, w_in], b1 [h], PReLU slope [h] or [1], w2 [h], b2 [1]] where
//              (w2, b2) is fc2's "same" row minus its "different" row (the softmax of two logits
//              is the sigmoid of their difference); w_in = d_L ("node", "relative"), 3 d_L
//              ("pair") or d_L + 1 ("relative_cosine").
//   table:     [N, D] the RE-GCN inputs, read only for cosines ("relative_cosine", the cosine
//              prior); may be None otherwise.
//   edge_input: "node", "relative", "pair" or "relative_cosine".
//   relative_input: subtract each graph's focus row from its first-layer projections.
//   cosine_prior: [] or [a, b]: add a cos(z_i, z_f) + b to the logit.
//   overlap_prior: None or c: add c * (row i's adjacency sum) / k to the logit.
//   graphs_per_tile: graphs whose whole stack runs together (GEMMs of graphs_per_tile * n rows).
//
// All tensors but nodes and adj share projected's dtype and device.
//
// Returns:
//   scores: [B, k] in projected's dtype, sigmoid(logit) of nodes 1..k of each graph.
at::Tensor fgraph_scores_cpu(const at::Tensor& projected, const at::Tensor& nodes, const at::Tensor& adj,
                             at::TensorList weights, at::TensorList biases, at::TensorList attention,
                             at::TensorList head, const std::optional<at::Tensor>& table,
                             c10::string_view edge_input, bool relative_input, at::ArrayRef<double> cosine_prior,
                             std::optional<double> overlap_prior, int64_t graphs_per_tile);
at::Tensor fgraph_scores_cuda(const at::Tensor& projected, const at::Tensor& nodes, const at::Tensor& adj,
                              at::TensorList weights, at::TensorList biases, at::TensorList attention,
                              at::TensorList head, const std::optional<at::Tensor>& table,
                              c10::string_view edge_input, bool relative_input, at::ArrayRef<double> cosine_prior,
                              std::optional<double> overlap_prior, int64_t graphs_per_tile);

// The edge input named by `name`; raises for other names.
inline EdgeInput parse_edge_input(c10::string_view name) {
  if (name == "node") return EdgeInput::kNode;
  if (name == "relative") return EdgeInput::kRelative;
  if (name == "pair") return EdgeInput::kPair;
  if (name == "relative_cosine") return EdgeInput::kRelativeCosine;
  TORCH_CHECK(false, "edge_input should be one of node, relative, pair, relative_cosine, got \"", std::string(name),
              "\"");
}

// Raise unless `t` is a `dim`-D tensor of `shape` (entries < 0: any size) in `like`'s dtype and device.
inline void check_param(const at::Tensor& t, const std::string& name, std::initializer_list<int64_t> shape,
                        const at::Tensor& like) {
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  int64_t d = 0;
  for (int64_t size : shape) {
    ok = ok && (size < 0 || t.size(d) == size);
    ++d;
  }
  std::string want = "[";
  d = 0;
  for (int64_t size : shape) want += (d++ ? ", " : "") + (size < 0 ? std::string("*") : std::to_string(size));
  TORCH_CHECK(ok, name, " should have shape ", want, "], got ", shape_str(t));
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " should have projected's dtype ", like.scalar_type(),
              ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), name, " should be on projected's device ", like.device(), ", got ",
              t.device());
}

// Checks shared by the CPU and CUDA kernels; returns the layer widths d_0..d_{L-1}.
inline std::vector<int64_t> check_fgraph_scores_args(const at::Tensor& projected, const at::Tensor& nodes,
                                                     const at::Tensor& adj, at::TensorList weights,
                                                     at::TensorList biases, at::TensorList attention,
                                                     at::TensorList head, const std::optional<at::Tensor>& table,
                                                     EdgeInput edge_input, at::ArrayRef<double> cosine_prior,
                                                     int64_t graphs_per_tile) {
  HDML_CHECK_DIM(projected, "projected", 2);
  TORCH_CHECK(projected.scalar_type() == at::kFloat || projected.scalar_type() == at::kDouble,
              "projected should be float32 or float64, got ", projected.scalar_type());
  TORCH_CHECK(projected.size(1) >= 2 && projected.size(1) % 2 == 0,
              "projected should be [N, 2 * d0] first-layer projections (an even width), got ", shape_str(projected));
  HDML_CHECK_DIM(nodes, "nodes", 2);
  TORCH_CHECK(nodes.scalar_type() == at::kLong, "nodes should be int64, got ", nodes.scalar_type());
  TORCH_CHECK(nodes.size(1) >= 2, "nodes should be [B, k + 1] with k >= 1, got ", shape_str(nodes));
  HDML_CHECK_SAME_DEVICE(nodes, "nodes", projected, "projected");
  HDML_CHECK_DIM(adj, "adj", 3);
  const int64_t B = nodes.size(0);
  const int64_t n = nodes.size(1);
  TORCH_CHECK(adj.size(0) == B && adj.size(1) == n && adj.size(2) == n, "adj should be [B, n, n] = [", B, ", ", n,
              ", ", n, "] to match nodes, got ", shape_str(adj));
  TORCH_CHECK(adj.scalar_type() == at::kBool || at::isFloatingType(adj.scalar_type()),
              "adj should be bool or floating-point, got ", adj.scalar_type());
  HDML_CHECK_SAME_DEVICE(adj, "adj", projected, "projected");
  TORCH_CHECK(graphs_per_tile >= 1, "graphs_per_tile should be >= 1, got ", graphs_per_tile);

  const int64_t L = static_cast<int64_t>(biases.size());
  TORCH_CHECK(L >= 1, "biases should hold one tensor per RE-GCN layer, got none");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == L - 1, "weights should hold ", L - 1,
              " tensors (layers 1.. of ", L, "), got ", weights.size());
  TORCH_CHECK(attention.empty() || static_cast<int64_t>(attention.size()) == 2 * L,
              "attention should be empty or hold ", 2 * L, " tensors (weight, bias per layer), got ", attention.size());
  std::vector<int64_t> dims(L);
  dims[0] = projected.size(1) / 2;
  for (int64_t l = 0; l < L; ++l) {
    const std::string at_l = "[" + std::to_string(l) + "]";
    if (l > 0) {
      dims[l] = weights[l - 1].dim() == 2 ? weights[l - 1].size(0) / 2 : -1;
      check_param(weights[l - 1], "weights[" + std::to_string(l - 1) + "]", {2 * std::max<int64_t>(dims[l], 1), dims[l - 1]},
                  projected);
    }
    check_param(biases[l], "biases" + at_l, {dims[l]}, projected);
    if (!attention.empty()) {
      check_param(attention[2 * l], "attention[" + std::to_string(2 * l) + "]", {dims[l], dims[l]}, projected);
      check_param(attention[2 * l + 1], "attention[" + std::to_string(2 * l + 1) + "]", {dims[l]}, projected);
    }
  }
  const int64_t d = dims[L - 1];
  TORCH_CHECK(head.size() == 5, "head should hold 5 tensors (W1, b1, slope, w2, b2), got ", head.size());
  const int64_t width = edge_input == EdgeInput::kPair ? 3 * d : edge_input == EdgeInput::kRelativeCosine ? d + 1 : d;
  const int64_t hidden = head[0].dim() == 2 ? head[0].size(0) : -1;
  check_param(head[0], "head[0] (W1)", {std::max<int64_t>(hidden, 1), width}, projected);
  check_param(head[1], "head[1] (b1)", {hidden}, projected);
  check_param(head[2], "head[2] (PReLU slope)", {-1}, projected);
  TORCH_CHECK(head[2].size(0) == hidden || head[2].size(0) == 1, "head[2] (PReLU slope) should have 1 or ", hidden,
              " entries, got ", shape_str(head[2]));
  check_param(head[3], "head[3] (w2)", {hidden}, projected);
  check_param(head[4], "head[4] (b2)", {1}, projected);
  TORCH_CHECK(cosine_prior.empty() || cosine_prior.size() == 2,
              "cosine_prior should be empty or (scale, bias), got ", cosine_prior.size(), " values");
  const bool needs_table = edge_input == EdgeInput::kRelativeCosine || !cosine_prior.empty();
  if (needs_table) {
    TORCH_CHECK(table.has_value(), "table should be given: the relative_cosine input and the cosine prior read it");
    HDML_CHECK_DIM(*table, "table", 2);
    check_param(*table, "table", {projected.size(0), -1}, projected);
  }
  return dims;
}

}  // namespace hdml
