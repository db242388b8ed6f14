"""The model registry (hdml_ext.nn.MODELS): names, rebuilding from configs, unknown models."""

from __future__ import annotations

import pytest
import torch

from hdml_ext.nn import HDML, MODELS, HDMLOnFeatures, model_from_config, model_name


def test_registry_names_both_models():
    assert dict(MODELS) == {"HDML": HDML, "HDMLOnFeatures": HDMLOnFeatures}
    assert {cls.input_kind for cls in MODELS.values()} == {"images", "features"}


def test_model_name_and_rebuild_from_config():
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), edge_input="relative")
    name = model_name(model)
    assert name == "HDMLOnFeatures"
    rebuilt = model_from_config(name, model.to_config())
    assert type(rebuilt) is HDMLOnFeatures and rebuilt.to_config() == model.to_config()


def test_rejects_models_outside_the_registry():
    expected = r"model should be one of hdml_ext.nn.MODELS \(HDML, HDMLOnFeatures\), got Linear"
    with pytest.raises(TypeError, match=expected):
        model_name(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="model class should be one of HDML, HDMLOnFeatures, got 'GCN'"):
        model_from_config("GCN", {})
