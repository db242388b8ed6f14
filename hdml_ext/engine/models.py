"""Building models: the one place in the engine that turns settings (`new_model`) or a
checkpoint record (`build_model`) into a model. Both go through `hdml_ext.nn.model_from_config`,
the registry's one constructor of a model class from its config dict."""

from __future__ import annotations

import dataclasses

from torch import nn

from ..nn import model_from_config
from ..nn.hdml import GRAPH_CONFIG_KEYS
from .settings import ModelSettings


def new_model(settings: ModelSettings, *, num_classes: int, feature_dim: int | None = None) -> nn.Module:
    """A new, untrained model.

    feature_dim None: `HDML` on images, with `num_classes` identities for its node head and every
    field of `settings`. A width D: `HDMLOnFeatures` on [N, D] features (the graph half; it takes
    the graph half's settings, and has no node head). Bad settings raise ValueError or
    TypeError naming the argument.
    """
    fields = dataclasses.asdict(settings)
    if feature_dim is None:
        return model_from_config("HDML", {"num_classes": num_classes, **fields})
    graph_half = {key: fields[key] for key in GRAPH_CONFIG_KEYS}
    return model_from_config("HDMLOnFeatures", {"in_dim": feature_dim, **graph_half})


def build_model(record: dict) -> nn.Module:
    """The model a checkpoint record describes (`checkpoint.read_checkpoint`: "model_class",
    "model_config", "model_state"), with its weights loaded (on the CPU)."""
    model = model_from_config(record["model_class"], record["model_config"])
    model.load_state_dict(record["model_state"])
    return model
