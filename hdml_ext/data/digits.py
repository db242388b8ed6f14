"""scikit-learn's digits (8x8 grey, 1,797 images, 10 classes) as a small, embedded Re-ID data set.

It ships with scikit-learn, so nothing is downloaded. The images are scaled up to [3, H, W],
split deterministically into train / query / gallery, and each image gets a random (seeded)
camera id so that the Market-1501 same-camera rule of `hdml_ext.metrics.rank_metrics` applies.

    from hdml_ext.data import load_digits_reid
    splits = load_digits_reid(height=32, width=16, seed=0)
    splits.train.images.shape    # [N_train, 3, 32, 16]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from .._checks import require_fraction, require_int
from .records import FeatureSet, TensorSplit, TensorSplits

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_digits_features", "load_digits_reid"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _scale_images(images: np.ndarray, height: int, width: int, normalize: bool) -> torch.Tensor:
    """[N, 8, 8] values 0..16 -> [N, 3, height, width] float32 (bilinear), optionally normalised."""
    grey = torch.from_numpy(images / 16.0).to(torch.float32).unsqueeze(1)
    grey = F.interpolate(grey, size=(height, width), mode="bilinear", align_corners=False)
    rgb = grey.expand(-1, 3, -1, -1).contiguous()
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = (rgb - mean) / std
    return rgb


def load_digits_features() -> FeatureSet:
    """The digits as flat features: features [1797, 64] float32 (values 0..16), labels [1797]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return FeatureSet(features=digits.data.astype(np.float32), labels=digits.target.astype(np.int64))


def load_digits_reid(
    *,
    height: int = 32,
    width: int = 16,
    train_fraction: float = 0.5,
    query_fraction: float = 0.2,
    num_cameras: int = 6,
    seed: int = 0,
    disjoint_classes: bool = False,
    normalize: bool = True,
) -> TensorSplits:
    """Split scikit-learn's digits into train / query / gallery image tensors.

    Args:
        height, width: size the 8x8 images are scaled to (bilinear); 3 identical channels.
        train_fraction: share of each class's images that go to train (default split), or share
            of the classes that go to train (disjoint_classes=True).
        query_fraction: share of each evaluated class's remaining images that become queries
            (at least one); the rest form the gallery.
        num_cameras: camera ids are drawn uniformly from 0..num_cameras-1, one per image.
        seed: seeds the shuffles and the cameras; the same seed gives the same splits.
        disjoint_classes: Re-ID style, train and query/gallery hold different classes.
        normalize: apply the ImageNet mean/std (as `ImageDataset` does for real images).

    Returns TensorSplits. Train labels are 0..P-1 (the digit itself unless disjoint_classes,
    where the training digits are relabelled in increasing order); query and gallery labels are
    the digits. Each split is sorted by its indices into the 1,797 source images.
    """
    from sklearn.datasets import load_digits

    height = require_int("height", height, minimum=1)
    width = require_int("width", width, minimum=1)
    num_cameras = require_int("num_cameras", num_cameras, minimum=1)
    train_fraction = require_fraction("train_fraction", train_fraction)
    query_fraction = require_fraction("query_fraction", query_fraction)
    digits = load_digits()
    targets = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    camids = rng.integers(0, num_cameras, size=targets.shape[0])
    classes = np.unique(targets)

    train_idx, query_idx, gallery_idx = [], [], []
    if disjoint_classes:
        shuffled = rng.permutation(classes)
        num_train = min(max(1, round(train_fraction * classes.size)), classes.size - 1)
        train_classes, eval_classes = np.sort(shuffled[:num_train]), np.sort(shuffled[num_train:])
        train_idx.append(np.flatnonzero(np.isin(targets, train_classes)))
    else:
        eval_classes = classes
    for cls in eval_classes:
        members = rng.permutation(np.flatnonzero(targets == cls))
        if not disjoint_classes:
            num_train = min(max(1, round(train_fraction * members.size)), members.size - 2)
            train_idx.append(members[:num_train])
            members = members[num_train:]
        num_query = min(max(1, round(query_fraction * members.size)), members.size - 1)
        query_idx.append(members[:num_query])
        gallery_idx.append(members[num_query:])

    images = _scale_images(digits.images, height, width, normalize)

    def split(parts: list[np.ndarray], relabel: bool) -> TensorSplit:
        index = np.sort(np.concatenate(parts))
        labels = targets[index]
        if relabel:
            labels = np.searchsorted(np.unique(labels), labels)
        return TensorSplit(
            images=images[torch.from_numpy(index)],
            labels=torch.from_numpy(labels.astype(np.int64)),
            camids=torch.from_numpy(camids[index].astype(np.int64)),
            indices=torch.from_numpy(index.astype(np.int64)),
        )

    train = split(train_idx, relabel=True)
    return TensorSplits(
        train=train,
        query=split(query_idx, relabel=False),
        gallery=split(gallery_idx, relabel=False),
        num_train_classes=int(train.labels.max()) + 1,
    )
