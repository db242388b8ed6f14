"""The demo's images: scikit-learn's digits split into fit / validation / query / gallery."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..._checks import require_fraction
from ...data import TensorSplit, TensorSplits, load_digits_splits
from .config import DemoDataSettings


@dataclass(frozen=True)
class DemoSplits:
    """splits: the digits' train / query / gallery. fit, val: the training images split into the
    rows to fit and the validation rows that choose the clustering thresholds. query, gallery:
    the held-out splits, every `eval_stride`-th image kept."""

    splits: TensorSplits
    fit: TensorSplit
    val: TensorSplit
    query: TensorSplit
    gallery: TensorSplit


def load_demo_splits(data: DemoDataSettings) -> DemoSplits:
    """The digits at data.height x data.width, split as `DemoSplits` says."""
    splits = load_digits_splits(data)
    fit, val = split_validation(splits.train, data.val_fraction, data.seed)
    query, gallery = every(splits.query, data.eval_stride), every(splits.gallery, data.eval_stride)
    return DemoSplits(splits, fit, val, query, gallery)


def every(split: TensorSplit, stride: int) -> TensorSplit:
    """Every `stride`-th image of `split` (quick runs only; stride 1: the split itself)."""
    if stride == 1:
        return split
    keep = slice(None, None, stride)
    return TensorSplit(split.images[keep], split.labels[keep], split.camids[keep], split.indices[keep])


def split_validation(train: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    """(fit, validation): `fraction` of each class's training images (at least one, and at least
    one left to fit) become the validation split, which chooses the clustering thresholds."""
    require_fraction("data.val_fraction", fraction)
    rng = np.random.default_rng(seed + 1)
    labels = train.labels.numpy()
    val = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if members.size < 2:
            raise ValueError(f"class {cls} has {members.size} training image(s); a validation split needs 2")
        val.append(members[: min(max(1, round(fraction * members.size)), members.size - 1)])
    val_rows = np.sort(np.concatenate(val))
    fit_rows = np.setdiff1d(np.arange(labels.size), val_rows)

    def take(rows: np.ndarray) -> TensorSplit:
        index = torch.from_numpy(rows)
        parts = (train.images, train.labels, train.camids, train.indices)
        return TensorSplit(*(part[index] for part in parts))

    return take(fit_rows), take(val_rows)
