"""Reader for pre-extracted features: a ``.npy`` matrix [N, D] and labels [N] (``.npy`` or text).

    from hdml_ext.data import read_features
    data = read_features("feats.npy", "labels.txt")
    data.features.shape, data.labels.shape   # (N, D), (N,)
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .records import FeatureSet

__all__ = ["read_features", "read_labels"]


def _require_file(name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: expected the file {path}, but it does not exist")


def _load_npy(name: str, path: str, mmap: bool = False) -> np.ndarray:
    """np.load of a .npy file (no pickles); ValueError naming the file when it is not one."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError(
            f"{name} file {path} is not a .npy file (no NumPy header); raw float32 rows are "
            f"--dataset bin with --dim D"
        )
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read integer labels [N] from a ``.npy`` file or a text file of one integer a line.

    Raises ValueError naming the file when it is not 1-D (a text file with several integers on
    one line) or holds something other than integers.
    """
    path = os.fspath(path)
    _require_file("labels", path)
    if path.endswith(".npy"):
        labels = _load_npy("labels", path)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an empty file: zero labels
                labels = np.loadtxt(path, dtype=np.int64, ndmin=1, comments="#")
        except ValueError as error:
            raise ValueError(f"labels file {path} should hold one integer a line: {error}") from error
    if labels.ndim != 1:
        raise ValueError(f"labels file {path} should hold a 1-D array, got shape {labels.shape}")
    integral = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))
    if labels.size and not integral:
        raise ValueError(f"labels file {path} should hold integers, got dtype {labels.dtype}")
    return labels.astype(np.int64)


def read_features(
    features_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    *,
    mmap: bool = False,
) -> FeatureSet:
    """Read a feature matrix [N, D] from ``.npy`` and, optionally, its labels [N].

    Args:
        features_path: a ``.npy`` file holding a 2-D real array.
        labels_path: a ``.npy`` or text file with one label per row of the features, or None.
        mmap: open the features as a read-only memory map instead of loading them.

    Raises ValueError when the features are not 2-D real numbers or the counts differ.
    """
    features_path = os.fspath(features_path)
    _require_file("features", features_path)
    features = _load_npy("features", features_path, mmap)
    if features.ndim != 2:
        raise ValueError(
            f"features file {features_path} should hold a 2-D [N, D] array, got shape {features.shape}"
        )
    if features.dtype.kind != "f":
        raise ValueError(f"features file {features_path} should hold floats, got dtype {features.dtype}")
    labels = None if labels_path is None else read_labels(labels_path)
    if labels is not None and labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"features and labels should have the same count: {features_path} holds {features.shape[0]} "
            f"rows, {os.fspath(labels_path)} holds {labels.shape[0]} labels"
        )
    return FeatureSet(features=features, labels=labels)
