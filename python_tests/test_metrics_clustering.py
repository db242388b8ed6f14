"""hdml_ext.metrics clustering: NMI, pairwise and BCubed F against definitions and brute force."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from hdml_ext.metrics import bcubed_fscore, nmi, pairwise_fscore

labelings = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.integers(-3, 7), min_size=n, max_size=n),
    )
)


def _definition_nmi(truth, pred):
    """MI / sqrt(H(C) H(Ĉ)) from the counts, natural log; the single-cluster cases as documented."""
    n = len(truth)
    classes, clusters, cells = Counter(truth), Counter(pred), Counter(zip(truth, pred))
    if len(classes) == 1 or len(clusters) == 1:
        return 1.0 if len(classes) == len(clusters) else 0.0
    mi = sum(c / n * math.log(c * n / (classes[t] * clusters[p])) for (t, p), c in cells.items())
    h_true = -sum(a / n * math.log(a / n) for a in classes.values())
    h_pred = -sum(b / n * math.log(b / n) for b in clusters.values())
    return mi / math.sqrt(h_true * h_pred)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_nmi_matches_its_definition(pair):
    truth, pred = pair
    assert nmi(truth, pred) == pytest.approx(_definition_nmi(truth, pred), abs=1e-10)


def test_nmi_uses_the_geometric_mean():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    geometric = normalized_mutual_info_score(truth, pred, average_method="geometric")
    arithmetic = normalized_mutual_info_score(truth, pred, average_method="arithmetic")
    assert abs(geometric - arithmetic) > 1e-3
    assert nmi(truth, pred) == pytest.approx(geometric)


def test_nmi_edge_cases():
    assert nmi([3, 3, 3], [7, 7, 7]) == 1.0
    assert nmi([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    assert nmi([0, 1, 2, 3], [5, 5, 5, 5]) == 0.0
    assert nmi([0, 0, 1, 1], [9, 9, 4, 4]) == pytest.approx(1.0)
    assert isinstance(nmi(np.array([0, 1]), np.array([0, 1])), float)


def test_nmi_accepts_tensors():
    truth, pred = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 1, 1, 0, 0])
    assert nmi(truth, pred) == pytest.approx(nmi(truth.numpy(), pred.numpy()))


def _brute_pairwise(truth, pred):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(truth)), 2):
        same_true, same_pred = truth[i] == truth[j], pred[i] == pred[j]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f


def _brute_bcubed(truth, pred):
    n = len(truth)
    precision = recall = 0.0
    for i in range(n):
        same_pred = [j for j in range(n) if pred[j] == pred[i]]
        same_true = [j for j in range(n) if truth[j] == truth[i]]
        both = sum(truth[j] == truth[i] for j in same_pred)
        precision += both / len(same_pred)
        recall += both / len(same_true)
    precision, recall = precision / n, recall / n
    return precision, recall, 2 * precision * recall / (precision + recall)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_pairwise_fscore_matches_brute_force(pair):
    truth, pred = pair
    assert pairwise_fscore(truth, pred) == pytest.approx(_brute_pairwise(truth, pred), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_bcubed_fscore_matches_brute_force(pair):
    truth, pred = pair
    assert bcubed_fscore(truth, pred) == pytest.approx(_brute_bcubed(truth, pred), abs=1e-12)


def test_pairwise_fscore_hand_example():
    # truth {0,1,2} {3,4}; pred {0,1} {2,3,4}. Predicted pairs: (0,1) (2,3) (2,4) (3,4) -> 4;
    # true pairs: (0,1) (0,2) (1,2) (3,4) -> 4; both: (0,1) (3,4) -> 2. P = R = F = 1/2.
    assert pairwise_fscore([0, 0, 0, 1, 1], [5, 5, 6, 6, 6]) == pytest.approx((0.5, 0.5, 0.5))


def test_bcubed_fscore_hand_example():
    # Same labelings. Per item precision: 1, 1, 1/3, 2/3, 2/3 -> 11/15;
    # recall: 2/3, 2/3, 1/3, 1, 1 -> 11/15.
    assert bcubed_fscore([0, 0, 0, 1, 1], [5, 5, 6, 6, 6]) == pytest.approx((11 / 15, 11 / 15, 11 / 15))


def test_pairwise_fscore_all_singletons():
    assert pairwise_fscore([0, 0, 1], [0, 1, 2]) == (1.0, 0.0, 0.0)
    assert pairwise_fscore([0, 1, 2], [0, 1, 2]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_length_mismatch(metric):
    with pytest.raises(ValueError, match="labels_true and labels_pred should have the same length"):
        metric([0, 1, 1], [0, 1])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_empty_input(metric):
    with pytest.raises(ValueError, match="labels_true should not be empty"):
        metric([], [])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_2d_labels(metric):
    with pytest.raises(ValueError, match="labels_pred should be 1-D"):
        metric([0, 1], [[0, 1]])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_float_labels(metric):
    with pytest.raises(TypeError, match="labels_true should hold integers"):
        metric([0.5, 1.0], [0, 1])
