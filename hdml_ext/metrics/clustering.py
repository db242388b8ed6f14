"""Clustering metrics: NMI, pairwise and BCubed F-scores of a predicted labeling against the truth.

They work from the sparse contingency table of the two labelings (scikit-learn's), so they take
O(N log N) time and O(N) memory, never O(N^2).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

from .._checks import as_int_vector, same_length

__all__ = ["bcubed_fscore", "nmi", "pairwise_fscore"]


def _labelings(labels_true: object, labels_pred: object) -> tuple[np.ndarray, np.ndarray]:
    truth = as_int_vector("labels_true", labels_true)
    pred = as_int_vector("labels_pred", labels_pred)
    same_length(("labels_true", "labels_pred"), (truth, pred))
    return truth, pred


def _fscore(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0.0 else 2.0 * precision * recall / total


def nmi(labels_true: object, labels_pred: object) -> float:
    """Normalised mutual information MI(C, Ĉ) / sqrt(H(C) H(Ĉ)) (paper IV-A; natural log).

    Args:
        labels_true: [N] integer ground-truth classes C.
        labels_pred: [N] integer predicted clusters Ĉ (label values are arbitrary).

    Returns a float in [0, 1]: 1.0 when both labelings are a single cluster and 0.0 when exactly
    one of them is. Computed by scikit-learn's
    normalized_mutual_info_score(..., average_method="geometric").
    """
    truth, pred = _labelings(labels_true, labels_pred)
    score = normalized_mutual_info_score(truth, pred, average_method="geometric")
    return float(min(max(score, 0.0), 1.0))


def pairwise_fscore(labels_true: object, labels_pred: object) -> tuple[float, float, float]:
    """Pairwise precision, recall and F-score over unordered pairs of items.

    A pair is a true positive when both items share a predicted cluster and a true class.
    precision = TP / (pairs sharing a predicted cluster), recall = TP / (pairs sharing a class),
    counted by scikit-learn's pair_confusion_matrix. With no predicted pairs (all singletons)
    precision is 1.0 (no pair is wrongly joined); with no true pairs recall is 1.0.

    Args:
        labels_true, labels_pred: [N] integer labelings.

    Returns (precision, recall, f) as Python floats.
    """
    truth, pred = _labelings(labels_true, labels_pred)
    # [[different in both, same cluster only], [same class only, same in both]], ordered pairs.
    (_, pred_only), (true_only, both) = pair_confusion_matrix(truth, pred).tolist()
    tp, pred_pairs, true_pairs = both // 2, (both + pred_only) // 2, (both + true_only) // 2
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    return float(precision), float(recall), _fscore(precision, recall)


def bcubed_fscore(labels_true: object, labels_pred: object) -> tuple[float, float, float]:
    """BCubed precision, recall and F-score (per-item averages).

    For item x with class C(x) and cluster Ĉ(x): precision(x) = |C(x) ∩ Ĉ(x)| / |Ĉ(x)|,
    recall(x) = |C(x) ∩ Ĉ(x)| / |C(x)|; both are averaged over items, i.e. with the contingency
    counts n_ij = |C_i ∩ Ĉ_j|, class sizes a_i and cluster sizes b_j,
    precision = sum_ij n_ij^2 / b_j / N and recall = sum_ij n_ij^2 / a_i / N.

    Args:
        labels_true, labels_pred: [N] integer labelings.

    Returns (precision, recall, f) as Python floats.
    """
    truth, pred = _labelings(labels_true, labels_pred)
    table = contingency_matrix(truth, pred, sparse=True).tocoo()
    class_sizes = np.bincount(table.row, weights=table.data)
    cluster_sizes = np.bincount(table.col, weights=table.data)
    squared = table.data.astype(np.float64) ** 2
    precision = float((squared / cluster_sizes[table.col]).sum() / truth.shape[0])
    recall = float((squared / class_sizes[table.row]).sum() / truth.shape[0])
    return precision, recall, _fscore(precision, recall)
