"""Records returned by the dataset readers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ReIDRecord:
    """One image of a person Re-ID split (Market-1501 / DukeMTMC-reID layout).

    path: the image file. pid: the identity in the file name (-1 junk, 0 distractor).
    camid: the camera, 0-based (the file name's is 1-based). label: the training class,
    0..P-1 over the training pids in increasing pid order; equal to pid in query and gallery.
    """

    path: str
    label: int
    camid: int
    pid: int


@dataclass(frozen=True)
class ReIDSplits:
    """The three splits of a Re-ID dataset; num_train_pids = number of training classes."""

    train: list[ReIDRecord]
    query: list[ReIDRecord]
    gallery: list[ReIDRecord]
    num_train_pids: int


@dataclass(frozen=True)
class ImageRecord:
    """One image of an identity-per-folder tree.

    path: the image file. label: 0..L-1, the rank of its folder among the (sorted) identity
    folders holding images. camid: the camera (0 unless the reader was given one).
    identity: the folder's name.
    """

    path: str
    label: int
    camid: int
    identity: str


@dataclass(frozen=True)
class FeatureSet:
    """Pre-extracted features: features [N, D] float (a numpy memmap when read lazily),
    labels [N] int64 or None when no labels were given."""

    features: np.ndarray
    labels: np.ndarray | None


@dataclass(frozen=True)
class TensorSplit:
    """One split of an in-memory image data set.

    images: [N, 3, H, W] float32. labels: [N] int64 class. camids: [N] int64 camera.
    indices: [N] int64 rows of the source data set the images come from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    camids: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TensorSplits:
    """Train, query and gallery splits of an in-memory image data set.

    num_train_classes: train labels are 0..num_train_classes-1.
    """

    train: TensorSplit
    query: TensorSplit
    gallery: TensorSplit
    num_train_classes: int
