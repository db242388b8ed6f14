"""kNN over inverted lists (the all-kNN graph at scale): `hdml_ext.ops.knn_ivf` over
`torch.ops.hdml.knn_ivf`."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import (
    require_dim,
    require_floating,
    require_index,
    require_int,
    require_same_device,
    require_tensor,
)


def knn_ivf(x: Tensor, list_ptr: Tensor, list_ids: Tensor, probe: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k nearest rows of every row of `x` among the rows of the lists it probes.

    Args:
        x: [N, D] float32 or float64 rows (N >= 2), CPU or CUDA.
        list_ptr: [L + 1] int64 offsets: list b holds rows list_ids[list_ptr[b]:list_ptr[b + 1]]
            (starts at 0, non-decreasing, ends at N).
        list_ids: [N] int64, a permutation of 0 .. N - 1 grouped by list (each row's home list).
        probe: [N, P] int64, the distinct lists (in [0, L)) each row searches; a row should
            probe its own home list, where its nearest neighbours usually are.
        k: neighbours per row, 1 <= k <= N - 1.

    Returns:
        dist: [N, k] Euclidean distances (not squared), ascending, x's dtype.
        idx: [N, k] int64 row indices; a row never lists itself; equal distances list the
            smaller index first. A row whose probed lists hold fewer than k other rows ends in
            idx -1 and dist inf.

    Exact among the probed rows, so recall@k is the share of true neighbours whose home list is
    probed. Not differentiable (read detached). Raises TypeError/ValueError/RuntimeError naming
    the argument on bad input.
    """
    require_tensor("x", x)
    require_dim("x", x, 2)
    require_floating("x", x)
    require_int("k", k, minimum=1)
    for name, tensor, ndim in (("list_ptr", list_ptr, 1), ("list_ids", list_ids, 1), ("probe", probe, 2)):
        require_tensor(name, tensor)
        require_dim(name, tensor, ndim)
        require_index(name, tensor)
        require_same_device(name, tensor, "x", x)
    return torch.ops.hdml.knn_ivf.default(x.detach(), list_ptr, list_ids, probe, k)


@torch.library.register_fake("hdml::knn_ivf")
def _knn_ivf_fake(x: Tensor, list_ptr: Tensor, list_ids: Tensor, probe: Tensor,
                  k: int) -> tuple[Tensor, Tensor]:
    torch._check(x.dim() == 2, lambda: f"x should be 2-D, got {x.dim()}-D")
    torch._check(probe.dim() == 2 and probe.shape[0] == x.shape[0],
                 lambda: f"probe should be [N, P] with N = {x.shape[0]}, got {tuple(probe.shape)}")
    torch._check(k >= 1, lambda: f"k should be >= 1, got {k}")
    num_rows = x.shape[0]
    return x.new_empty((num_rows, k)), x.new_empty((num_rows, k), dtype=torch.int64)
