"""Choosing each propagation threshold on the validation split, and how well link scores
separate the kNN edges next to cosine similarity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.metrics import roc_auc_score

from ..clustering import ClusterConfig, clustering_metrics
from ..propagation import propagate_edges

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


def edge_diagnostics(link: tuple, cosine: tuple, labels: np.ndarray) -> dict:
    """How well the link head separates the kNN edges of one split, next to cosine similarity.

    link, cosine: (src, dst, score) of the same kNN edges; labels: [N] class of each row.
    Returns the share of same-class edges, the ROC AUC of link scores and of cosine similarity
    for "same class", and how many different-class edges get a link score >= 0.9.
    """
    src, dst, link_score = (t.numpy() for t in link)
    same = labels[src] == labels[dst]
    both = 0 < same.sum() < same.size
    return {
        "edges": int(same.size),
        "same_class_share": float(same.mean()),
        "link_auc": float(roc_auc_score(same, link_score)) if both else None,
        "cosine_auc": float(roc_auc_score(same, cosine[2].numpy())) if both else None,
        "wrong_edges": int((~same).sum()),
        "wrong_edges_link_score_ge_0.9": int(((~same) & (link_score >= 0.9)).sum()),
    }


def diagnostics_text(diagnostics: dict) -> str:
    """`edge_diagnostics` of each split in one line."""

    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return "; ".join(
        f"{split}: {d['same_class_share']:.3f} same-class, link AUC {auc(d['link_auc'])} "
        f"(cosine {auc(d['cosine_auc'])}), {d['wrong_edges_link_score_ge_0.9']}/{d['wrong_edges']} "
        "wrong edges scored >= 0.9"
        for split, d in diagnostics.items()
    )
