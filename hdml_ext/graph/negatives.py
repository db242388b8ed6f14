"""Training F-Graphs with test-like negatives: cap the same-identity share of each kNN row.

On the identities it is trained on, a model's embeddings put most of a node's k nearest
neighbours in its own identity. In the demo, 61-64% of training F-Graph edges join the same
identity, against 25-31% in the F-Graphs of unseen test identities. A link head trained on
the first kind of graph then rarely has to reject a close impostor. `cap_positive_neighbours`
rebuilds each row of a wider kNN table. It takes the row's neighbours nearest first but skips
same-identity ones past a cap, so the other-identity neighbours (hard negatives) move in, and
the row stays sorted by distance. The F-Graphs of the new table (its adjacency
included) are those of the kNN relation restricted so.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import require_dim, require_int, require_tensor
from .fgraphs import FGraphs


def cap_positive_neighbours(wide: FGraphs, labels: Tensor, k: int, max_positive_share: float) -> FGraphs:
    """The [N, k] kNN table with at most ceil(max_positive_share * k) same-label neighbours a row.

    Args:
        wide: FGraphs of the N nodes with K >= k neighbours per row, nearest first (e.g.
            `build_fgraphs(embeddings, 4 * k)`).
        labels: [N] int64 identity of each node.
        k: neighbours per row of the result, 1 <= k <= K.
        max_positive_share: in [0, 1]; 1 keeps the first k neighbours as they are.

    Returns:
        FGraphs with knn_idx (and knn_dist when `wide` has them) [N, k]. Each row walks its K
        neighbours nearest first and takes every other-label one and the same-label ones up to
        the cap, until it has k. If the K neighbours run out first, the skipped same-label
        neighbours fill the remaining places, nearest first. Rows stay sorted by distance (the
        order of `wide`). backend and params are wide's, and the reason states the cap.
    """
    if not isinstance(wide, FGraphs):
        raise TypeError(f"wide should be an hdml_ext.graph.FGraphs, got {type(wide).__name__}")
    require_tensor("labels", labels)
    require_dim("labels", labels, 1)
    if labels.shape[0] != wide.num_nodes:
        raise ValueError(f"labels should have one entry per node ({wide.num_nodes}), got {labels.shape[0]}")
    require_int("k", k, minimum=1)
    if k > wide.k:
        raise ValueError(f"k should be <= the {wide.k} neighbours per row of wide, got {k}")
    share = float(max_positive_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"max_positive_share should be in [0, 1], got {max_positive_share!r}")
    cap = math.ceil(share * k)
    labels = labels.to(wide.knn_idx.device, torch.int64)
    same = labels[wide.knn_idx] == labels[:, None]
    pos_rank = same.cumsum(1)
    eligible = ~same | (pos_rank <= cap)
    keep = eligible & (eligible.cumsum(1) <= k)
    shortfall = k - keep.sum(1, keepdim=True)
    keep |= same & (pos_rank > cap) & (pos_rank - cap <= shortfall)
    # The first k kept columns of each row, in their original (distance) order.
    columns = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
    knn_idx = wide.knn_idx.gather(1, columns)
    knn_dist = None if wide.knn_dist is None else wide.knn_dist.gather(1, columns)
    reason = f"{wide.reason}; same-label neighbours capped at {cap} of k = {k} (max_positive_share {share:g})"
    return FGraphs(knn_idx, knn_dist, wide.backend, reason, dict(wide.params))
