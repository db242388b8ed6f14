// NFA clamped channel gate on the CPU: one pass forward, one fused pass backward.
//
// Contiguous x is walked as B*C rows of S elements (one gate per row); channels-last x as B*S
// rows of C elements (one gate vector per batch item). The backward writes grad_x and reduces
// sum(grad_y * x) over the spatial positions in the same pass: per row for contiguous x, and
// for channels-last x in per-task C-length partial sums over fixed chunks of positions that a
// second, small pass combines. Chunking does not depend on the thread count, so results are
// the same for any number of threads.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "nfa_gate.h"

namespace hdml {
namespace {

using namespace nfa_gate_detail;

// Elements per parallel task: enough work to amortise scheduling, small enough to balance.
constexpr int64_t kGrainElements = 32768;
// Independent partial sums in a dot product: a fixed-size inner loop the compiler turns into
// vector instructions, summed in a fixed order at the end.
constexpr int64_t kLanes = 16;

// The inner loops are plain loops over contiguous memory, written so that the compiler
// vectorises them for the target it builds for. (at::vec::Vectorized was measured slower here:
// the extension is built without per-CPU-capability flags, so it falls back to its generic
// array implementation, which ran the float32 forward ~30% below copy speed where these loops
// run at it.)

// out[i] = in[i] * g for i < n.
template <typename scalar_t, typename acc_t>
void scale_by_scalar(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, int64_t n,
                     acc_t g) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<scalar_t>(static_cast<acc_t>(in[i]) * g);
}

// out[i] = in[i] * g[i] for i < n.
template <typename scalar_t, typename acc_t>
void scale_by_vector(const scalar_t* __restrict__ in, scalar_t* __restrict__ out, int64_t n,
                     const acc_t* __restrict__ g) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<scalar_t>(static_cast<acc_t>(in[i]) * g[i]);
  }
}

// dx[i] = dy[i] * g for i < n; returns sum_i dy[i] * x[i].
template <typename scalar_t, typename acc_t>
acc_t scale_and_dot(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                    scalar_t* __restrict__ dx, int64_t n, acc_t g) {
  acc_t lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const acc_t d = static_cast<acc_t>(dy[i + k]);
      dx[i + k] = static_cast<scalar_t>(d * g);
      lanes[k] += d * static_cast<acc_t>(x[i + k]);
    }
  }
  acc_t sum(0);
  for (; i < n; ++i) {
    const acc_t d = static_cast<acc_t>(dy[i]);
    dx[i] = static_cast<scalar_t>(d * g);
    sum += d * static_cast<acc_t>(x[i]);
  }
  for (int64_t k = 0; k < kLanes; ++k) sum += lanes[k];
  return sum;
}

// dx[i] = dy[i] * g[i] and acc[i] += dy[i] * x[i] for i < n.
template <typename scalar_t, typename acc_t>
void scale_and_accumulate(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x,
                          scalar_t* __restrict__ dx, int64_t n, const acc_t* __restrict__ g,
                          acc_t* __restrict__ acc) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t d = static_cast<acc_t>(dy[i]);
    dx[i] = static_cast<scalar_t>(d * g[i]);
    acc[i] += d * static_cast<acc_t>(x[i]);
  }
}

// g' for every (b, c), in acc_t, computed once before the main pass.
template <typename acc_t, typename logit_t>
std::vector<acc_t> gates(const logit_t* logits, int64_t n, acc_t lo, acc_t hi) {
  std::vector<acc_t> out(static_cast<size_t>(n));
  at::parallel_for(0, n, kGrainElements, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = gate(static_cast<acc_t>(logits[i]), lo, hi);
  });
  return out;
}

template <typename scalar_t, typename logit_t>
void forward_kernel(const scalar_t* x, const logit_t* logits, scalar_t* y, Dims d, Layout layout,
                    double lo, double hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> g =
      gates(logits, d.batch * d.channels, static_cast<acc_t>(lo), static_cast<acc_t>(hi));
  if (layout == Layout::kContiguous) {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / d.spatial);
    at::parallel_for(0, d.batch * d.channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        scale_by_scalar(x + r * d.spatial, y + r * d.spatial, d.spatial, g[r]);
      }
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / d.channels);
    at::parallel_for(0, d.batch * d.spatial, grain, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const acc_t* gb = g.data() + (p / d.spatial) * d.channels;
        scale_by_vector(x + p * d.channels, y + p * d.channels, d.channels, gb);
      }
    });
  }
}

template <typename scalar_t, typename logit_t>
void backward_kernel(const scalar_t* dy, const scalar_t* x, const logit_t* logits, scalar_t* dx,
                     logit_t* dlogits, Dims d, Layout layout, double lo_, double hi_) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t lo = static_cast<acc_t>(lo_);
  const acc_t hi = static_cast<acc_t>(hi_);
  const int64_t rows = d.batch * d.channels;
  const std::vector<acc_t> g = gates(logits, rows, lo, hi);
  if (layout == Layout::kContiguous) {
    const int64_t grain = std::max<int64_t>(1, kGrainElements / d.spatial);
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t off = r * d.spatial;
        const acc_t dot = scale_and_dot(dy + off, x + off, dx + off, d.spatial, g[r]);
        dlogits[r] = static_cast<logit_t>(dot * slope(static_cast<acc_t>(logits[r]), lo, hi));
      }
    });
    return;
  }
  // Channels-last: task (b, k) covers positions [k * chunk, (k + 1) * chunk) of batch item b
  // and sums into its own C-length slot of `partial`; then each (b, c) adds its chunks in order.
  const int64_t chunk = std::max<int64_t>(1, kGrainElements / d.channels);
  const int64_t chunks = (d.spatial + chunk - 1) / chunk;
  std::vector<acc_t> partial(static_cast<size_t>(d.batch * chunks * d.channels), acc_t(0));
  at::parallel_for(0, d.batch * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks;
      const int64_t s_begin = (task % chunks) * chunk;
      const int64_t s_end = std::min(d.spatial, s_begin + chunk);
      acc_t* acc = partial.data() + task * d.channels;
      const acc_t* gb = g.data() + b * d.channels;
      for (int64_t s = s_begin; s < s_end; ++s) {
        const int64_t off = (b * d.spatial + s) * d.channels;
        scale_and_accumulate(dy + off, x + off, dx + off, d.channels, gb, acc);
      }
    }
  });
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / chunks),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r) {
                       const int64_t b = r / d.channels;
                       const int64_t c = r % d.channels;
                       acc_t sum(0);
                       for (int64_t k = 0; k < chunks; ++k) {
                         sum += partial[(b * chunks + k) * d.channels + c];
                       }
                       dlogits[r] = static_cast<logit_t>(
                           sum * slope(static_cast<acc_t>(logits[r]), lo, hi));
                     }
                   });
}

// Logits as the kernels read them: contiguous, and in x's dtype or else x's accumulation type
// (a [B, C] copy), so that the kernels are instantiated for logit_t = scalar_t and acc_t only.
at::Tensor logits_for_kernel(const at::Tensor& logits, const at::Tensor& x) {
  if (logits.scalar_type() == x.scalar_type()) return logits.contiguous();
  return logits.to(at::toOpMathType(x.scalar_type())).contiguous();
}

}  // namespace

at::Tensor nfa_gate_cpu(const at::Tensor& x_in, const at::Tensor& logits, double lo, double hi) {
  nfa_gate_detail::check_forward_args(x_in, logits, lo, hi);
  TORCH_CHECK(x_in.device().is_cpu(), "x should be a CPU tensor, got ", x_in.device());
  auto [x, layout] = choose_layout(x_in);
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  const Dims d = dims_of(x);
  const at::Tensor lg = logits_for_kernel(logits, x);
  const bool same = lg.scalar_type() == x.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "nfa_gate_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (same) {
      forward_kernel(xp, lg.const_data_ptr<scalar_t>(), yp, d, layout, lo, hi);
    } else {
      forward_kernel(xp, lg.const_data_ptr<acc_t>(), yp, d, layout, lo, hi);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> nfa_gate_backward_cpu(const at::Tensor& grad_y,
                                                         const at::Tensor& x_in,
                                                         const at::Tensor& logits, double lo,
                                                         double hi) {
  nfa_gate_detail::check_backward_args(grad_y, x_in, logits, lo, hi);
  TORCH_CHECK(x_in.device().is_cpu(), "x should be a CPU tensor, got ", x_in.device());
  auto [x, layout] = choose_layout(x_in);
  const at::Tensor dy = to_layout(grad_y, layout);
  at::Tensor dx = at::empty_like(x);
  if (x.numel() == 0) return {dx, at::zeros_like(logits, at::MemoryFormat::Contiguous)};
  const Dims d = dims_of(x);
  const at::Tensor lg = logits_for_kernel(logits, x);
  const bool same = lg.scalar_type() == x.scalar_type();
  at::Tensor dlogits = at::empty({d.batch, d.channels}, lg.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "nfa_gate_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
        if (same) {
          backward_kernel(dyp, xp, lg.const_data_ptr<scalar_t>(), dxp,
                          dlogits.mutable_data_ptr<scalar_t>(), d, layout, lo, hi);
        } else {
          backward_kernel(dyp, xp, lg.const_data_ptr<acc_t>(), dxp,
                          dlogits.mutable_data_ptr<acc_t>(), d, layout, lo, hi);
        }
      });
  return {dx, dlogits.to(logits.scalar_type())};
}

TORCH_LIBRARY_IMPL(hdml, CPU, m) {
  m.impl("nfa_gate", &nfa_gate_cpu);
  m.impl("nfa_gate_backward", &nfa_gate_backward_cpu);
}

}  // namespace hdml
