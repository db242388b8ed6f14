"""New rows into the clusters of an earlier clustering, without re-clustering its rows
(`hdml cluster --assign-to RUN`).

    assignment = assign_to_clusters(model, new, old, old_labels, threshold=0.5, old_knn=knn)
    assignment.labels      # [Q] int64: an old cluster id, or a new one (> every old id)
    assignment.joined      # [Q] bool: True where the row joined an old cluster

Each new row is the focus of its F-Graph over the old rows (its k nearest old rows, with their
own kNN lists: `hdml_ext.graph.query_fgraphs`, as a Re-ID query over a gallery), the link head
scores each (new row, old neighbour) pair, and the row takes the cluster most of its linked
neighbours (score >= threshold) hold: ties go to the larger summed link score, then to the
smaller cluster id. A row with no linked neighbour starts a new cluster of its own; new rows
are not grouped with each other (cluster them, or all rows, with `hdml cluster` for that).

Cost, for Q new rows, G old rows of width D, and the model's k:
- the old rows' kNN table [G, k]: given (`old_knn`, what `hdml cluster` saves as knn.npy), or
  built once, as the earlier clustering did (exact: O(G^2 D) time; an approximate backend for
  large G);
- the exact k nearest old rows of each new row: O(Q G D) time in blocks, never a Q x G matrix;
- scoring Q F-Graphs of k + 1 nodes: the model's per-node work (HDML's first RE-GCN
  projection) on the at most Q (k + 1) rows they hold, then O(Q k^2) graph work;
- memory: the old embeddings and table, O(G (D + k)), plus O(Q k) for the scores.
The old rows keep their labels; nothing over them is re-scored or re-propagated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import require_dim, require_float, require_int, require_tensor
from ..graph import DEFAULT_TARGET_RECALL, build_fgraphs, query_fgraphs, require_k
from . import propagation
from .scoring import scoring_batch_size

__all__ = ["Assignment", "assign_to_clusters", "vote"]


@dataclass(frozen=True)
class Assignment:
    """labels [Q] int64 cluster of each new row; joined [Q] bool, True where it took an old
    cluster (False: a new cluster, numbered after every old id in row order)."""

    labels: np.ndarray
    joined: np.ndarray

    @property
    def num_new_clusters(self) -> int:
        return int((~self.joined).sum())


def vote(neighbour_labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The majority cluster of each row's linked neighbours.

    neighbour_labels [Q, k] int64 clusters of each row's neighbours; scores [Q, k] their link
    scores. A neighbour counts when its score >= threshold. Returns (cluster [Q] int64, joined
    [Q] bool); cluster is -1 where no neighbour counts. Ties in count go to the larger summed
    score, then to the smaller cluster id.
    """
    num_rows, k = neighbour_labels.shape
    rows = np.repeat(np.arange(num_rows), k)
    keep = scores.reshape(-1) >= threshold
    rows, labels, weights = rows[keep], neighbour_labels.reshape(-1)[keep], scores.reshape(-1)[keep]
    cluster = np.full(num_rows, -1, dtype=np.int64)
    if rows.size == 0:
        return cluster, np.zeros(num_rows, dtype=bool)
    pairs, inverse, counts = np.unique(np.stack([rows, labels]), axis=1, return_inverse=True,
                                       return_counts=True)
    sums = np.bincount(inverse.reshape(-1), weights=weights, minlength=pairs.shape[1])
    # Best pair per row first: by row, then most votes, largest summed score, smallest id.
    order = np.lexsort((pairs[1], -sums, -counts, pairs[0]))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pairs[0][order[1:]] != pairs[0][order[:-1]]
    best = order[first]
    cluster[pairs[0][best]] = pairs[1][best]
    return cluster, cluster >= 0


@torch.no_grad()
def assign_to_clusters(
    model: nn.Module,
    new: Tensor,
    old: Tensor,
    old_labels: object,
    *,
    threshold: float = propagation.THRESHOLD,
    k: int | None = None,
    old_knn: Tensor | None = None,
    backend: str = "exact",
    target_recall: float = DEFAULT_TARGET_RECALL,
    batch_size: int | None = None,
    progress: bool = False,
) -> Assignment:
    """Each row of `new` into the cluster of its linked neighbours among `old` (module doc).

    model: anything with `k` and `link_scores_of_nodes` (HDML, HDMLOnFeatures). new [Q, D],
    old [G, D]: embeddings on the model's device; old_labels [G] int the old rows' clusters
    (>= 0). threshold: the link score a neighbour needs to vote. k: neighbours per F-Graph
    (None: the model's k, which it must equal). old_knn: the old rows' int64 [G, >= k] kNN
    table, nearest first, self excluded (None: built once, by `hdml_ext.graph.build_fgraphs` with
    `backend` and `target_recall`; "exact", the default, computes it exactly). batch_size:
    F-Graphs scored per pass (None: sized for the device, `hdml_ext.cluster.scoring_batch_size`).
    """
    for name, rows in (("new", new), ("old", old)):
        require_tensor(name, rows)
        require_dim(name, rows, 2)
    if new.shape[1] != old.shape[1]:
        raise ValueError(f"new and old should have the same width, got D = {new.shape[1]} and {old.shape[1]}")
    labels = np.asarray(torch.as_tensor(old_labels).cpu())
    if labels.shape != (old.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"old_labels should be [G] = [{old.shape[0]}] integers, got {labels.dtype} "
                         f"{labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"old_labels should be cluster ids >= 0, got {labels.min()}")
    threshold = require_float("threshold", threshold)
    k = model.k if k is None else require_int("k", k, minimum=1)
    if batch_size is None:
        batch_size = scoring_batch_size(model, new.device, k)
    require_int("batch_size", batch_size, minimum=1)
    if k != model.k:
        raise ValueError(f"k = {k} differs from the model's k = {model.k} (its F-Graphs' size)")
    require_k(k, old.shape[0], nodes="G")
    num_new = new.shape[0]
    if num_new == 0:
        return Assignment(np.empty(0, dtype=np.int64), np.empty(0, dtype=bool))
    if old_knn is None and backend != "exact":
        built = build_fgraphs(old, k, backend=backend, target_recall=target_recall, progress=progress)
        old_knn = built.knn_idx
    graphs = query_fgraphs(new, old, k, gallery_knn=old_knn)
    neighbours, scores = graphs.knn_idx, _scores(model, graphs, new, old, batch_size, progress)
    cluster, joined = vote(labels[neighbours.cpu().numpy()], scores.numpy(), threshold)
    first_new = int(labels.max()) + 1 if labels.size else 0
    cluster[~joined] = first_new + np.arange(int((~joined).sum()))
    return Assignment(cluster, joined)


def _scores(model: nn.Module, graphs, new: Tensor, old: Tensor, batch_size: int, progress: bool) -> Tensor:
    """Link scores [Q, k] (CPU float32) of the new rows' F-Graphs, the model's per-node work run
    on the rows those graphs hold only (node ids renumbered into that compact table)."""
    num_old, num_new = old.shape[0], new.shape[0]
    used = torch.unique(graphs.knn_idx)
    position = torch.full((num_old + num_new,), -1, dtype=torch.long, device=used.device)
    position[used] = torch.arange(used.numel(), device=used.device)
    position[num_old:] = used.numel() + torch.arange(num_new, device=used.device)
    table = torch.cat([old[used.to(old.device)], new])
    starts = range(0, num_new, batch_size)

    def batches():
        for start in starts:
            nodes, adj = graphs.batch(torch.arange(start, min(start + batch_size, num_new)))
            yield position[nodes], adj

    was_training = model.training
    model.eval()
    try:
        bar = tqdm(starts, desc="scoring new rows' F-Graphs", disable=not progress, leave=False)
        parts = [scored.float().cpu() for _, scored in zip(bar, model.link_scores_of_nodes(table, batches()))]
    finally:
        model.train(was_training)
    return torch.cat(parts)
