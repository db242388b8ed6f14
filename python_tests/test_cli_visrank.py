"""`hdml evaluate --visrank N`: N ranked-list PNGs beside the metrics, framed green and red."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hdml_ext.cli import main
from hdml_ext.data.digits import IMAGENET_MEAN, IMAGENET_STD
from hdml_ext.engine import atomic_save
from hdml_ext.engine.checkpoint import model_record
from hdml_ext.nn import HDML
from hdml_ext.reid.visualize import GREEN, RED, layout_for

SETTINGS = ["--set", "eval.device=cpu", "--set", "data.train_fraction=0.1", "--quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = HDML(10, backbone="resnet18", k=3, gcn_dims=[8], nfe_stages=[2])
    pipeline = {"height": 8, "width": 8, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    return atomic_save(model_record(model, pipeline), tmp_path_factory.mktemp("model") / "model.pt")


def test_visrank_writes_n_pictures_beside_the_metrics(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval" / "reid.json"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--out", str(out)]
    assert main([*argv, "--visrank", "3", *SETTINGS]) == 0
    pictures = sorted((tmp_path / "eval" / "visrank").glob("query*_pid*_cam*.png"))
    assert len(pictures) == 3
    assert "wrote 3 ranked-list pictures" in capsys.readouterr().out
    layout = layout_for((8, 8))
    for picture in pictures:
        image = np.asarray(Image.open(picture).convert("RGB"))
        assert image.shape == (layout.size(2)[1], layout.size(2)[0], 3)  # link_rerank ranking above distance
        frames = {tuple(image[layout.cell_box(row, c)[1] + 1, layout.cell_box(row, c)[0] + 1])
                  for row in (0, 1) for c in range(1, 11)}
        assert frames <= {GREEN, RED}


def test_visrank_dir_and_a_negative_count(checkpoint, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", *SETTINGS]
    assert main([*argv, "--visrank", "1", "--visrank-dir", str(tmp_path / "pics"),
                 "--set", "eval.ranking=distance"]) == 0
    [picture] = (tmp_path / "pics").glob("*.png")
    assert Image.open(picture).size == layout_for((8, 8)).size(1)  # distance alone: one row
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--visrank", "-1"])
    assert exit_info.value.code == 2
    assert "--visrank" in capsys.readouterr().err
