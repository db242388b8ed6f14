"""`hdml train` and the backbone's start: model.weights=imagenet without network is one clear
usage error, a local torchvision state dict is taken, and training HA-Net from random weights on
a real data set (not the embedded ones) warns once that the paper assumes an ImageNet start."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision.models as tvm

from hdml_ext.cli import main
from hdml_ext.cli.train import RANDOM_START_WARNING

TINY = [
    "--set", "data.height=8", "--set", "data.width=8", "--set", "model.backbone=resnet18",
    "--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "model.nfe_stages=[2]",
    "--set", "train.epochs=1", "--set", "train.milestones=[]", "--set", "train.identities_per_batch=3",
    "--set", "train.focus_per_identity=4", "--set", "train.device=cpu", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """3 identities of 5 random 8x8 PNGs each."""
    from PIL import Image

    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for identity in range(3):
        (root / f"id{identity}").mkdir()
        for n in range(5):
            pixels = (rng.random((8, 8, 3)) * 80 + 60 * identity).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"id{identity}" / f"{n}.png")
    return root


def test_imagenet_without_network_is_one_usage_line(tmp_path, capsys, monkeypatch):
    def no_network(url, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "run"), *TINY,
            "--set", "model.weights=imagenet"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1, errors
    assert "model.weights=imagenet" in errors[0] and "--set model.weights=/path/to/resnet18-" in errors[0]
    assert not (tmp_path / "run").exists()


def test_random_start_on_a_real_data_set_warns_once(image_folder, tmp_path, capsys):
    argv = ["train", "--dataset", "image-folder", "--root", str(image_folder), "--out", str(tmp_path / "run")]
    assert main([*argv, *TINY]) == 0
    assert capsys.readouterr().err.count(RANDOM_START_WARNING) == 1
    assert "ImageNet start" in RANDOM_START_WARNING and "model.weights=imagenet" in RANDOM_START_WARNING


def test_a_local_state_dict_starts_training_without_the_warning(image_folder, tmp_path, capsys):
    path = tmp_path / "resnet18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    argv = ["train", "--dataset", "image-folder", "--root", str(image_folder), "--out", str(tmp_path / "run")]
    assert main([*argv, *TINY, "--set", f"model.weights={path}"]) == 0
    assert RANDOM_START_WARNING not in capsys.readouterr().err


def test_embedded_data_sets_train_from_random_weights_without_the_warning(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "run"), *TINY,
            "--set", "data.train_fraction=0.1", "--set", "train.identities_per_batch=5"]  # fmt: skip
    assert main(argv) == 0
    assert RANDOM_START_WARNING not in capsys.readouterr().err
