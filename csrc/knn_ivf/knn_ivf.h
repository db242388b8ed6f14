// k nearest neighbours of every row of x among the rows of the inverted lists it probes: the
// all-kNN graph that clustering needs, at the cost of an IVF search but computed as GEMMs
// (docs/graph.md, backend "ivf"). Schema (csrc/ops.cpp):
//
//   knn_ivf(Tensor x, Tensor list_ptr, Tensor list_ids, Tensor probe, int k) -> (Tensor dist, Tensor idx)
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>

#include "../utils.h"

namespace hdml {

// Args:
//   x:        [N, D] floating point (float32, float64; float16/bfloat16 computed in float32), any
//             strides, finite values, N >= 2, D >= 1.
//   list_ptr: [L + 1] int64, L >= 1: list b holds the rows list_ids[list_ptr[b] : list_ptr[b + 1]];
//             list_ptr[0] = 0, non-decreasing, list_ptr[L] = N.
//   list_ids: [N] int64, a permutation of 0 .. N - 1 (every row in exactly one list: its home).
//   probe:    [N, P] int64, P >= 1: the distinct lists (in [0, L)) whose rows row i searches.
//   k:        neighbours per row, 1 <= k <= N - 1.
//
// Returns (dist, idx), both contiguous [N, k] on x's device:
//   dist: x's dtype, Euclidean distances (not squared), ascending along each row.
//   idx:  int64 row indices; row i never lists itself; equal distances list the smaller index
//         first. A row whose probed lists hold fewer than k other rows ends in idx -1, dist inf.
//
// Each row's neighbours are exact among the rows of the lists it probes: recall@k is the share
// of true neighbours whose home list is probed. The CPU kernel takes one home list a at a time
// (in parallel over lists): its rows are grouped by the lists they probe, and each group's
// products with a probed list's rows come from one GEMM. The scores stream past a running
// selection per row (knn/knn_cpu_select.h), then the k + margin candidates are refined by direct
// differences in double, like knn (knn/knn.h).
//
// Errors (c10::Error, i.e. RuntimeError in Python), each naming the argument: wrong ranks,
// dtypes, sizes or devices; list_ptr not starting at 0, decreasing or not ending at N; list_ids
// not a permutation; probe values out of range or repeated within a row; k out of range;
// non-finite values in x.
std::tuple<at::Tensor, at::Tensor> knn_ivf_cpu(const at::Tensor& x, const at::Tensor& list_ptr,
                                               const at::Tensor& list_ids, const at::Tensor& probe, int64_t k);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> knn_ivf_cuda(const at::Tensor& x, const at::Tensor& list_ptr,
                                                const at::Tensor& list_ids, const at::Tensor& probe, int64_t k);
#endif

// Ranks, dtypes, sizes, devices and k, shared by both backends (values are checked by each).
inline void knn_ivf_check_args(const at::Tensor& x, const at::Tensor& list_ptr, const at::Tensor& list_ids,
                               const at::Tensor& probe, int64_t k) {
  TORCH_CHECK(x.dim() == 2, "knn_ivf: x should be a 2-D tensor [N, D], got ", x.dim(), "-D with shape ",
              shape_str(x));
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "knn_ivf: x should be a floating-point tensor, got dtype ",
              x.scalar_type());
  const int64_t n = x.size(0);
  TORCH_CHECK(n >= 2, "knn_ivf: x should have at least two rows (N >= 2), got shape ", shape_str(x));
  TORCH_CHECK(x.size(1) >= 1, "knn_ivf: x should have at least one column (D >= 1), got shape ", shape_str(x));
  const struct {
    const at::Tensor& t;
    const char* name;
    int64_t dim;
  } index_args[] = {{list_ptr, "list_ptr", 1}, {list_ids, "list_ids", 1}, {probe, "probe", 2}};
  for (const auto& a : index_args) {
    TORCH_CHECK(a.t.dim() == a.dim, "knn_ivf: ", a.name, " should be a ", a.dim, "-D tensor, got ", a.t.dim(),
                "-D with shape ", shape_str(a.t));
    TORCH_CHECK(a.t.scalar_type() == at::kLong, "knn_ivf: ", a.name, " should be an int64 tensor, got dtype ",
                a.t.scalar_type());
    TORCH_CHECK(a.t.device() == x.device(), "knn_ivf: ", a.name, " should be on x's device (", x.device(),
                "), got ", a.t.device());
  }
  TORCH_CHECK(list_ptr.size(0) >= 2, "knn_ivf: list_ptr should have L + 1 >= 2 entries (at least one list), got shape ",
              shape_str(list_ptr));
  TORCH_CHECK(list_ids.size(0) == n, "knn_ivf: list_ids should have N = ", n, " entries (one per row of x), got shape ",
              shape_str(list_ids));
  TORCH_CHECK(probe.size(0) == n && probe.size(1) >= 1, "knn_ivf: probe should have shape [N, P] = [", n,
              ", P >= 1], got ", shape_str(probe));
  TORCH_CHECK(k >= 1 && k <= n - 1, "knn_ivf: k should be in [1, N - 1] = [1, ", n - 1, "], got ", k);
}

}  // namespace hdml
