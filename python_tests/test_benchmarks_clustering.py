"""benchmarks/bench_clustering.py: parameters are chosen on the validation view only, the test
sizes nest, and a tiny run writes every method's row at every size."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_clustering as bench


def _view(labels: np.ndarray) -> bench.View:
    embeddings = torch.from_numpy(np.eye(labels.size, dtype=np.float32))
    return bench.View(embeddings, embeddings.numpy(), embeddings, labels, None, None, k=2)


def test_grid_parameters_come_from_the_validation_view():
    # Validation holds two pairs: singletons score (0.707 + 0 + 0.667) / 3 there, one cluster
    # (0 + 0.5 + 0.667) / 3. On the test view (one identity) one cluster would be exact.
    val, test = _view(np.array([0, 0, 1, 1])), _view(np.zeros(4, dtype=np.int64))
    seen = []

    def run(view, params):
        seen.append("val" if view is val else "test")
        return np.zeros(view.size, dtype=np.int64) if params["joined"] else np.arange(view.size)

    method = bench.Method("fake", "joined in (False, True)", run, grid=({"joined": True}, {"joined": False}))
    params, metrics = bench.choose_on_validation(method, val)
    assert seen == ["val", "val"] and params == {"joined": False}
    assert metrics["nmi"] == pytest.approx(2**-0.5) and metrics["bcubed_f"] == pytest.approx(2 / 3)
    assert bench.clustering_metrics(test.labels, run(test, {"joined": True}))["nmi"] == 1.0
    assert bench.choose_on_validation(replace(method, oracle=lambda view: {}), val) == ({}, None)


def test_subsets_nest_and_hold_whole_identities():
    labels = np.repeat(np.arange(20), 3)
    quarter, half, whole = bench.test_subsets(labels, [0.25, 0.5, 1.0])
    assert [np.unique(labels[rows]).size for rows in (quarter, half, whole)] == [5, 10, 20]
    assert set(quarter) <= set(half) <= set(whole) and whole.size == 60
    assert all(np.bincount(labels[rows])[np.unique(labels[rows])].min() == 3 for rows in (quarter, half))


@pytest.mark.slow
def test_tiny_run_writes_every_method_at_every_size(tmp_path):
    assert bench.main(["--quick", "--seeds", "0", "--sizes", "0.5", "1.0", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert {(row["method"], row["share"]) for row in rows} == {(name, share) for name in bench.METHODS
                                                               for share in (0.5, 1.0)}
    for row in rows:
        assert 0 <= row["nmi"] <= 1 and 0 <= row["pairwise_f"] <= 1 and 0 <= row["bcubed_f"] <= 1
        assert (row["validation"] is None) == row["oracle"] == (row["method"] == "kmeans_true_k")
    oracle = [row for row in rows if row["oracle"]]
    assert all(row["num_clusters"] == row["identities"] for row in oracle)
    table = (tmp_path / "table.md").read_text()
    assert "K-Means told the true K (oracle)" in table and table.count("### ") == 2
    assert (tmp_path / "clustering.png").stat().st_size > 0
