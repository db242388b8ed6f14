"""Models built from settings: the one place that turns `ModelSettings` into a model."""

from __future__ import annotations

import dataclasses

from torch import nn

from ..nn import MODELS
from .settings import ModelSettings


def new_model(settings: ModelSettings, *, num_classes: int, feature_dim: int | None = None) -> nn.Module:
    """A new, untrained model.

    feature_dim None: `HDML` on images, with `num_classes` identities for its node head and every
    field of `settings`. A width D: `HDMLOnFeatures` on [N, D] features (the graph half; it takes
    the graph half's settings, and has no node head). Bad settings raise ValueError or
    TypeError naming the argument.
    """
    if feature_dim is None:
        return MODELS["HDML"](num_classes, **dataclasses.asdict(settings))
    return MODELS["HDMLOnFeatures"](
        feature_dim, k=settings.k, gcn_dims=settings.gcn_dims, attention=settings.attention,
        edge_input=settings.edge_input, relative_input=settings.relative_input,
        balanced_link_loss=settings.balanced_link_loss, cosine_prior=settings.cosine_prior,
        overlap_prior=settings.overlap_prior,
    )
