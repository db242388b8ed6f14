"""The model registry: the name a checkpoint records for each model class, and the model a
(name, config) pair rebuilds. Code that stores or rebuilds models goes through it, never
through a class's `__name__`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .hdml import HDML, HDMLOnFeatures

#: Every model class by the name checkpoints record ("model_class").
MODELS: dict[str, type[nn.Module]] = {"HDML": HDML, "HDMLOnFeatures": HDMLOnFeatures}


def model_name(model: nn.Module) -> str:
    """The registry name of `model`'s class; TypeError for a model the registry does not hold."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise TypeError(f"model should be one of hdml_ext.nn.MODELS ({', '.join(MODELS)}), "
                    f"got {type(model).__name__}")


def model_from_config(name: str, config: Mapping[str, Any]) -> nn.Module:
    """A new model of registry class `name` built from its `to_config()` dict (fresh weights)."""
    if name not in MODELS:
        raise ValueError(f"model class should be one of {', '.join(MODELS)}, got {name!r}")
    return MODELS[name].from_config(config)  # type: ignore[attr-defined]
