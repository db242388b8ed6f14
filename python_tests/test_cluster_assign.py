"""cluster.assign: new rows into an earlier clustering's clusters by the majority of their
linked old neighbours (link scores of each new row's F-Graph over the old rows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.cluster.assign import assign_to_clusters, vote
from hdml_ext.graph import build_fgraphs
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.reid.ranking import query_link_scores


def test_vote_takes_the_majority_of_the_linked_neighbours():
    labels = np.array([[4, 7, 7, 4, 7], [1, 2, 3, 1, 2], [5, 5, 5, 5, 5]])
    scores = np.array([[0.9, 0.6, 0.7, 0.8, 0.2], [0.9, 0.8, 0.5, 0.1, 0.7], [0.1, 0.2, 0.3, 0.0, 0.4]])
    cluster, joined = vote(labels, scores, threshold=0.5)
    # row 0: 4 (0.9, 0.8) and 7 (0.6, 0.7) tie at two votes; 4's summed score is larger.
    # row 1: 1 has one vote (0.9), 2 has two (0.8, 0.7), 3 one (0.5): 2 wins.
    # row 2: no neighbour reaches the threshold.
    assert cluster.tolist() == [4, 2, -1] and joined.tolist() == [True, True, False]


def test_vote_breaks_full_ties_by_the_smaller_cluster_id():
    cluster, _ = vote(np.array([[9, 3]]), np.array([[0.7, 0.7]]), threshold=0.5)
    assert cluster.tolist() == [3]


def _blobs(seed: int, per: int, centres: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centres)), per)
    rows = centres[truth] + 0.1 * rng.normal(size=(truth.size, 4))
    return torch.from_numpy(rows.astype(np.float32)), truth


def _model(k: int = 3) -> HDMLOnFeatures:
    torch.manual_seed(0)
    return HDMLOnFeatures(4, k=k, gcn_dims=(8,)).eval()


def test_scores_are_the_query_link_scores_of_each_new_rows_fgraph():
    centres = np.eye(4) * 5
    old, old_truth = _blobs(0, 6, centres)
    new, _ = _blobs(1, 2, centres)
    model = _model()
    neighbours, scores = query_link_scores(model, new, old, 3)
    ordered = scores.flatten().sort().values
    middle = float(ordered[ordered.numel() // 2 : ordered.numel() // 2 + 2].mean())  # between two scores
    for threshold in (0.0, middle, 1.1):
        result = assign_to_clusters(model, new, old, old_truth + 10, threshold=threshold)
        cluster, joined = vote(old_truth[neighbours.numpy()] + 10, scores.numpy(), threshold)
        assert np.array_equal(result.joined, joined)
        assert np.array_equal(result.labels[joined], cluster[joined])
        # unlinked rows start new clusters after the largest old id, in row order
        assert result.labels[~joined].tolist() == list(range(14, 14 + int((~joined).sum())))


def test_with_every_neighbour_voting_new_rows_join_their_blobs_cluster():
    centres = np.eye(4) * 5
    old, old_truth = _blobs(0, 6, centres)
    new, new_truth = _blobs(1, 3, centres)
    result = assign_to_clusters(_model(), new, old, old_truth * 2, threshold=0.0)
    assert result.joined.all() and np.array_equal(result.labels, new_truth * 2)


def test_a_given_old_knn_table_gives_the_same_assignment():
    centres = np.eye(4) * 5
    old, old_truth = _blobs(0, 6, centres)
    new, _ = _blobs(1, 2, centres)
    model = _model()
    knn = build_fgraphs(old, 3).knn_idx
    given = assign_to_clusters(model, new, old, old_truth, threshold=0.5, old_knn=knn)
    computed = assign_to_clusters(model, new, old, old_truth, threshold=0.5)
    assert np.array_equal(given.labels, computed.labels)


def test_rejects_bad_inputs():
    old, truth = _blobs(0, 2, np.eye(4))
    model = _model()
    with pytest.raises(ValueError, match="same width"):
        assign_to_clusters(model, torch.zeros(2, 3), old, truth)
    with pytest.raises(ValueError, match=r"old_labels should be \[G\] = \[8\] integers"):
        assign_to_clusters(model, old, old, truth[:5])
    with pytest.raises(ValueError, match="k = 2 differs from the model's k = 3"):
        assign_to_clusters(model, old, old, truth, k=2)
    with pytest.raises(ValueError, match="k should be at most G - 1 = 2"):
        assign_to_clusters(model, old, old[:3], truth[:3])


def test_batch_size_none_is_sized_for_the_device():
    """cluster.batch_size defaults to None (sized for the device); assigning takes it as it is."""
    centres = np.eye(4) * 5
    old, old_truth = _blobs(0, 6, centres)
    new, _ = _blobs(1, 2, centres)
    model = _model()
    sized = assign_to_clusters(model, new, old, old_truth, threshold=0.5, batch_size=None)
    fixed = assign_to_clusters(model, new, old, old_truth, threshold=0.5, batch_size=3)
    assert np.array_equal(sized.labels, fixed.labels)
