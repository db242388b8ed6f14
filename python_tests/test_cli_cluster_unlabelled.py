"""Bring-your-own-data edges: `hdml cluster` of features without labels writes labels.npy and
says that no metrics were computed; a Re-ID folder whose names carry no camera id is refused
with a message naming the expected pattern (data/reid.py documents why)."""

from __future__ import annotations

import numpy as np
import pytest

from hdml_ext.cli import main
from hdml_ext.data import read_market1501

SETTINGS = ["--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
            "--set", "train.device=cpu", "--set", "cluster.device=cpu", "--quiet"]  # fmt: skip


def test_cluster_without_labels_writes_labels_and_says_no_metrics(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 6)
    np.save(tmp_path / "f.npy", (rng.normal(size=(18, 5)) + 4 * truth[:, None]).astype(np.float32))
    np.save(tmp_path / "y.npy", truth)
    features = ["--dataset", "features", "--root", str(tmp_path / "f.npy")]
    assert main(["train", *features, "--labels", str(tmp_path / "y.npy"), "--out", str(tmp_path / "run"),
                 *SETTINGS]) == 0  # fmt: skip
    capsys.readouterr()
    model = str(tmp_path / "run" / "model.pt")
    assert main(["cluster", "--checkpoint", model, *features, "--out", str(tmp_path / "c"), *SETTINGS]) == 0
    out = capsys.readouterr().out
    assert np.load(tmp_path / "c" / "labels.npy").shape == (18,)
    assert not (tmp_path / "c" / "metrics.json").exists()
    assert "no metrics were computed" in out


def _market_split(root, names):
    from PIL import Image

    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (4, 8)).save(root / folder / name)


def test_reid_names_without_a_camera_are_refused_naming_the_pattern_and_the_way_out(tmp_path):
    _market_split(tmp_path, ["0001_0001.jpg", "0002_0001.jpg"])
    with pytest.raises(ValueError) as error:
        read_market1501(tmp_path)
    message = str(error.value)
    assert "'0001_0001.jpg'" in message and "bounding_box_train" in message
    assert "PPPP_cCsS_FFFFFF_NN.jpg" in message and "no camera id" in message
    assert "--dataset image-folder" in message


def test_the_cli_refuses_a_reid_folder_without_cameras_in_one_line(tmp_path, capsys):
    _market_split(tmp_path / "m", ["0001_0001.jpg"])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "market1501", "--root", str(tmp_path / "m"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "argument --root" in errors[0] and "no camera id" in errors[0]
