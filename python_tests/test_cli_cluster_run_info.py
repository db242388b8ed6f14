"""`hdml cluster` records what it ran (issue 22 items 4, 5, 8): run_info.json, with or without
true labels, holds the method's info (whether propagation converged) and the kNN backend, its
reason, parameters and sampled recall; metrics.json holds the same under "clustering"; a
cluster.k other than the model's is refused before the data are read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hdml_ext.cli import main

SETTINGS = ["--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
            "--set", "train.device=cpu", "--set", "cluster.device=cpu", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 6)
    np.save(root / "f.npy", (rng.normal(size=(18, 5)) + 4 * truth[:, None]).astype(np.float32))
    np.save(root / "y.npy", truth)
    features = ["--dataset", "features", "--root", str(root / "f.npy")]
    assert main(["train", *features, "--labels", str(root / "y.npy"), "--out", str(root / "run"),
                 *SETTINGS]) == 0  # fmt: skip
    return root, features


@pytest.mark.parametrize("labelled", [False, True])
def test_cluster_writes_run_info_with_the_knn_backend_and_propagation_info(trained, tmp_path, labelled):
    root, features = trained
    given = ["--labels", str(root / "y.npy")] if labelled else []
    argv = ["cluster", "--checkpoint", str(root / "run" / "model.pt"), *features, *given]
    assert main([*argv, "--out", str(tmp_path), *SETTINGS, "--set", "cluster.method=propagation"]) == 0
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["rows"] == 18 and info["k"] == 3 and info["true_labels"] is labelled
    assert info["method"] == "propagation" and isinstance(info["converged"], bool)
    assert {"iterations", "num_oversized", "final_threshold"} <= set(info)
    knn = info["knn"]
    assert knn["backend"] == "exact" and knn["reason"].startswith("auto: N^2 D")
    assert knn["params"]["sample_recall"] == 1.0 and knn["params"]["auto"]["exact_limit"] > 0
    assert (tmp_path / "metrics.json").exists() is labelled
    if labelled:
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["clustering"] == info and 0.0 <= metrics["nmi"] <= 1.0


def test_cluster_refuses_another_k_before_reading_the_data(trained, tmp_path, monkeypatch, capsys):
    root, features = trained
    monkeypatch.setattr("hdml_ext.cli.cluster.dataset_of", lambda *a: pytest.fail("read the data"))
    argv = ["cluster", "--checkpoint", str(root / "run" / "model.pt"), *features, "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, *SETTINGS, "--set", "cluster.k=4"])
    assert stopped.value.code == 2
    assert "cluster.k = 4 differs from the model's k = 3" in capsys.readouterr().err
