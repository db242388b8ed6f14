"""Reader for the face-clustering ``.bin`` + ``.meta`` pair (as used by learn-to-cluster).

The ``.bin`` file is raw float32, N x D in row-major order with no header (D is given by the
caller); the ``.meta`` file holds one integer label per line, N lines.

    from hdml_ext.data import read_bin_meta
    data = read_bin_meta("part1_test.bin", "part1_test.meta", dim=256)
"""

from __future__ import annotations

import os

import numpy as np

from .._checks import require_int
from .features import read_labels
from .records import FeatureSet

__all__ = ["read_bin_meta"]


def read_bin_meta(
    bin_path: str | os.PathLike,
    meta_path: str | os.PathLike | None,
    dim: int,
    *,
    dtype: np.dtype | str = np.float32,
    mmap: bool = False,
) -> FeatureSet:
    """Read features [N, dim] from a raw ``.bin`` file and labels [N] from a ``.meta`` file.

    Args:
        bin_path: raw row-major features, no header.
        meta_path: one integer label per line, or None to read features only.
        dim: D, the feature dimension (the file does not record it).
        dtype: element type of the ``.bin`` file (float32 in learn-to-cluster's releases).
        mmap: open the features as a read-only np.memmap instead of reading them.

    Raises ValueError when the file size is not a multiple of dim * itemsize, or when the
    number of labels differs from N.
    """
    bin_path = os.fspath(bin_path)
    dim = require_int("dim", dim, minimum=1)
    if not os.path.isfile(bin_path):
        raise FileNotFoundError(f"features: expected the file {bin_path}, but it does not exist")
    dtype = np.dtype(dtype)
    row_bytes = dim * dtype.itemsize
    size = os.path.getsize(bin_path)
    if size % row_bytes:
        raise ValueError(
            f"the size of {bin_path} ({size} bytes) is not divisible by dim * itemsize = {dim} * "
            f"{dtype.itemsize}: check dim and dtype"
        )
    count = size // row_bytes
    if mmap and count:
        features = np.memmap(bin_path, dtype=dtype, mode="r", shape=(count, dim))
    else:
        features = np.fromfile(bin_path, dtype=dtype).reshape(count, dim)
    labels = None if meta_path is None else read_labels(meta_path)
    if labels is not None and labels.shape[0] != count:
        raise ValueError(
            f"features and labels should have the same count: {bin_path} holds {count} rows of "
            f"dim {dim}, {os.fspath(meta_path)} holds {labels.shape[0]} labels"
        )
    return FeatureSet(features=features, labels=labels)
