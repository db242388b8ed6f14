// Normalised GCN aggregation (the Â Z of paper eq. 12) and its backward, per graph of a batch.
#pragma once

#include <ATen/ATen.h>

#include "../utils.h"

namespace hdml {

// out = D^-1/2 A D^-1/2 z for each graph: out[b, i, :] = d_i sum_j A[b, i, j] d_j z[b, j, :],
// deg_i = sum_j A[b, i, j] (row sums), d_i = deg_i^-1/2 where deg_i > 0 and 0 otherwise.
// The normalised [B, n, n] matrix is never formed: the degrees are computed on the fly.
//
// Args:
//   adj: [B, n, n] bool (edges), or a floating dtype with finite edge weights (0 = no edge).
//        The weights are used as given: a negative weight is not an error, and a node whose row
//        sum is <= 0 counts as zero degree (d = 0), as in the reference. NaN or inf is an error
//        (checked by one pass over adj; on CUDA this synchronises). adj's floating dtype may
//        differ from z's: weights are converted to z's accumulation type.
//   z:   [B, n, F] node features, float16, bfloat16, float32 or float64, on adj's device.
//        Any strides.
//
// Returns:
//   out: [B, n, F] contiguous, z's dtype. Sums are accumulated in float32 for float16 and
//        bfloat16 (opmath). Entries of adj equal to zero are skipped, not multiplied.
at::Tensor gcn_aggregate_cpu(const at::Tensor& adj, const at::Tensor& z);
at::Tensor gcn_aggregate_cuda(const at::Tensor& adj, const at::Tensor& z);

// The transpose aggregation, the gradient of gcn_aggregate with respect to z:
// grad_z[b, j, :] = d_j sum_i A[b, i, j] d_i grad_out[b, i, :], with d from the ROW sums of A
// as in the forward (A need not be symmetric). adj gets no gradient.
//
// Args:
//   grad_out: [B, n, F] gradient of the forward's output, floating (as z above). Any strides.
//   adj:      [B, n, n] as in gcn_aggregate.
//
// Returns:
//   grad_z: [B, n, F] contiguous, grad_out's dtype.
at::Tensor gcn_aggregate_backward_cpu(const at::Tensor& grad_out, const at::Tensor& adj);
at::Tensor gcn_aggregate_backward_cuda(const at::Tensor& grad_out, const at::Tensor& adj);

// float16, bfloat16, float32 or float64: the dtypes the kernels are instantiated for.
inline bool is_gcn_float(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

// Edge weights must be finite: a degree summed over NaN or inf is not a number, and the kernels
// would give such a node a zero row where the reference spreads NaN. A bool adj needs no pass.
inline void check_gcn_finite_weights(const at::Tensor& adj) {
  if (adj.scalar_type() == at::kBool || adj.numel() == 0) return;
  if (at::isfinite(adj).all().item<bool>()) return;
  TORCH_CHECK(false, "adj should hold finite edge weights, got ", at::isnan(adj).any().item<bool>() ? "NaN" : "inf",
              " in a tensor of shape ", shape_str(adj));
}

// The preconditions shared by both ops and both backends; `src_name` is "z" for the forward
// and "grad_out" for the backward. Every message names the argument, what was expected and
// what came.
inline void check_gcn_aggregate_args(const at::Tensor& adj, const at::Tensor& src, const char* src_name) {
  HDML_CHECK_DIM(adj, "adj", 3);
  TORCH_CHECK(adj.size(1) == adj.size(2), "adj should be square per graph, [B, n, n], got shape ",
              shape_str(adj));
  TORCH_CHECK(adj.scalar_type() == at::kBool || is_gcn_float(adj.scalar_type()),
              "adj should be a bool or floating-point (float16, bfloat16, float32, float64) tensor, got ",
              adj.scalar_type());
  TORCH_CHECK(src.dim() == 3, src_name, " should be a 3-D tensor [B, n, F], got ", src.dim(),
              "-D with shape ", shape_str(src));
  TORCH_CHECK(is_gcn_float(src.scalar_type()), src_name,
              " should be a floating-point (float16, bfloat16, float32, float64) tensor, got ", src.scalar_type());
  TORCH_CHECK(src.size(0) == adj.size(0) && src.size(1) == adj.size(1), src_name,
              " should have shape [B, n, F] = [", adj.size(0), ", ", adj.size(1), ", F] to match adj ",
              shape_str(adj), ", got ", shape_str(src));
  TORCH_CHECK(src.device() == adj.device(), "adj and ", src_name, " should be on the same device, got ",
              adj.device(), " and ", src.device());
  check_gcn_finite_weights(adj);
}

}  // namespace hdml
