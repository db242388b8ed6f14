"""benchmarks/diagnose_clustering.py: a validated threshold carried as a quantile keeps the
share of edges below it, and the ceiling picks the highest-NMI labelling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import diagnose_clustering as diagnose


def test_carried_threshold_keeps_the_share_of_edges_below_it():
    val = np.array([0.1, 0.2, 0.3, 0.4])  # 0.25 has half of them below it
    test = np.linspace(0.5, 0.9, 5)
    assert diagnose.carried_threshold(val, 0.25, test) == pytest.approx(0.7)
    assert diagnose.carried_threshold(val, 0.05, test) == pytest.approx(0.5)
    assert diagnose.carried_threshold(val, 1.0, test) == pytest.approx(0.9)


def test_best_nmi_takes_the_highest_nmi_labelling():
    labels = np.array([0, 0, 1, 1])
    candidates = [np.zeros(4, dtype=np.int64), np.array([0, 0, 1, 1]), np.arange(4)]
    best = diagnose.best_nmi(candidates, labels)
    assert best["nmi"] == pytest.approx(1.0) and best["num_clusters"] == 2


def test_ordered_by_score_sorts_each_rows_neighbours_by_link_score():
    src = np.repeat(np.arange(3), 2)
    dst = np.array([1, 2, 0, 2, 0, 1])
    score = np.array([0.1, 0.9, 0.5, 0.4, 0.3, 0.8])
    assert diagnose.ordered_by_score((src, dst, score), 3).tolist() == [[2, 1], [0, 2], [1, 0]]
