"""Exact k nearest neighbours: `hdml_ext.ops.knn` over `torch.ops.hdml.knn`."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import require_dim, require_floating, require_int, require_same_device, require_tensor

#: The largest k the CUDA kernel takes (csrc/knn/knn.h: its selection keeps k + 8 candidates per
#: query, at most 1024) when N leaves that many candidates; the CPU kernel has no such limit.
CUDA_MAX_K = 1016


def knn(x: Tensor, k: int, *, queries: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The k nearest rows of `x` by Euclidean distance (paper eq. 1-2).

    Args:
        x: [N, D] float32, float64, float16 or bfloat16 points (CPU or CUDA; any strides).
        k: neighbours per query, 1 <= k <= N (k <= N - 1 when `queries` is None); on CUDA also
            k <= `CUDA_MAX_K` = 1016 (unless N - 1, or N with queries, is at most 1024).
        queries: [M, D] points to search for, same dtype and device as `x`. None: the queries
            are `x` itself and each row excludes itself (j != f).

    Returns:
        dist: [M, k] Euclidean distances (not squared), ascending along each row, x's dtype
            (float16 and bfloat16 are computed in float32; the distances come back in x's dtype).
        idx: [M, k] int64 row indices into `x`; equal distances list the smaller index first.

    Never holds an [M, N] matrix: distances are computed in tiles with a running selection.
    Not differentiable: neighbour search runs on the detached values of `x` and `queries`
    (inputs that require grad are accepted), and `dist` carries no gradient.
    Raises ValueError/TypeError/RuntimeError naming the argument on bad input (wrong rank or
    dtype, queries on another device than x, k out of range, k > `CUDA_MAX_K` on CUDA, D
    mismatch, non-finite values, empty input).
    """
    require_tensor("x", x)
    require_dim("x", x, 2)
    require_floating("x", x)
    require_int("k", k, minimum=1)
    if queries is not None:
        require_tensor("queries", queries)
        require_dim("queries", queries, 2)
        require_floating("queries", queries)
        require_same_device("queries", queries, "x", x)
        queries = queries.detach()
    dist, idx = torch.ops.hdml.knn.default(x.detach(), queries, k)
    return dist, idx


@torch.library.register_fake("hdml::knn")
def _knn_fake(x: Tensor, queries: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
    torch._check(x.dim() == 2, lambda: f"x should be 2-D, got {x.dim()}-D")
    torch._check(k >= 1, lambda: f"k should be >= 1, got {k}")
    num_queries = x.shape[0]
    if queries is not None:
        torch._check(queries.dim() == 2, lambda: f"queries should be 2-D, got {queries.dim()}-D")
        torch._check(queries.shape[1] == x.shape[1],
                     lambda: f"queries should have D = {x.shape[1]} columns like x, got {queries.shape[1]}")
        torch._check(queries.dtype == x.dtype,
                     lambda: f"queries should have dtype {x.dtype}, got {queries.dtype}")
        require_same_device("queries", queries, "x", x)
        num_queries = queries.shape[0]
    dist = x.new_empty((num_queries, k))
    idx = x.new_empty((num_queries, k), dtype=torch.int64)
    return dist, idx
