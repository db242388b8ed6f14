"""Settings through the `hdml` command: typed values, one-line errors with exit code 2, and the
cluster.backend setting."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from hdml_ext.cli import main


def test_exponent_lr_is_a_float(capsys):
    assert main(["train", "--set", "train.lr=1e-3", "--print-config"]) == 0
    lr = yaml.safe_load(capsys.readouterr().out)["train"]["lr"]
    assert lr == 1e-3 and isinstance(lr, float)


def test_bad_value_is_one_line_naming_key_type_and_value():
    done = subprocess.run(
        [sys.executable, "-m", "hdml_ext.cli", "cluster", "--set", "eval.max_rank=ten", "--print-config"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "hdml cluster: error: argument --set: eval.max_rank should be an int, got 'ten'"


@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    np.save(root / "f.npy", (rng.normal(size=(18, 5)) + 4 * labels[:, None]).astype(np.float32))
    np.save(root / "y.npy", labels)
    data = ["--dataset", "features", "--root", str(root / "f.npy"), "--labels", str(root / "y.npy")]
    settings = ["--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
                "--set", "train.device=cpu", "--set", "cluster.device=cpu"]  # fmt: skip
    assert main(["train", *data, "--out", str(root / "run"), "--quiet", *settings]) == 0
    return root, ["cluster", "--checkpoint", str(root / "run" / "model.pt"), *data, "--quiet", *settings]


@pytest.mark.parametrize("backend", ["exact", "faiss-flat"])
def test_cluster_backend_setting(features_run, backend):
    root, argv = features_run
    out = root / backend
    assert main([*argv, "--out", str(out), "--set", f"cluster.backend={backend}"]) == 0
    assert np.load(out / "labels.npy").shape == (18,)


def test_cluster_backend_is_checked(features_run, capsys):
    root, argv = features_run
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(root / "bad"), "--set", "cluster.backend=annoy"])
    assert exit_info.value.code == 2
    assert "cluster.backend should be one of auto, exact, ivf, faiss-flat" in capsys.readouterr().err
    assert not (root / "bad").exists()
