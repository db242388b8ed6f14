"""Choosing propagation's threshold and size cap on labelled validation data: a search over
quantiles of the edges' own scores that maximises the mean of NMI, pairwise F and BCubed F."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import ClusterConfig
from .propagation import propagate_edges
from .run import clustering_metrics

#: Candidate thresholds: these quantiles of a method's own validation edge scores, so that link
#: scores (in [0, 1], often near 1) and cosine similarities get the same search.
THRESHOLD_QUANTILES = np.linspace(0.0, 0.99, 100)


def selection_score(metrics: dict) -> float:
    """What the threshold search maximises on the validation split."""
    return (metrics["nmi"] + metrics["pairwise_f"] + metrics["bcubed_f"]) / 3.0


def propagate(edges: tuple, num_nodes: int, config: ClusterConfig, threshold: float) -> np.ndarray:
    """Cluster labels [num_nodes] of the scored `edges` (src, dst, score) at `threshold`."""
    src, dst, score = edges
    labels, _ = propagate_edges(num_nodes, src, dst, score,
                                **replace(config, threshold=threshold).propagation_settings())
    return labels


def choose_clustering(
    edges: tuple, labels: np.ndarray, config: ClusterConfig, max_sizes: list[int | None]
) -> tuple[float, int | None, dict]:
    """The threshold (among quantiles of the edges' own scores) and max_size (among `max_sizes`)
    of `propagate_edges` that maximise `selection_score` on validation `edges` (src, dst, score)
    of images with true `labels`; ties keep the first (lowest threshold, first max_size).
    Returns (threshold, max_size, the validation metrics at them)."""
    quantiles = np.unique(np.quantile(edges[2].numpy().astype(np.float64), THRESHOLD_QUANTILES))
    best: tuple[float, float, int | None, dict] | None = None
    for max_size in max_sizes:
        candidate = replace(config, max_size=max_size)
        for quantile_value in quantiles:
            threshold = float(quantile_value)
            metrics = clustering_metrics(labels, propagate(edges, labels.size, candidate, threshold))
            value = selection_score(metrics)
            if best is None or value > best[0]:
                best = (value, threshold, max_size, metrics)
    assert best is not None
    return best[1], best[2], best[3]
