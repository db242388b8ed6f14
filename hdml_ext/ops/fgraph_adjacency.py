"""Fused F-Graph adjacency: `hdml_ext.ops.fgraph_adjacency` over `torch.ops.hdml.fgraph_adjacency`."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import require_dim, require_index, require_same_device, require_tensor


def fgraph_adjacency(knn_idx: Tensor, focus: Tensor | None = None, *, symmetric: bool = True,
                     out: Tensor | None = None) -> Tensor:
    """Adjacency of the F-Graphs of `focus` (paper section III-B, Fig. 2).

    Args:
        knn_idx: [N, k] int64; row i holds the k nearest neighbours of node i (self excluded).
        focus: [B] int64 node ids on knn_idx's device, or None for all N nodes (B = N). Repeats
            are allowed.
        symmetric: OR the directed relation with its transpose (the paper's edges are undirected).
        out: a contiguous bool [B, k+1, k+1] tensor on knn_idx's device to write the result into
            (every element is written), or None for a new one. Reusing one buffer across calls
            skips the allocation and the page faults of touching fresh memory.

    Returns:
        adj: bool [B, k+1, k+1]. The F-Graph of focus f has the nodes
        [f, knn_idx[f, 0], ..., knn_idx[f, k-1]] (see `hdml_ext.graph.fgraph_nodes`), and
        adj[b, a, c] is True iff node c is in node a's neighbour list (a != c), OR-ed with the
        transpose when `symmetric`. The diagonal is False; row 0 (the focus) is True elsewhere.

    One pass per focus over its members' neighbour lists with an O(1) membership test; no
    [B, k+1, k+1, k] intermediate. Ids outside [0, N) raise an error naming the argument.
    """
    require_tensor("knn_idx", knn_idx)
    require_dim("knn_idx", knn_idx, 2)
    require_index("knn_idx", knn_idx)
    if focus is not None:
        require_tensor("focus", focus)
        require_dim("focus", focus, 1)
        require_index("focus", focus)
        require_same_device("focus", focus, "knn_idx", knn_idx)
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric should be a bool, got {type(symmetric).__name__}")
    if out is None:
        return torch.ops.hdml.fgraph_adjacency.default(knn_idx, focus, symmetric)
    require_tensor("out", out)
    torch.ops.hdml.fgraph_adjacency.out(knn_idx, focus, symmetric, out=out)
    return out


@torch.library.register_fake("hdml::fgraph_adjacency")
def _fgraph_adjacency_fake(knn_idx: Tensor, focus: Tensor | None, symmetric: bool) -> Tensor:
    torch._check(knn_idx.dim() == 2, lambda: f"knn_idx should be 2-D, got {knn_idx.dim()}-D")
    if focus is not None:
        require_same_device("focus", focus, "knn_idx", knn_idx)
    num_graphs = knn_idx.shape[0] if focus is None else focus.shape[0]
    n = knn_idx.shape[1] + 1
    return knn_idx.new_empty((num_graphs, n, n), dtype=torch.bool)


@torch.library.register_fake("hdml::fgraph_adjacency.out")
def _fgraph_adjacency_out_fake(knn_idx: Tensor, focus: Tensor | None, symmetric: bool, *,
                               out: Tensor) -> None:
    expected = _fgraph_adjacency_fake(knn_idx, focus, symmetric)
    torch._check(out.dtype == torch.bool, lambda: f"out should have dtype bool, got {out.dtype}")
    torch._check(out.shape == expected.shape, lambda: f"out should have shape [B, k+1, k+1] = "
                                                      f"{list(expected.shape)}, got {list(out.shape)}")
