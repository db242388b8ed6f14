"""hdml_ext.cluster.aro: approximate rank-order distances and clusters against a hand-checked case."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from hdml_ext.cluster import aro, aro_cluster, aro_distances

# Lists L_a = [a, knn]: L0 = [0, 1, 2], L1 = [1, 0, 3], L2 = [2, 3, 0], L3 = [3, 2, 1], L4 = [4, 0, 1];
# nobody lists 4.
KNN = np.array([[1, 2], [0, 3], [3, 0], [2, 1], [0, 1]])


def test_distances_by_hand():
    src, dst, distance = aro_distances(KNN)
    np.testing.assert_array_equal(src, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_array_equal(dst, KNN.reshape(-1))
    # (0, 1): L0[0..1] = {0, 1} and L1[0..1] = {1, 0} lie in each other's lists: 0 / min(1, 1).
    # (0, 2): L0[0..2] = {0, 1, 2} misses 1 in L2; L2[0..2] = {2, 3, 0} misses 3 in L0: 2 / min(2, 2).
    # (4, 0): 4 is not in L0, so d(0, 4) runs over all of L0 = {0, 1, 2} (2 not in L4) and the
    # denominator is O_4(0) = 1: (1 + 1) / 1. (4, 1): {4, 0, 1} misses 4; L1 misses 3: 2 / 2.
    np.testing.assert_allclose(distance, [0, 1, 0, 1, 0, 1, 0, 1, 2, 1])


def test_clusters_merge_pairs_below_the_threshold_transitively():
    np.testing.assert_array_equal(aro_cluster(KNN, 0.5), [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(aro_cluster(KNN, 1.0), [0, 0, 1, 1, 2])  # strictly below
    np.testing.assert_array_equal(aro_cluster(KNN, 1.5), [0, 0, 0, 0, 0])  # (4, 1) at 1 joins 4


def test_chunked_lookup_matches_one_chunk(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4))
    order = np.argsort(((features[:, None] - features[None]) ** 2).sum(-1), axis=1)[:, 1:6]
    whole = aro_distances(order)[2]
    # The package exports the function `aro`, which hides the module of that name.
    monkeypatch.setattr(importlib.import_module("hdml_ext.cluster.aro"), "CHUNK_EDGES", 7)
    np.testing.assert_array_equal(aro_distances(order)[2], whole)


def test_aro_on_features_finds_separated_groups():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 8)
    features = rng.normal(size=(32, 6)) * 0.05 + 10 * np.eye(6)[labels]
    predicted = aro(features, k=7, threshold=1.0)
    np.testing.assert_array_equal(predicted, labels)


@pytest.mark.parametrize(
    ("knn", "error", "needle"),
    [
        (np.array([1, 0]), ValueError, "2-D"),
        (np.array([[1.0], [0.0]]), TypeError, "integers"),
        (np.array([[1], [2]]), ValueError, "node ids in [0, 2)"),
        (np.array([[0], [0]]), ValueError, "exclude each node itself"),
    ],
)
def test_bad_tables_are_named(knn, error, needle):
    with pytest.raises(error, match="knn_idx") as raised:
        aro_distances(knn)
    assert needle in str(raised.value)


def test_bad_threshold_is_named():
    with pytest.raises(ValueError, match="threshold"):
        aro_cluster(KNN, float("nan"))
