"""Face clustering with HDML (paper III-D, end): link scores on every node's F-Graph, then
pseudo-label propagation over the scored edges.

    labels = cluster(model, embeddings, ClusterConfig(threshold=0.5, max_size=300))
    clustering_metrics(true_labels, labels)   # {"nmi", "pairwise_f", "bcubed_f", ...}

The edges above `threshold` are joined into connected components; components larger than
`max_size` are split again at a threshold raised by `step`, up to `max_iter` rounds
(`hdml_ext.cluster.propagation.propagate_edges`, with `ClusterConfig.propagation_settings()`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .. import metrics
from ..graph import FGraphs
from . import propagation
from .config import ClusterConfig
from .scoring import link_edges


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
