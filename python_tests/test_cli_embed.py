"""`hdml embed`: a trained model's features written as .npy or .bin + .meta, which `hdml cluster
--dataset features|bin` reads back unchanged (the same clusters as clustering the images)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hdml_ext.engine.embed as engine_embed
from hdml_ext.cli import main

TINY = [
    "--set", "data.height=8", "--set", "data.width=8", "--set", "data.train_fraction=0.1",
    "--set", "model.backbone=resnet18", "--set", "model.k=3", "--set", "model.gcn_dims=[8]",
    "--set", "model.nfe_stages=[2]", "--set", "train.epochs=1", "--set", "train.milestones=[]",
    "--set", "train.identities_per_batch=5", "--set", "train.focus_per_identity=4",
    "--set", "train.device=cpu", "--set", "eval.device=cpu", "--set", "cluster.device=cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_run")
    assert main(["train", "--dataset", "digits", "--out", str(out), "--quiet", *TINY]) == 0
    return str(out / "model.pt")


def test_embedded_features_and_bin_cluster_as_the_images_do(model, tmp_path, capsys):
    digits = ["--checkpoint", model, "--dataset", "digits"]
    assert main(["embed", *digits, "--out", str(tmp_path / "npy"), *TINY]) == 0
    assert "embedding held-out" in capsys.readouterr().err  # the progress bar
    assert main(["embed", *digits, "--format", "bin", "--out", str(tmp_path / "bin"), "--quiet", *TINY]) == 0
    out = capsys.readouterr().out
    features = np.load(tmp_path / "npy" / "features.npy")
    assert f"embedded {features.shape[0]} rows (held-out) into 512 features" in out
    raw = np.fromfile(tmp_path / "bin" / "features.bin", np.float32)
    assert np.array_equal(raw.reshape(-1, 512), features)
    assert (tmp_path / "npy" / "ids.txt").read_text().splitlines() == [str(i) for i in range(len(features))]

    runs = {
        "images": ["--dataset", "digits"],
        "features": ["--dataset", "features", "--root", str(tmp_path / "npy" / "features.npy"),
                     "--labels", str(tmp_path / "npy" / "labels.npy")],
        "bin": ["--dataset", "bin", "--root", str(tmp_path / "bin" / "features.bin"), "--dim", "512",
                "--labels", str(tmp_path / "bin" / "features.meta")],
    }  # fmt: skip
    for name, data in runs.items():
        argv = ["cluster", "--checkpoint", model, *data, "--out", str(tmp_path / f"c_{name}"), "--quiet"]
        assert main([*argv, *TINY]) == 0, name
    labels = {name: np.load(tmp_path / f"c_{name}" / "labels.npy") for name in runs}
    metrics = {name: json.loads((tmp_path / f"c_{name}" / "metrics.json").read_text()) for name in runs}
    assert np.array_equal(labels["features"], labels["images"])
    assert np.array_equal(labels["bin"], labels["images"])
    assert metrics["features"] == metrics["images"] == metrics["bin"]


def test_reid_splits_carry_their_cameras(model, tmp_path):
    argv = ["embed", "--checkpoint", model, "--dataset", "digits", "--split", "query", "--out", str(tmp_path)]
    assert main([*argv, "--quiet", *TINY]) == 0
    rows = (np.load(tmp_path / "features.npy").shape[0],)
    assert np.load(tmp_path / "camids.npy").shape == np.load(tmp_path / "labels.npy").shape == rows


def test_num_workers_reach_the_data_loader(model, tmp_path, monkeypatch):
    seen = []
    original = engine_embed.embed_rows

    def spy(*args, **kwargs):
        seen.append(kwargs["num_workers"])
        return original(*args, **kwargs)

    monkeypatch.setattr(engine_embed, "embed_rows", spy)
    argv = ["embed", "--checkpoint", model, "--dataset", "digits", "--out", str(tmp_path), "--quiet"]
    assert main([*argv, *TINY, "--set", "data.num_workers=2"]) == 0
    assert seen == [2]


def _fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *TINY])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_split_the_data_set_lacks_is_a_usage_error(model, tmp_path, capsys):
    from PIL import Image

    for identity in ("a", "b"):
        (tmp_path / "faces" / identity).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "faces" / identity / "0.png")
    argv = ["embed", "--checkpoint", model, "--dataset", "image-folder", "--root", str(tmp_path / "faces"),
            "--split", "query", "--out", str(tmp_path / "out")]  # fmt: skip
    assert "--split: --dataset image-folder has no query split" in _fails(capsys, argv)


def test_features_for_a_model_of_images_are_a_usage_error(model, tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.zeros((4, 512), np.float32))
    argv = ["embed", "--checkpoint", model, "--dataset", "features", "--root", str(tmp_path / "f.npy"),
            "--out", str(tmp_path / "out")]  # fmt: skip
    err = _fails(capsys, argv)
    assert "--checkpoint: the checkpoint's model takes images, --dataset features gives features" in err
