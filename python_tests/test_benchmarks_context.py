"""benchmarks/bench_context.py: the unlearned neighbourhood signals against hand-checked cases,
the same-digit shares, and the synthetic identities."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_context


def _line() -> tuple[torch.Tensor, np.ndarray]:
    # Six unit vectors at angles 0, 10, 20 | 90, 100, 130 degrees: two identities of three.
    angles = torch.tensor([0.0, 10.0, 20.0, 90.0, 100.0, 130.0]).deg2rad()
    return torch.stack([angles.cos(), angles.sin()], dim=1), np.array([0, 0, 0, 1, 1, 1])


@pytest.mark.filterwarnings("ignore:Only one class is present")
def test_neighbour_signals_on_a_hand_checked_case():
    features, labels = _line()
    signals = bench_context.neighbour_signals(features, labels, k=2)
    # Each row's 2 nearest: 0 -> 1, 2; 1 -> 0, 2; 2 -> 1, 0; 3 -> 4, 5; 4 -> 3, 5; 5 -> 4, 3:
    # every edge joins one identity, so no AUC exists; with k = 3 the third neighbours cross.
    assert signals["positive_share"] == 1.0 and np.isnan(signals["cosine"])
    signals = bench_context.neighbour_signals(features, labels, k=3)
    # Third neighbours: 0 -> 3 (90 degrees), 1 -> 3 (80), 2 -> 3 (70), 3 -> 2 (70), 4 -> 2 (80),
    # 5 -> 2 (110): every third edge crosses identities, 6 of 18.
    assert signals["positive_share"] == pytest.approx(12 / 18)
    unit = torch.nn.functional.normalize(features, dim=1)
    src = np.repeat(np.arange(6), 3)
    dst = np.array([1, 2, 3, 0, 2, 3, 1, 0, 3, 4, 5, 2, 3, 5, 2, 4, 3, 2])
    cosine = (unit[src] * unit[dst]).sum(dim=1).numpy()
    assert signals["cosine"] == pytest.approx(roc_auc_score(labels[src] == labels[dst], cosine))
    # With k' = 5 every row's neighbourhood is all six rows: Jaccard 1 everywhere, AUC 0.5.
    assert signals["jaccard@5"] == pytest.approx(0.5)
    assert set(signals) >= {"centroid@10", "cosine+reciprocal@20", "cosine+jaccard@5"}


def test_fgraph_overlap_counts_neighbours_inside_the_focus_graph():
    # Rows 0-3 on a line at 0, 1, 2, 10: 2-NN 0 -> 1, 2; 1 -> 0, 2; 2 -> 1, 0; 3 -> 2, 1.
    knn_idx = torch.tensor([[1, 2], [0, 2], [1, 0], [2, 1]])
    overlap = bench_context.fgraph_overlap(knn_idx).view(4, 2)
    # F-Graph of 3 = {3, 2, 1}: 2's neighbours 1, 0 -> one inside; 1's neighbours 0, 2 -> one.
    assert overlap[3].tolist() == [0.5, 0.5]
    # F-Graph of 0 = {0, 1, 2}: every neighbour of 1 and of 2 is inside.
    assert overlap[0].tolist() == [1.0, 1.0]
    features = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    signals = bench_context.neighbour_signals(torch.cat([features, torch.ones(4, 1)], dim=1),
                                              np.array([0, 0, 0, 1]), k=2)
    assert {"overlap@2", "cosine+overlap@2/2"} <= set(signals)


def test_same_digit_shares_counts_wrong_edges_only():
    # Source rows 0 and 10 are both the digit 0 in scikit-learn's digits (target[i] = i % 10 for the
    # first rows); row 1 is a 1.
    features = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    identities = np.array([0, 10, 1, 1])
    shares = bench_context.same_digit_shares(features, identities, k=1)
    # Edges: 0 -> 10 (wrong, same digit), 10 -> 0 (wrong, same digit), 1 -> 1 (right) twice.
    assert shares["wrong_edges_same_digit"] == 1.0
    assert shares["random_pairs_same_digit"] == pytest.approx(2 / 6)


def test_synthetic_identities_are_seeded_and_sized():
    features, labels = bench_context.synthetic_identities(7, 0.1, seed=3, dim=5)
    again, again_labels = bench_context.synthetic_identities(7, 0.1, seed=3, dim=5)
    assert torch.equal(features, again) and np.array_equal(labels, again_labels)
    counts = np.bincount(labels)
    assert features.shape == (labels.size, 5) and counts.size == 7
    assert counts.min() >= 4 and counts.max() <= 30
