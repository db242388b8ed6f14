"""How well scored edges separate same-identity from different-identity kNN edges: ROC AUC over
all edges and within each focus's own edges (the order Re-ID ranking can use)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


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
