"""Face clustering with HDML (paper III-D, end): link scores on every node's F-Graph, then
pseudo-label propagation over the scored edges.

    labels = cluster(model, embeddings, ClusterConfig(k=50, threshold=0.5, max_size=300))
    clustering_metrics(true_labels, labels)   # {"nmi", "pairwise_f", "bcubed_f", ...}

Every node is the focus of its own F-Graph (its k nearest neighbours by Euclidean distance,
`hdml_ext.graph.FGraphs`); the link head scores each (focus, neighbour) pair. The edges above
`threshold` are joined into connected components; components larger than `max_size` are split
again at a threshold raised by `step`, up to `max_iter` rounds
(`hdml_ext.engine.propagation.propagate_edges`, with `ClusterConfig.propagation_settings()`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import metrics
from .._checks import require_dim, require_int, require_tensor
from ..graph import FGraphs, build_fgraphs
from . import propagation


@dataclass
class ClusterConfig:
    """Settings of `cluster`.

    k: neighbours per F-Graph (None: the model's k).
    threshold: first link-score threshold in [0, 1] for keeping an edge.
    max_size: components above this many nodes are split again at a higher threshold.
    step: how much the threshold rises per round.
    max_iter: rounds of splitting.
    batch_size: F-Graphs scored per forward pass (bounds memory).
    """

    k: int | None = None
    threshold: float = propagation.THRESHOLD
    max_size: int = propagation.MAX_SIZE
    step: float = propagation.STEP
    max_iter: int = propagation.MAX_ITER
    batch_size: int = 256

    def propagation_settings(self) -> dict:
        """The keyword arguments of `propagation.propagate_edges`: threshold, max_size, step,
        max_iter."""
        return {"threshold": self.threshold, "max_size": self.max_size, "step": self.step,
                "max_iter": self.max_iter}


def node_fgraphs(
    embeddings: Tensor, k: int, knn_idx: Tensor | FGraphs | None = None, *, progress: bool = False
) -> FGraphs:
    """The F-Graphs of every row of `embeddings` ([N, D]) with k neighbours, on its device.

    knn_idx: precomputed `FGraphs` (from `hdml_ext.graph.build_fgraphs`) or an int64 [N, >= k]
    table (nearest first, self excluded), of which the first k columns are used; None:
    `build_fgraphs(embeddings, k)` (backend "auto": exact while that is fast, an approximate
    index for large N).
    """
    require_tensor("embeddings", embeddings)
    require_dim("embeddings", embeddings, 2)
    num_nodes = embeddings.shape[0]
    if knn_idx is None:
        graphs = build_fgraphs(embeddings, k, progress=progress)
    else:
        graphs = knn_idx if isinstance(knn_idx, FGraphs) else FGraphs(knn_idx)
        require_int("k", k, minimum=1)
        if graphs.num_nodes != num_nodes or graphs.k < k:
            raise ValueError(
                f"knn_idx should be [N, >= k] = [{num_nodes}, >= {k}], got {tuple(graphs.knn_idx.shape)}"
            )
    return graphs.with_k(k).to(embeddings.device)


@torch.no_grad()
def link_edges(
    model: nn.Module,
    embeddings: Tensor,
    k: int,
    *,
    batch_size: int = 256,
    knn_idx: Tensor | FGraphs | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The scored edges of every node's F-Graph.

    model: anything with `link_scores_of_nodes(table [N, D], batches of (nodes, adj)) ->
    iterator of [B, k]` (HDML, HDMLOnFeatures). embeddings: [N, D] on the model's device.
    knn_idx: precomputed `FGraphs` or [N, >= k] table, or None to build them (`node_fgraphs`).
    Returns (src, dst, score), each [N * k]: src[i * k + j] = i, dst = its j-th neighbour,
    score = the link probability (same identity), on the CPU.

    Each batch of `batch_size` F-Graphs builds its node sets and adjacency on demand; held for
    all N are the [N, k] neighbour and score tables and the model's per-node work (HDML's first
    RE-GCN projection, [N, 2 * gcn_dims[0]], computed once rather than once per graph member).
    """
    require_int("batch_size", batch_size, minimum=1)
    graphs = node_fgraphs(embeddings, k, knn_idx, progress=progress)
    num_nodes = embeddings.shape[0]
    starts = range(0, num_nodes, batch_size)
    batches = (graphs.batch(torch.arange(start, min(start + batch_size, num_nodes), device=embeddings.device))
               for start in starts)
    scores = torch.empty(num_nodes, k)
    was_training = model.training
    model.eval()
    try:
        batch_scores = model.link_scores_of_nodes(embeddings, batches)
        for start, scored in zip(
            tqdm(starts, desc="scoring F-Graphs", disable=not progress, leave=False), batch_scores
        ):
            scores[start : start + scored.shape[0]] = scored.float().cpu()
    finally:
        model.train(was_training)
    src = torch.arange(num_nodes).repeat_interleave(k)
    return src, graphs.knn_idx.cpu().reshape(-1), scores.reshape(-1)


@torch.no_grad()
def similarity_edges(
    embeddings: Tensor, k: int, *, knn_idx: Tensor | FGraphs | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The no-graph counterpart of `link_edges`: the same kNN edges, scored by the cosine
    similarity of the two embeddings instead of a link head.

    embeddings: [N, D]. knn_idx: as in `link_edges`.
    Returns (src, dst, score), each [N * k], laid out as `link_edges`' (score in [-1, 1]), on
    the CPU, so that `propagation.propagate_edges` clusters them with the very same procedure.
    """
    knn_idx = node_fgraphs(embeddings, k, knn_idx).knn_idx
    num_nodes = embeddings.shape[0]
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    score = (unit[:, None, :] * unit[knn_idx]).sum(-1).clamp(-1.0, 1.0)
    src = torch.arange(num_nodes).repeat_interleave(k)
    return src, knn_idx.cpu().reshape(-1), score.cpu().reshape(-1)


def cluster(
    model: nn.Module,
    embeddings: Tensor,
    config: ClusterConfig | None = None,
    *,
    knn_idx: Tensor | FGraphs | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Cluster labels [N] of the rows of `embeddings` ([N, D], on the model's device): link
    scores of every node's F-Graph (`link_edges`, with `knn_idx` [N, >= k] or `FGraphs` when
    precomputed), then `propagation.propagate_edges` with the config's settings."""
    config = config or ClusterConfig()
    k = int(model.to_config()["k"]) if config.k is None else config.k
    src, dst, score = link_edges(
        model, embeddings, k, batch_size=config.batch_size, knn_idx=knn_idx, progress=progress
    )
    settings = config.propagation_settings()
    labels, _ = propagation.propagate_edges(embeddings.shape[0], src, dst, score, **settings)
    return labels


def clustering_metrics(labels_true: object, labels_pred: object) -> dict:
    """NMI, pairwise and BCubed precision / recall / F of a clustering, and its cluster count."""
    pp, pr, pf = metrics.pairwise_fscore(labels_true, labels_pred)
    bp, br, bf = metrics.bcubed_fscore(labels_true, labels_pred)
    return {
        "nmi": float(metrics.nmi(labels_true, labels_pred)),
        "pairwise_precision": float(pp),
        "pairwise_recall": float(pr),
        "pairwise_f": float(pf),
        "bcubed_precision": float(bp),
        "bcubed_recall": float(br),
        "bcubed_f": float(bf),
        "num_clusters": len(np.unique(np.asarray(torch.as_tensor(labels_pred).cpu()))),
    }
