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


def within_focus_auc(src: np.ndarray, score: np.ndarray, same: np.ndarray) -> tuple[float | None, int]:
    """How well `score` orders each focus's own edges: the ROC AUC of "same class" among the
    edges of one focus, averaged over the foci that have both kinds of edge.

    src [E]: each edge's focus, the edges laid out as `link_edges` gives them (every focus's k
    edges together, foci in order, k the same for all); score [E]; same bool [E]. Ties count
    one half. Re-ID ranking only reorders a query's own neighbours, so this, not the pooled ROC
    AUC (which also rewards telling pure neighbourhoods from mixed ones), is what it can gain.
    Returns (the mean AUC, or None when no focus has both kinds; the number of such foci).
    """
    if score.shape != src.shape or same.shape != src.shape:
        raise ValueError(f"src, score and same should all be [E], got {src.shape}, {score.shape} "
                         f"and {same.shape}")
    counts = np.bincount(src)
    k = int(counts.max()) if counts.size else 0
    if k == 0 or np.any(counts != k) or np.any(src != np.repeat(np.arange(counts.size), k)):
        raise ValueError("src should hold every focus's k edges together, foci 0..N-1 in order "
                         "(as link_edges gives them)")
    score, same = score.reshape(-1, k).astype(np.float64), same.reshape(-1, k)
    positives, negatives = same.sum(axis=1), (~same).sum(axis=1)
    mixed = (positives > 0) & (negatives > 0)
    if not mixed.any():
        return None, 0
    # Mann-Whitney: over each focus's (same, different) edge pairs, 1 when the same-class edge
    # scores higher, 1/2 on a tie.
    pair = same[:, :, None] & ~same[:, None, :]
    higher = np.sign(score[:, :, None] - score[:, None, :]) * 0.5 + 0.5
    per_focus = (higher * pair).sum(axis=(1, 2))[mixed] / (positives * negatives)[mixed]
    return float(per_focus.mean()), int(mixed.sum())


def edge_diagnostics(link: tuple, cosine: tuple, labels: np.ndarray) -> dict:
    """How well the link head separates the kNN edges of one split, next to cosine similarity.

    link, cosine: (src, dst, score) of the same kNN edges, laid out as `link_edges` gives them;
    labels: [N] class of each row. Returns the share of same-class edges, the ROC AUC of link
    scores and of cosine similarity for "same class" over all edges, the same within each focus
    (`within_focus_auc`, and how many foci it averages), and how many different-class edges get
    a link score >= 0.9.
    """
    src, dst, link_score = (t.numpy() for t in link)
    same = labels[src] == labels[dst]
    both = 0 < same.sum() < same.size
    link_within, mixed_foci = within_focus_auc(src, link_score, same)
    cosine_within, _ = within_focus_auc(src, cosine[2].numpy(), same)
    return {
        "edges": int(same.size),
        "same_class_share": float(same.mean()),
        "link_auc": float(roc_auc_score(same, link_score)) if both else None,
        "cosine_auc": float(roc_auc_score(same, cosine[2].numpy())) if both else None,
        "link_within_focus_auc": link_within,
        "cosine_within_focus_auc": cosine_within,
        "mixed_foci": mixed_foci,
        "wrong_edges": int((~same).sum()),
        "wrong_edges_link_score_ge_0.9": int(((~same) & (link_score >= 0.9)).sum()),
    }


def diagnostics_text(diagnostics: dict) -> str:
    """`edge_diagnostics` of each split in one line."""

    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return "; ".join(
        f"{split}: {d['same_class_share']:.3f} same-class, link AUC {auc(d['link_auc'])} "
        f"(cosine {auc(d['cosine_auc'])}), within a focus {auc(d['link_within_focus_auc'])} "
        f"(cosine {auc(d['cosine_within_focus_auc'])}), "
        f"{d['wrong_edges_link_score_ge_0.9']}/{d['wrong_edges']} wrong edges scored >= 0.9"
        for split, d in diagnostics.items()
    )
