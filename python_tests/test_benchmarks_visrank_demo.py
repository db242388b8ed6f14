"""benchmarks/visrank_demo.py: pictures from a demo run folder (an untrained model stands in for
the trained one), and a clear message when the run is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import visrank_demo

from hdml_ext.demo.config import demo_settings
from hdml_ext.demo.splits import load_demo_splits
from hdml_ext.engine import atomic_save, dump_settings
from hdml_ext.engine.checkpoint import model_record
from hdml_ext.engine.models import new_model


def test_pictures_of_a_demo_run(tmp_path, capsys):
    settings = demo_settings(quick=True)
    (tmp_path / "settings.yaml").write_text(dump_settings(settings), encoding="utf-8")
    torch.manual_seed(0)
    model = new_model(settings.model, num_classes=load_demo_splits(settings.data).num_fit_classes)
    atomic_save(model_record(model), tmp_path / "hdml" / "model.pt")

    assert visrank_demo.main(["--run", str(tmp_path), "--out", str(tmp_path / "pics"), "--count", "2"]) == 0

    pictures = sorted((tmp_path / "pics").glob("*.png"))
    assert len(pictures) == 2
    assert all(Image.open(p).mode == "RGB" for p in pictures)
    assert capsys.readouterr().out.count("wrote ") == 2


def test_missing_run_is_named(tmp_path, capsys):
    assert visrank_demo.main(["--run", str(tmp_path / "none")]) == 2
    assert "hdml demo --out" in capsys.readouterr().err
