// NFA clamped channel gate (paper eq. 6-8) and its fused backward.
//
// Shared by the CPU and CUDA kernels: the argument checks, the choice of memory layout, and the
// scalar gate rule, so that both backends agree to the bit on which branch a channel takes.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "../utils.h"

namespace hdml {

// y = x * g', g = sigmoid(logits), g' = lo where g < lo, 1 where g > hi, g otherwise.
//
// Args:
//   x:      [B, C, *spatial] float16 / bfloat16 / float32 / float64 (spatial may be empty).
//           Read in place when contiguous or channels-last-like (dense, laid out as
//           [B, *spatial, C]: channels_last for 4-D, channels_last_3d for 5-D); any other
//           strides are copied to contiguous first.
//   logits: [B, C] floating pre-sigmoid channel scores on x's device; its dtype may differ
//           from x's. The gate is computed in x's accumulation type (float32 for float16,
//           bfloat16 and float32 x; float64 for float64 x).
//   lo, hi: the floor and the saturation threshold, 0 <= lo < hi <= 1.
//
// Returns:
//   y: x's shape and dtype, and x's memory format when x is read in place (else contiguous).
at::Tensor nfa_gate_cpu(const at::Tensor& x, const at::Tensor& logits, double lo, double hi);
at::Tensor nfa_gate_cuda(const at::Tensor& x, const at::Tensor& logits, double lo, double hi);

// The backward of nfa_gate, in one pass over grad_y and x.
//
// Args:
//   grad_y: [B, C, *spatial], x's shape, dtype and device: the gradient of y. Copied once into
//           x's layout when it comes in another one.
//   x, logits, lo, hi: as for nfa_gate.
//
// Returns:
//   grad_x:      [B, C, *spatial] = grad_y * g' (x's dtype and layout, like nfa_gate's y).
//   grad_logits: [B, C] in logits' dtype = sum_spatial(grad_y * x) * g (1 - g) where
//                lo <= g <= hi, else 0. Sums accumulate in float32 (float64 for float64 x)
//                in an order that does not depend on the number of threads.
std::tuple<at::Tensor, at::Tensor> nfa_gate_backward_cpu(const at::Tensor& grad_y,
                                                         const at::Tensor& x,
                                                         const at::Tensor& logits, double lo,
                                                         double hi);
std::tuple<at::Tensor, at::Tensor> nfa_gate_backward_cuda(const at::Tensor& grad_y,
                                                          const at::Tensor& x,
                                                          const at::Tensor& logits, double lo,
                                                          double hi);

namespace nfa_gate_detail {

// The clamp rule on g = sigmoid(logit), in the accumulation type acc_t. `gate` is g', `slope`
// is d g' / d logit: g (1 - g) in the middle branch (both ends inclusive), 0 where clamped.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t sigmoid(acc_t logit) {
  return acc_t(1) / (acc_t(1) + std::exp(-logit));
}

template <typename acc_t>
C10_HOST_DEVICE inline acc_t gate(acc_t logit, acc_t lo, acc_t hi) {
  const acc_t g = sigmoid(logit);
  return g < lo ? lo : (g > hi ? acc_t(1) : g);
}

template <typename acc_t>
C10_HOST_DEVICE inline acc_t slope(acc_t logit, acc_t lo, acc_t hi) {
  const acc_t g = sigmoid(logit);
  return (g < lo || g > hi) ? acc_t(0) : g * (acc_t(1) - g);
}

// How the kernels walk x: row-major [B, C, S] or channels-last-like [B, S, C] (S = the product
// of the spatial sizes). For 2-D x (S = 1) both coincide and kContiguous is used.
enum class Layout { kContiguous, kChannelsLast };

// The permutation [0, 2, ..., dim-1, 1] that takes x's logical [B, C, *spatial] order to the
// channels-last memory order [B, *spatial, C].
inline std::vector<int64_t> channels_last_perm(int64_t dim) {
  std::vector<int64_t> perm{0};
  for (int64_t d = 2; d < dim; ++d) perm.push_back(d);
  perm.push_back(1);
  return perm;
}

inline bool is_channels_last_like(const at::Tensor& t) {
  return t.dim() >= 3 && t.permute(channels_last_perm(t.dim())).is_contiguous();
}

// The layout the kernels will read `x` in, and `x` itself or its contiguous copy.
inline std::tuple<at::Tensor, Layout> choose_layout(const at::Tensor& x) {
  if (x.is_contiguous()) return {x, Layout::kContiguous};
  if (is_channels_last_like(x)) return {x, Layout::kChannelsLast};
  return {x.contiguous(), Layout::kContiguous};
}

// `t` in `layout` (a single copy only when it is not already laid out so).
inline at::Tensor to_layout(const at::Tensor& t, Layout layout) {
  if (layout == Layout::kContiguous) return t.contiguous();
  if (is_channels_last_like(t)) return t;
  const auto perm = channels_last_perm(t.dim());
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  return t.permute(perm).contiguous().permute(inverse);
}

// [B, C, S] sizes of x.
struct Dims {
  int64_t batch, channels, spatial;
};

inline Dims dims_of(const at::Tensor& x) {
  int64_t spatial = 1;
  for (int64_t d = 2; d < x.dim(); ++d) spatial *= x.size(d);
  return {x.size(0), x.size(1), spatial};
}

inline void check_forward_args(const at::Tensor& x, const at::Tensor& logits, double lo,
                               double hi) {
  TORCH_CHECK(x.dim() >= 2, "x should be [B, C, *spatial] (at least 2-D), got ", x.dim(),
              "-D with shape ", shape_str(x));
  HDML_CHECK_FLOATING(x, "x");
  HDML_CHECK_FLOATING(logits, "logits");
  TORCH_CHECK(logits.dim() == 2 && logits.size(0) == x.size(0) && logits.size(1) == x.size(1),
              "logits should have shape [B, C] = [", x.size(0), ", ", x.size(1),
              "] to match x, got ", shape_str(logits));
  HDML_CHECK_SAME_DEVICE(x, "x", logits, "logits");
  TORCH_CHECK(0.0 <= lo && lo < hi && hi <= 1.0,
              "lo and hi should satisfy 0 <= lo < hi <= 1, got lo=", lo, ", hi=", hi);
}

inline void check_backward_args(const at::Tensor& grad_y, const at::Tensor& x,
                                const at::Tensor& logits, double lo, double hi) {
  check_forward_args(x, logits, lo, hi);
  TORCH_CHECK(grad_y.sizes() == x.sizes(), "grad_y should have x's shape ", shape_str(x),
              ", got ", shape_str(grad_y));
  HDML_CHECK_SAME_DTYPE(grad_y, "grad_y", x, "x");
  HDML_CHECK_SAME_DEVICE(grad_y, "grad_y", x, "x");
}

}  // namespace nfa_gate_detail
}  // namespace hdml
