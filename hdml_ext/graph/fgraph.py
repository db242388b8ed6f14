"""Node sets of F-Graphs (paper eq. 3-4), matching `hdml_ext.ops.fgraph_adjacency`'s order."""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops._validate import require_dim, require_index, require_tensor


def fgraph_nodes(knn_idx: Tensor, focus: Tensor | None = None) -> Tensor:
    """Node ids of the F-Graphs of `focus`: int64 [B, k+1].

    Row b is [f, knn_idx[f, 0], ..., knn_idx[f, k-1]] for f = focus[b]: the focus is node 0
    of its own graph, then its neighbours nearest first. focus=None means all N nodes.
    """
    require_tensor("knn_idx", knn_idx)
    require_dim("knn_idx", knn_idx, 2)
    require_index("knn_idx", knn_idx)
    num_nodes = knn_idx.shape[0]
    if focus is None:
        focus = torch.arange(num_nodes, device=knn_idx.device)
    else:
        require_tensor("focus", focus)
        require_dim("focus", focus, 1)
        require_index("focus", focus)
        if focus.device != knn_idx.device:
            raise ValueError(f"focus should be on knn_idx's device {knn_idx.device}, got {focus.device}")
        if focus.numel() and (int(focus.min()) < 0 or int(focus.max()) >= num_nodes):
            raise ValueError(f"focus ids should lie in [0, {num_nodes}), got values in "
                             f"[{int(focus.min())}, {int(focus.max())}]")
    return torch.cat([focus[:, None], knn_idx[focus]], dim=1)
