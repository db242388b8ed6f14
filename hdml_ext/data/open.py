"""Open a data set by kind: its training rows, Re-ID query / gallery, and the rows to cluster.

data = open_dataset("market1501", "/data/Market-1501", DataSettings(height=256, width=128))
data.train.rows, data.train.labels      # an image Dataset and [N] int64 classes 0..C-1
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .digit_instances import load_digit_instances_reid
from .digits import IMAGENET_MEAN, IMAGENET_STD, load_digits_reid
from .face_bin import read_bin_meta
from .features import read_features, read_labels
from .image_dataset import ImageDataset
from .image_folder import read_image_folder
from .records import ReIDRecord, TensorSplits
from .reid import read_dukemtmc, read_market1501
from .rows import RowSource

#: Every data set kind, with what --root (and --labels / --dim) name for it.
DATASET_KINDS = {
    "market1501": "Market-1501 folder (bounding_box_train/, query/, bounding_box_test/)",
    "dukemtmc": "DukeMTMC-reID folder (same layout)",
    "image-folder": "one sub-folder of images per identity",
    "digit-instances": "open-set: each scikit-learn digit image an identity in augmented views (no --root)",
    "digits": "scikit-learn's digits, embedded, closed-set (no --root)",
    "features": ".npy feature matrix [N, D] (--root), labels from --labels",
    "bin": "raw float32 .bin features [N, --dim] (--root), labels from a .meta file (--labels)",
}


@dataclass
class DataSettings:
    """How images are read (height x width pixels, DataLoader workers) and the embedded data sets
    are made: seed and train_fraction (both), query_fraction and num_cameras (digits),
    max_identities (digit-instances: how many source images become identities; None: all)."""

    height: int = 256
    width: int = 128
    seed: int = 0
    train_fraction: float = 0.5
    query_fraction: float = 0.2
    num_cameras: int = 6
    num_workers: int = 0
    max_identities: int | None = None


def input_pipeline(settings: DataSettings) -> dict:
    """How `open_dataset` reads images with these settings: {"height", "width"} (pixels after
    resizing) and the per-channel normalisation {"mean", "std"} (ImageNet's). Checkpoints record
    it so that evaluation reads images the way training did."""
    return {
        "height": settings.height,
        "width": settings.width,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


class DatasetError(ValueError):
    """A data set that cannot be opened; `argument` names the argument at fault (root, labels, dim)."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True)
class DataSplit:
    """One split of a data set: rows (an image Dataset, images [N, 3, H, W] or features [N, D]),
    labels [N] int64 (None when unknown), camids [N] int64 (Re-ID splits only)."""

    rows: RowSource
    labels: Tensor | None
    camids: Tensor | None = None


@dataclass(frozen=True)
class OpenedDataset:
    """A data set's splits. input_kind: "images" or "features" (`hdml_ext.nn` models' input_kind).
    train: the rows to train on, labels relabelled 0..num_classes-1 (None for unlabelled features).
    query, gallery: the Re-ID splits (None for kinds without them). held_out: the rows to cluster
    (query + gallery where the kind has them, else every row)."""

    input_kind: str
    train: DataSplit
    query: DataSplit | None
    gallery: DataSplit | None
    held_out: DataSplit

    @property
    def num_classes(self) -> int:
        """Classes of the training labels (0 when they are unknown)."""
        labels = self.train.labels
        return 0 if labels is None or labels.numel() == 0 else int(labels.max()) + 1


def open_dataset(
    kind: str,
    root: str | os.PathLike | None,
    settings: DataSettings,
    *,
    labels: str | os.PathLike | None = None,
    dim: int | None = None,
) -> OpenedDataset:
    """Open the data set of `kind` (a `DATASET_KINDS` key) at `root`.

    settings: image size and the digits split. labels: the labels file of features (.npy or
    text; optional) or bin (.meta). dim: the feature width of a .bin file.
    Raises DatasetError naming the argument at fault.
    """
    if kind not in DATASET_KINDS:
        raise DatasetError("dataset", f"unknown kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}")
    if kind in ("digits", "digit-instances"):
        for argument, value in (("root", root), ("labels", labels), ("dim", dim)):
            if value is not None:
                message = f"the {kind} data set is embedded and takes no --{argument}, got {value!r}"
                raise DatasetError(argument, message)
        return _embedded(kind, settings)
    if kind in ("features", "bin"):
        return _features(kind, _existing(kind, root), labels, dim)
    folder = _existing(kind, root, folder=True)
    try:
        if kind == "image-folder":
            records, _ = read_image_folder(folder)
            everything = _image_rows(records, settings, [r.label for r in records])
            return OpenedDataset("images", _relabelled(everything), None, None, everything)
        splits = (read_market1501 if kind == "market1501" else read_dukemtmc)(folder)
    except (OSError, ValueError) as error:
        raise DatasetError("root", str(error)) from error
    train = _relabelled(_image_rows(splits.train, settings, [r.label for r in splits.train]))
    query, gallery = (_reid_rows(part, settings) for part in (splits.query, splits.gallery))
    held_out = _reid_rows(splits.query + splits.gallery, settings)
    return OpenedDataset("images", train, query, gallery, held_out)


def _existing(kind: str, root: str | os.PathLike | None, *, folder: bool = False) -> str:
    if root is None:
        raise DatasetError("root", f"is required with the {kind} data set")
    path = os.fspath(root)
    if not (os.path.isdir(path) if folder else os.path.exists(path)):
        raise DatasetError("root", f"{'folder' if folder else 'path'} {path!r} does not exist")
    return path


def _relabelled(rows: DataSplit) -> DataSplit:
    """`rows` with labels mapped to 0..C-1 (sorted order) for training."""
    if rows.labels is None:
        return rows
    return DataSplit(rows.rows, torch.unique(rows.labels, return_inverse=True)[1], rows.camids)


def _image_rows(records: list, settings: DataSettings, labels: list[int]) -> DataSplit:
    size = (settings.height, settings.width)
    return DataSplit(ImageDataset.from_records(records, size=size), torch.tensor(labels))


def _reid_rows(records: list[ReIDRecord], settings: DataSettings) -> DataSplit:
    """A Re-ID evaluation split: labels are the identities (pid), with the cameras."""
    rows = _image_rows(records, settings, [r.pid for r in records])
    return DataSplit(rows.rows, rows.labels, torch.tensor([r.camid for r in records]))


def load_embedded_splits(kind: str, settings: DataSettings) -> TensorSplits:
    """The train / query / gallery of an embedded data set at settings.height x settings.width:
    "digits" (closed-set, `load_digits_reid`: seed, train_fraction, query_fraction, num_cameras)
    or "digit-instances" (open-set, `load_digit_instances_reid`: seed, train_fraction,
    max_identities)."""
    common = {"height": settings.height, "width": settings.width, "seed": settings.seed,
              "train_fraction": settings.train_fraction}  # fmt: skip
    if kind == "digits":
        return load_digits_reid(
            **common, query_fraction=settings.query_fraction, num_cameras=settings.num_cameras
        )
    if kind == "digit-instances":
        return load_digit_instances_reid(**common, max_identities=settings.max_identities)
    raise DatasetError("dataset", f"should be 'digits' or 'digit-instances' (embedded), got {kind!r}")


def _embedded(kind: str, settings: DataSettings) -> OpenedDataset:
    """The digits (closed-set) or digit-instances (open-set), made in memory."""
    splits = load_embedded_splits(kind, settings)
    query = DataSplit(splits.query.images, splits.query.labels, splits.query.camids)
    gallery = DataSplit(splits.gallery.images, splits.gallery.labels, splits.gallery.camids)
    held_out = DataSplit(
        torch.cat([splits.query.images, splits.gallery.images]),
        torch.cat([splits.query.labels, splits.gallery.labels]),
    )
    train = _relabelled(DataSplit(splits.train.images, splits.train.labels))
    return OpenedDataset("images", train, query, gallery, held_out)


def _features(kind: str, path: str, labels: str | os.PathLike | None, dim: int | None) -> OpenedDataset:
    if labels is not None and not os.path.exists(labels):
        raise DatasetError("labels", f"path {os.fspath(labels)!r} does not exist")
    if kind == "bin" and (dim is None or dim < 1):
        raise DatasetError("dim", f"should be the positive feature width of the .bin file, got {dim}")
    if kind == "features" and dim is not None:
        message = f"is the width of a .bin file (--dataset bin); a .npy records its own, got {dim}"
        raise DatasetError("dim", message)
    try:
        found = read_features(path) if kind == "features" else read_bin_meta(path, None, dim)
    except (OSError, ValueError) as error:
        raise DatasetError("root", str(error)) from error
    _check_finite(path, found.features)
    features = torch.from_numpy(np.ascontiguousarray(found.features, dtype=np.float32))
    truth = None if labels is None else _labels(labels, path, features.shape[0])
    everything = DataSplit(features, truth)
    return OpenedDataset("features", _relabelled(everything), None, None, everything)


def _check_finite(path: str, features: np.ndarray) -> None:
    """DatasetError naming --root when a feature row holds NaN or Inf."""
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad.size:
        raise DatasetError(
            "root",
            f"features should be finite, but {bad.size} of the {features.shape[0]} rows of {path} hold "
            f"NaN or Inf (first: row {bad[0]})",
        )


def _labels(labels: str | os.PathLike, path: str, count: int) -> Tensor:
    """The labels file's [count] int64 labels; DatasetError naming --labels otherwise."""
    try:
        found = read_labels(labels)
    except (OSError, ValueError) as error:
        raise DatasetError("labels", str(error)) from error
    if found.shape[0] != count:
        raise DatasetError(
            "labels",
            f"should hold one label per feature row: {path} holds {count} rows, "
            f"{os.fspath(labels)} holds {found.shape[0]} labels",
        )
    return torch.from_numpy(np.asarray(found, dtype=np.int64))
