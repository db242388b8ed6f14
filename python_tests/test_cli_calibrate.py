"""`hdml calibrate` stores a validated clustering choice in model.pt; `hdml cluster` uses it,
says so, and lets settings override it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.cli.main import main
from hdml_ext.cluster import ClusterConfig, calibrate, cluster_edges, link_edges
from hdml_ext.engine.checkpoint import atomic_save, model_record, read_checkpoint
from hdml_ext.engine.models import new_model
from hdml_ext.engine.settings import ModelSettings


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 6)
    features = (rng.normal(size=(48, 5)) + 2 * rng.normal(size=(8, 5))[labels]).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "y.npy", labels)
    torch.manual_seed(0)
    model = new_model(ModelSettings(k=4, gcn_dims=[8], cosine_prior=True), num_classes=0, feature_dim=5)
    for name in ("model.pt", "plain.pt"):
        atomic_save(model_record(model), tmp_path / name)
    data = ["--dataset", "features", "--root", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy"),
            "--quiet", "--set", "cluster.device=cpu"]  # fmt: skip
    return tmp_path, model.eval(), torch.from_numpy(features), labels, data


def _cluster(tmp_path, capsys, checkpoint, data, name, *settings):
    capsys.readouterr()
    out = tmp_path / name
    argv = ["cluster", "--checkpoint", str(tmp_path / checkpoint), *data, "--out", str(out), *settings]
    assert main(argv) == 0
    return np.load(out / "labels.npy"), capsys.readouterr().out


def test_calibrate_then_cluster_uses_the_stored_choice(setup, capsys, monkeypatch):
    tmp_path, model, features, labels, data = setup
    monkeypatch.setattr("hdml_ext.cluster.choice.MAX_SIZE_CANDIDATES", (10, None))  # a shorter search
    assert main(["calibrate", "--checkpoint", str(tmp_path / "model.pt"), *data]) == 0
    choice = read_checkpoint(tmp_path / "model.pt")["clustering"]
    assert choice == calibrate(model, features, labels, ClusterConfig())
    method = choice["method"]
    stored = ClusterConfig(**{key: value for key, value in choice["methods"][method].items()
                              if key != "validation"})  # fmt: skip
    edges = link_edges(model, features, 4)

    calibrated, said = _cluster(tmp_path, capsys, "model.pt", data, "calibrated")
    np.testing.assert_array_equal(calibrated, cluster_edges(48, edges, method, stored))
    assert f"stored choice ({method}" in said
    plain, said = _cluster(tmp_path, capsys, "plain.pt", data, "plain")
    np.testing.assert_array_equal(plain, cluster_edges(48, edges, "propagation", ClusterConfig()))
    assert "stores no validated choice" in said
    assert not np.array_equal(calibrated, plain)  # the choice changes the labels

    # A setting given explicitly wins over the stored choice, and the run says so.
    defaults = ["--set", "cluster.method=propagation", "--set", "cluster.threshold=0.5", "--set",
                "cluster.max_size=300", "--set", "cluster.step=0.05", "--set", "cluster.max_iter=20"]
    overridden, said = _cluster(tmp_path, capsys, "model.pt", data, "overridden", *defaults)
    np.testing.assert_array_equal(overridden, plain)
    assert "overridden by the settings: cluster.max_iter, cluster.max_size, cluster.method" in said


def test_calibrate_needs_labels(setup, capsys):
    tmp_path, _, _, _, data = setup
    unlabelled = [item for item in data if item not in ("--labels", str(tmp_path / "y.npy"))]
    with pytest.raises(SystemExit):
        main(["calibrate", "--checkpoint", str(tmp_path / "model.pt"), *unlabelled])
    assert "--labels: is required" in capsys.readouterr().err
    assert "clustering" not in read_checkpoint(tmp_path / "model.pt")
