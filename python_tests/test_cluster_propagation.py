"""hdml_ext.cluster.propagation: union-find components and pseudo-label propagation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from hdml_ext.cluster.propagation import connected_components, propagate_edges, propagate_knn


def _reference(num_nodes, src, dst):
    """scipy's components, renumbered by first appearance (the contract of ours)."""
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(num_nodes, num_nodes))
    _, labels = scipy_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def _refines(fine, coarse):
    """Every cluster of `fine` lies inside one cluster of `coarse`."""
    pairs = np.unique(np.stack([fine, coarse]), axis=1)
    return np.unique(pairs[0]).size == pairs.shape[1]


graphs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0, 1)), max_size=3 * n),
    )
)


def _arrays(edges):
    if not edges:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    src, dst, score = zip(*edges)
    return np.array(src), np.array(dst), np.array(score)


@settings(max_examples=80, deadline=None)
@given(graphs)
def test_connected_components_match_scipy(graph):
    num_nodes, edges = graph
    src, dst, _ = _arrays(edges)
    labels = connected_components(num_nodes, src, dst)
    assert labels.dtype == np.int64 and labels.shape == (num_nodes,)
    np.testing.assert_array_equal(labels, _reference(num_nodes, src, dst))


def test_connected_components_long_shuffled_path():
    order = np.random.default_rng(0).permutation(5000)
    labels = connected_components(5000, order[:-1], order[1:])
    assert np.all(labels == 0)


@settings(max_examples=60, deadline=None)
@given(graphs, st.floats(0, 1))
def test_without_size_limit_clusters_are_thresholded_components(graph, threshold):
    num_nodes, edges = graph
    src, dst, score = _arrays(edges)
    labels, info = propagate_edges(num_nodes, src, dst, score, threshold=threshold, max_size=None)
    keep = score >= threshold
    np.testing.assert_array_equal(labels, _reference(num_nodes, src[keep], dst[keep]))
    assert info["iterations"] == 1 and info["num_clusters"] == labels.max() + 1


@settings(max_examples=60, deadline=None)
@given(graphs, st.floats(0, 1), st.integers(1, 6))
def test_size_limit_is_respected_and_refines_components(graph, threshold, max_size):
    num_nodes, edges = graph
    src, dst, score = _arrays(edges)
    score = np.minimum(score, 0.999)  # an edge of score 1 can never be cut
    labels, info = propagate_edges(
        num_nodes, src, dst, score, threshold=threshold, max_size=max_size, step=0.3, max_iter=100
    )
    assert info["converged"]
    assert np.bincount(labels).max() <= max_size
    keep = score >= threshold
    assert _refines(labels, _reference(num_nodes, src[keep], dst[keep]))
    # Contiguous labels numbered by first appearance.
    _, first = np.unique(labels, return_index=True)
    assert np.all(np.diff(first) > 0) and labels.max() + 1 == info["num_clusters"]


@settings(max_examples=40, deadline=None)
@given(graphs, st.floats(0, 1), st.floats(0, 1))
def test_higher_threshold_refines_clusters(graph, t1, t2):
    num_nodes, edges = graph
    src, dst, score = _arrays(edges)
    low, high = min(t1, t2), max(t1, t2)
    coarse, _ = propagate_edges(num_nodes, src, dst, score, threshold=low, max_size=None)
    fine, _ = propagate_edges(num_nodes, src, dst, score, threshold=high, max_size=None)
    assert _refines(fine, coarse)
    assert fine.max() >= coarse.max()


# Hand example. Chain 0-1-2-3-4-5 with scores 0.9, 0.95, 0.6, 0.97, 0.92; nodes 6-7 joined at
# 0.55; node 8 has no edge. threshold 0.5, step 0.5:
#   pass 1 (th 0.5):    {0..5} (6 nodes), {6, 7}, {8}
#   pass 2 (th 0.75):   0.6 is cut -> {0, 1, 2}, {3, 4, 5}
#   pass 3 (th 0.875):  nothing more is cut
#   pass 4 (th 0.9375): 0.9 and 0.92 are cut -> {0}, {1, 2}, {3, 4}, {5}
HAND_SRC = np.array([0, 1, 2, 3, 4, 6])
HAND_DST = np.array([1, 2, 3, 4, 5, 7])
HAND_SCORE = np.array([0.9, 0.95, 0.6, 0.97, 0.92, 0.55])


def test_hand_example_split_once():
    labels, info = propagate_edges(9, HAND_SRC, HAND_DST, HAND_SCORE, threshold=0.5, max_size=3, step=0.5)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3]
    assert info == {
        "iterations": 2,
        "num_clusters": 4,
        "num_resplit_nodes": 6,
        "num_oversized": 0,
        "converged": True,
        "final_threshold": 0.75,
    }


def test_hand_example_split_until_small():
    labels, info = propagate_edges(9, HAND_SRC, HAND_DST, HAND_SCORE, threshold=0.5, max_size=2, step=0.5)
    assert labels.tolist() == [0, 1, 1, 2, 2, 3, 4, 4, 5]
    assert info["iterations"] == 4 and info["final_threshold"] == pytest.approx(0.9375)
    assert info["converged"]


def test_hand_example_stops_at_max_iter():
    labels, info = propagate_edges(
        9, HAND_SRC, HAND_DST, HAND_SCORE, threshold=0.5, max_size=2, step=0.5, max_iter=2
    )
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3]  # the size-3 clusters are kept
    assert info["iterations"] == 2 and info["num_oversized"] == 2 and not info["converged"]


def test_unbreakable_component_is_kept():
    src, dst, score = np.array([0, 1, 2]), np.array([1, 2, 3]), np.ones(3)
    labels, info = propagate_edges(4, src, dst, score, threshold=0.5, max_size=2, max_iter=5)
    assert labels.tolist() == [0, 0, 0, 0]
    assert info["iterations"] == 5 and info["num_oversized"] == 1 and not info["converged"]


def test_knn_form_matches_edge_form():
    rng = np.random.default_rng(0)
    nbr = rng.integers(0, 30, size=(30, 4))
    nbr[3, 2] = -1  # a missing neighbour
    score = rng.random((30, 4))
    labels, info = propagate_knn(nbr, score, threshold=0.6, max_size=5, step=0.2)
    present = nbr.reshape(-1) >= 0
    src = np.repeat(np.arange(30), 4)[present]
    expected, expected_info = propagate_edges(
        30, src, nbr.reshape(-1)[present], score.reshape(-1)[present], threshold=0.6, max_size=5, step=0.2
    )
    np.testing.assert_array_equal(labels, expected)
    assert info == expected_info


def test_knn_form_accepts_tensors():
    nbr = torch.tensor([[1], [0], [3], [2]])
    score = torch.tensor([[0.9], [0.9], [0.2], [0.2]])
    labels, info = propagate_knn(nbr, score, threshold=0.5)
    assert labels.tolist() == [0, 0, 1, 2] and info["num_clusters"] == 3


def test_empty_graphs():
    assert connected_components(0, [], []).shape == (0,)
    labels, info = propagate_edges(3, [], [], [], threshold=0.5)
    assert labels.tolist() == [0, 1, 2] and info["num_clusters"] == 3
    labels, info = propagate_knn(np.zeros((0, 5), np.int64), np.zeros((0, 5)))
    assert labels.shape == (0,) and info["num_clusters"] == 0


# --- bad inputs: one test each ------------------------------------------------------------------


def test_rejects_node_id_out_of_range():
    with pytest.raises(ValueError, match=r"dst should hold node ids in \[0, 3\)"):
        connected_components(3, [0, 1], [1, 3])


def test_rejects_negative_num_nodes():
    with pytest.raises(ValueError, match="num_nodes should be >= 0"):
        connected_components(-1, [], [])


def test_rejects_src_dst_length_mismatch():
    with pytest.raises(ValueError, match="src and dst should have the same length"):
        connected_components(3, [0, 1], [1])


def test_rejects_float_src():
    with pytest.raises(TypeError, match="src should hold integers"):
        connected_components(3, [0.0, 1.0], [1, 2])


def test_rejects_score_length_mismatch():
    with pytest.raises(ValueError, match="src and score should have the same length"):
        propagate_edges(3, [0, 1], [1, 2], [0.5])


def test_rejects_nan_score():
    with pytest.raises(ValueError, match="score should hold no NaN"):
        propagate_edges(3, [0, 1], [1, 2], [0.5, float("nan")])


def test_rejects_bad_step():
    with pytest.raises(ValueError, match=r"step should be in \(0, 1\]"):
        propagate_edges(3, [0], [1], [0.5], step=0.0)


def test_rejects_nan_threshold():
    with pytest.raises(ValueError, match="threshold should be a finite number"):
        propagate_edges(3, [0], [1], [0.5], threshold=float("nan"))


def test_rejects_bad_max_size():
    with pytest.raises(ValueError, match="max_size should be a positive int or None"):
        propagate_edges(3, [0], [1], [0.5], max_size=0)


def test_rejects_bad_max_iter():
    with pytest.raises(ValueError, match="max_iter should be an int >= 1"):
        propagate_edges(3, [0], [1], [0.5], max_iter=0)


def test_rejects_1d_nbr_idx():
    with pytest.raises(ValueError, match="nbr_idx should be 2-D"):
        propagate_knn(np.array([1, 0]), np.array([0.5, 0.5]))


def test_rejects_score_shape_mismatch():
    with pytest.raises(ValueError, match="score should have the shape of nbr_idx"):
        propagate_knn(np.array([[1], [0]]), np.array([[0.5, 0.5], [0.5, 0.5]]))


def test_rejects_nbr_idx_out_of_range():
    with pytest.raises(ValueError, match=r"nbr_idx should hold node ids in \[0, 2\) or -1"):
        propagate_knn(np.array([[1], [-2]]), np.array([[0.5], [0.5]]))


def test_rejects_float_nbr_idx():
    with pytest.raises(TypeError, match="nbr_idx should hold integers"):
        propagate_knn(np.array([[1.0], [0.0]]), np.array([[0.5], [0.5]]))


def test_propagation_memory_grows_linearly_with_edges():
    """O(N k) memory: the peak of numpy allocations per edge stays flat as N grows 8x."""
    import tracemalloc

    per_edge = []
    for num_nodes in (5000, 40000):
        rng = np.random.default_rng(0)
        nbr = rng.integers(0, num_nodes, (num_nodes, 10))
        score = rng.random((num_nodes, 10)).astype(np.float32)
        tracemalloc.start()
        try:
            propagate_knn(nbr, score, threshold=0.5, max_size=300)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        per_edge.append(peak / nbr.size)
    assert per_edge[1] < 120, f"{per_edge[1]:.0f} bytes per edge"
    assert per_edge[1] < 1.3 * per_edge[0], per_edge
