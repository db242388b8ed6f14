"""`hdml export`: a trained image model's HA-Net as an ONNX file, checked against PyTorch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from hdml_ext.cli import main
from hdml_ext.data.digits import IMAGENET_MEAN, IMAGENET_STD
from hdml_ext.engine import atomic_save
from hdml_ext.engine.checkpoint import load_model, model_record
from hdml_ext.nn import HDML, HDMLOnFeatures

_MISSING = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"ONNX export needs {', '.join(_MISSING)} (pip install 'hdml_ext[export]')"
)

HEIGHT, WIDTH = 48, 24


@pytest.mark.slow
def test_export_writes_a_file_that_onnxruntime_runs(tmp_path, capsys):
    from hdml_ext.engine.onnx_export import onnx_metadata, run_onnxruntime

    torch.manual_seed(0)
    model = HDML(4, backbone="resnet18", k=2, gcn_dims=[8], nfe_stages=(3, 4))
    pipeline = {"height": HEIGHT, "width": WIDTH, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    atomic_save(model_record(model, pipeline), tmp_path / "model.pt")
    out = tmp_path / "export" / "model.onnx"

    assert main(["export", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert f"images [N, 3, {HEIGHT}, {WIDTH}] -> embeddings [N, 1024]" in printed
    assert "max |difference|" in printed
    assert onnx_metadata(out)["input"] == pipeline
    images = torch.randn(3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        expected = load_model(tmp_path / "model.pt").embed(images).numpy()
    np.testing.assert_allclose(run_onnxruntime(out, images), expected, rtol=0, atol=1e-4)


def test_export_refuses_a_model_of_features(tmp_path, capsys):
    atomic_save(model_record(HDMLOnFeatures(4, k=2, gcn_dims=[4])), tmp_path / "model.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "HA-Net" in err, err
    assert not (tmp_path / "m.onnx").exists()


def test_export_needs_out(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpoint", str(tmp_path / "model.pt")])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err
