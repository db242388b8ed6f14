"""Face clustering with HDML (paper III-D, end): link scores on every node's F-Graph, then
pseudo-label propagation over the scored edges.

    labels = cluster(model, embeddings, ClusterConfig(threshold=0.5, max_size=300))
    clustering_metrics(true_labels, labels)   # {"nmi", "pairwise_f", "bcubed_f", ...}

The F-Graphs are built here (`clustering_fgraphs`: the config's kNN backend and target recall)
unless the caller passes them (`knn`).

The edges above `threshold` are joined into connected components; components larger than
`max_size` are split again at a threshold raised by `step`, up to `max_iter` rounds
(`hdml_ext.cluster.propagation.propagate_edges`, with `ClusterConfig.propagation_settings()`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from .. import metrics
from .._checks import require_model_k
from ..graph import FGraphs, build_fgraphs
from . import propagation
from .config import ClusterConfig
from .scoring import link_edges, node_fgraphs

logger = logging.getLogger(__name__)


def cluster(
    model: nn.Module,
    embeddings: Tensor,
    config: ClusterConfig | None = None,
    *,
    knn: Tensor | FGraphs | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Cluster labels [N] of the rows of `embeddings` ([N, D], on the model's device): link
    scores of every node's F-Graph (`link_edges`), then `propagation.propagate_edges` with the
    config's settings. knn: precomputed F-Graphs, either an `FGraphs` or an int64 [N, >= k] kNN
    table (both are accepted); None: built with the config's backend (`clustering_fgraphs`).

    config.k must be None or the model's k (ValueError before any work). When components larger
    than config.max_size remain after config.max_iter rounds, a warning is logged.
    return_info: return (labels, info) instead, info being `clustering_info`: propagation's
    info (iterations, num_clusters, num_resplit_nodes, num_oversized, converged,
    final_threshold) and the kNN tables' backend, reason and params under "knn".
    """
    config = config or ClusterConfig()
    k = require_model_k("config.k", config.k, int(model.to_config()["k"]))
    settings = config.propagation_settings()
    graphs = clustering_fgraphs(embeddings, k, config, knn, progress=progress)
    src, dst, score = link_edges(model, embeddings, k, batch_size=config.batch_size, knn_idx=graphs,
                                 progress=progress)
    labels, info = propagation.propagate_edges(embeddings.shape[0], src, dst, score, **settings)
    warn_unless_converged(info, config.max_size)
    return (labels, clustering_info(info, graphs)) if return_info else labels


def clustering_fgraphs(
    embeddings: Tensor, k: int, config: ClusterConfig, knn: Tensor | FGraphs | None = None, *,
    progress: bool = False,
) -> FGraphs:
    """The F-Graphs of every row of `embeddings` ([N, D]) that clustering scores, with k
    neighbours, on the embeddings' device: `knn` (an `FGraphs` or an int64 [N, >= k] kNN table,
    both accepted) checked and cut to k, or, when None, built by `hdml_ext.graph.build_fgraphs`
    with config.backend and config.target_recall."""
    if knn is None:
        knn = build_fgraphs(embeddings, k, **config.fgraph_settings(), progress=progress)
    return node_fgraphs(embeddings, k, knn, progress=progress)


def warn_unless_converged(info: dict, max_size: int | None) -> None:
    """Log a warning when propagation's `info` says components above `max_size` remained."""
    if not info["converged"]:
        logger.warning("propagation did not converge: %d clusters still hold more than max_size = %s rows "
                       "after %d rounds (final threshold %.4f); raise max_iter or step to split them",
                       info["num_oversized"], max_size, info["iterations"], info["final_threshold"])


def clustering_info(propagation_info: dict, graphs: FGraphs) -> dict:
    """Propagation's info with the kNN tables' {"backend", "reason", "params"} under "knn":
    what a run records beside its labels (JSON-ready)."""
    knn = {"backend": graphs.backend, "reason": graphs.reason, "params": dict(graphs.params)}
    return {**propagation_info, "knn": knn}


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
