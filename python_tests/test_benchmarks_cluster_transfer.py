"""benchmarks/bench_cluster_transfer.py on the demo's --quick settings: the second set holds no
identity of the demo's splits, every row is written, and `hdml cluster`'s row is the stored
method's; with --cli-check, the real CLI gives the Python row's figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_cluster_transfer as bench

from hdml_ext.demo import demo_settings
from hdml_ext.demo.splits import load_demo_splits
from hdml_ext.engine.checkpoint import atomic_save, model_record
from hdml_ext.engine.models import new_model


@pytest.fixture(scope="module")
def quick():
    settings = demo_settings(quick=True)
    return settings, load_demo_splits(settings.data)


@pytest.fixture
def model_path(quick, tmp_path):
    settings, demo = quick
    torch.manual_seed(0)
    model = new_model(settings.model, num_classes=demo.num_fit_classes)  # untrained: tests the pipeline
    path = tmp_path / "model.pt"
    atomic_save(model_record(model), path)
    return path


def test_second_set_keeps_only_identities_outside_the_demo(quick):
    settings, demo = quick
    second = bench.unseen_set(demo, settings, data_seed=1, max_identities=60)
    demo_ids = torch.cat([demo.fit.indices, demo.val.indices, demo.query.indices, demo.gallery.indices])
    assert not np.isin(second.labels, demo_ids.numpy()).any()
    counts = second.counts
    assert counts["kept_identities"] == np.unique(second.labels).size > 0
    assert counts["kept_rows"] == second.labels.size == second.images.shape[0]
    overlapping = counts["held_out_identities"] - counts["kept_identities"]
    assert 0 < overlapping <= counts["in_fit"] + counts["in_validation"] + counts["in_demo_test"]
    with pytest.raises(ValueError, match="the demo's own data"):
        bench.unseen_set(demo, settings, settings.data.seed, settings.data.max_identities)


def test_tiny_run_writes_every_row(model_path, tmp_path):
    out = tmp_path / "out"
    argv = ["--models", str(model_path), "--quick", "--max-identities", "60", "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads((out / "rows.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert list(rows) == [name for name, _ in bench.METHODS]
    for row in rows.values():
        assert all(0.0 <= row[key] <= 1.0 for key in ("nmi", "pairwise_f", "bcubed_f"))
    assert rows["kmeans_true_k"]["num_clusters"] == rows["kmeans_true_k"]["identities"]
    stored = report["choices"][str(model_path)]["clustering"]["method"]
    assert rows["hdml_cluster"]["nmi"] == rows[f"hdml_{stored}"]["nmi"]
    assert "stores no validated choice" in rows["hdml_uncalibrated"]["used"]
    table = (out / "table.md").read_text()
    assert table.count("### ") == 1 and "| `hdml cluster`, the model's stored choice |" in table


@pytest.mark.slow
def test_cli_reproduces_the_python_row(model_path, tmp_path):
    out = tmp_path / "out"
    argv = ["--models", str(model_path), "--quick", "--max-identities", "60", "--cli-check",
            "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads((out / "rows.json").read_text())
    python = next(row for row in report["rows"] if row["method"] == "hdml_cluster")
    check = report["cli_check"]
    assert check["labels_match"] and check["max_embedding_difference"] < 1e-4
    for key in ("nmi", "pairwise_f", "bcubed_f", "num_clusters"):
        assert check["metrics"][key] == pytest.approx(python[key])


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--models", str(tmp_path / "missing.pt")])
    with pytest.raises(SystemExit):
        bench.main(["--models", str(tmp_path / "missing.pt"), "--max-identities", "many"])
