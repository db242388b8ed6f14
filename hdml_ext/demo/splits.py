"""The demo's images: digit-instances (open-set) or the digits (closed-set), split into fit /
validation / query / gallery."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._checks import require_fraction, require_int
from ..data import TensorSplit, load_embedded_splits
from .config import DemoDataSettings


@dataclass(frozen=True)
class DemoSplits:
    """fit: the training rows the models learn from, labels 0..num_fit_classes-1. val: training
    rows held out to choose the clustering settings (for digit-instances, whole identities that
    are not in fit; for the closed-set digits, some images of every class). query, gallery: the
    held-out Re-ID splits, every `eval_stride`-th image kept. open_set: no test identity is in
    fit or val. num_train: rows of the data set's train split (fit + val)."""

    dataset: str
    fit: TensorSplit
    val: TensorSplit
    query: TensorSplit
    gallery: TensorSplit
    num_fit_classes: int
    open_set: bool
    num_train: int

    @property
    def test_labels(self) -> np.ndarray:
        """[Q + G] identities of the held-out rows, queries first (the rows that are clustered)."""
        return torch.cat([self.query.labels, self.gallery.labels]).numpy()


def load_demo_splits(data: DemoDataSettings) -> DemoSplits:
    """The data set `data.dataset` at data.height x data.width, split as `DemoSplits` says."""
    splits = load_embedded_splits(data.dataset, data)
    if data.dataset == "digit-instances":
        fit, val = split_identities(splits.train, data.val_fraction, data.seed)
    else:
        fit, val = split_validation(splits.train, data.val_fraction, data.seed)
    query, gallery = every(splits.query, data.eval_stride), every(splits.gallery, data.eval_stride)
    return DemoSplits(
        dataset=data.dataset, fit=fit, val=val, query=query, gallery=gallery,
        num_fit_classes=int(fit.labels.max()) + 1, open_set=data.dataset == "digit-instances",
        num_train=len(splits.train),
    )  # fmt: skip


def every(split: TensorSplit, stride: int) -> TensorSplit:
    """Every `stride`-th image of `split` (quick runs only; stride 1: the split itself)."""
    if stride == 1:
        return split
    return take(split, np.arange(0, len(split), stride))


def take(split: TensorSplit, rows: np.ndarray) -> TensorSplit:
    """The rows `rows` (int64 positions) of `split`."""
    index = torch.from_numpy(rows)
    return TensorSplit(*(part[index] for part in (split.images, split.labels, split.camids, split.indices)))


def split_identities(train: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    """(fit, validation) of an open-set training split: `fraction` of its identities (at least
    one, and at least two left to fit), chosen with `seed`, become the validation split, so that
    validation, like the test split, shows identities the model never trained on. fit's labels
    are renumbered 0..P-1 in the order of the old ones; validation keeps the old labels."""
    require_fraction("data.val_fraction", fraction)
    labels = train.labels.numpy()
    identities = np.unique(labels)
    if identities.size < 3:
        raise ValueError(f"the training split should hold at least 3 identities, got {identities.size}")
    num_val = min(max(1, round(fraction * identities.size)), identities.size - 2)
    val_ids = np.random.default_rng(seed + 1).permutation(identities)[:num_val]
    in_val = np.isin(labels, val_ids)
    fit = take(train, np.flatnonzero(~in_val))
    fit_labels = torch.from_numpy(np.unique(fit.labels.numpy(), return_inverse=True)[1].astype(np.int64))
    return TensorSplit(fit.images, fit_labels, fit.camids, fit.indices), take(train, np.flatnonzero(in_val))


def split_validation(train: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    """(fit, validation) of a closed-set training split: `fraction` of each class's training
    images (at least one, and at least one left to fit) become the validation split."""
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
    return take(train, np.setdiff1d(np.arange(labels.size), val_rows)), take(train, val_rows)


def query_gallery(split: TensorSplit, queries_per_identity: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, gallery rows) int64 of a labelled split for Re-ID evaluation, as
    digit-instances lays out its test identities: each identity gives its first view from each
    of its first q cameras as queries, q = min(queries_per_identity, cameras - 1), so one camera
    keeps all its views in the gallery and every query has a cross-camera match; identities
    seen by one camera give no query. Rows keep the split's order."""
    require_int("queries_per_identity", queries_per_identity, minimum=1)
    labels, camids = split.labels.numpy(), split.camids.numpy()
    is_query = np.zeros(labels.size, dtype=bool)
    for identity in np.unique(labels):
        views = np.flatnonzero(labels == identity)
        cameras, first = np.unique(camids[views], return_index=True)
        num_queries = min(queries_per_identity, cameras.size - 1)
        is_query[views[np.sort(first)[:num_queries]]] = True
    return np.flatnonzero(is_query), np.flatnonzero(~is_query)

