"""Choosing a clustering's parameters on labelled validation data, each a search over quantiles
of the edges' own scores that maximises the mean of NMI, pairwise F and BCubed F: propagation's
threshold and size cap (`choose_clustering`), Infomap's edge floor (`choose_infomap`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import ClusterConfig
from .infomap import infomap_edges
from .propagation import propagate_edges
from .run import clustering_metrics

#: Candidate thresholds: these quantiles of a method's own validation edge scores, so that link
#: scores (in [0, 1], often near 1) and cosine similarities get the same search.
THRESHOLD_QUANTILES = np.linspace(0.0, 0.99, 100)

#: Candidate Infomap floors: these quantiles of the edges' scores (Infomap runs take longer than
#: a propagation pass, so the grid is coarser).
INFOMAP_QUANTILES = np.linspace(0.0, 0.9, 10)


def selection_score(metrics: dict) -> float:
    """What the threshold search maximises on the validation split."""
    return (metrics["nmi"] + metrics["pairwise_f"] + metrics["bcubed_f"]) / 3.0


class _Scorer:
    """`clustering_metrics` against fixed true labels, computed once per distinct partition
    (neighbouring thresholds often give the same clusters)."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.seen: dict[bytes, dict] = {}

    def __call__(self, predicted: np.ndarray) -> dict:
        key = np.asarray(predicted, dtype=np.int64).tobytes()
        if key not in self.seen:
            self.seen[key] = clustering_metrics(self.labels, predicted)
        return self.seen[key]


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
    scored = _Scorer(labels)
    best: tuple[float, float, int | None, dict] | None = None
    for max_size in max_sizes:
        candidate = replace(config, max_size=max_size)
        for quantile_value in quantiles:
            threshold = float(quantile_value)
            metrics = scored(propagate(edges, labels.size, candidate, threshold))
            value = selection_score(metrics)
            if best is None or value > best[0]:
                best = (value, threshold, max_size, metrics)
    assert best is not None
    return best[1], best[2], best[3]


def choose_infomap(
    edges: tuple, labels: np.ndarray, quantiles: np.ndarray = INFOMAP_QUANTILES, *, seed: int = 123
) -> tuple[float, dict]:
    """The floor (among `quantiles` of the edges' own scores) of `infomap_edges` (src -> dst
    links weighted by score) that maximises `selection_score` on validation `edges` (src, dst,
    score) of rows with true `labels`; ties keep the lowest floor. Returns (min_score, the
    validation metrics at it)."""
    src, dst, score = (np.asarray(part) for part in edges)
    if score.size == 0:
        raise ValueError("edges should hold at least one edge to choose an Infomap floor, got none")
    floors = np.unique(np.quantile(score.astype(np.float64), quantiles))
    scored = _Scorer(labels)
    best: tuple[float, float, dict] | None = None
    for floor in floors:
        predicted, _ = infomap_edges(labels.size, src, dst, score, min_score=float(floor), seed=seed)
        metrics = scored(predicted)
        value = selection_score(metrics)
        if best is None or value > best[0]:
            best = (value, float(floor), metrics)
    assert best is not None
    return best[1], best[2]
