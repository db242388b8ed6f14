"""Validated, block-wise access to the rows of a feature matrix: a torch tensor (CPU or CUDA),
a numpy array, or a `numpy.memmap` larger than memory (docs/graph.md, "Memory")."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

#: What `build_fgraphs` and `exact_knn_rows` accept: [N, D] floating-point rows.
Features = Union[Tensor, np.ndarray]

#: Rows read at a time when streaming (bounds the memory besides the kNN tables and any index).
DEFAULT_BLOCK_SIZE = 65536


class FeatureBlocks:
    """Row blocks of [N, D] features, each checked finite; a tensor is read detached (neighbour
    search is not differentiable).

    num_rows: N; dim: D; device: where a tensor's rows live (CPU for numpy input);
    is_memmap: whether the rows are read from disk block by block.
    """

    def __init__(self, features: object) -> None:
        if isinstance(features, Tensor):
            features = features.detach()
            shape, dtype_ok, dtype = tuple(features.shape), features.is_floating_point(), features.dtype
        elif isinstance(features, np.ndarray):
            shape, dtype_ok, dtype = features.shape, features.dtype.kind == "f", features.dtype
        else:
            raise TypeError(
                "features should be a torch.Tensor, a numpy.ndarray or a numpy.memmap, "
                f"got {type(features).__name__}"
            )
        if len(shape) != 2:
            hint = (" (a numpy.memmap opened without shape= is 1-D: pass shape=(N, D))"
                    if isinstance(features, np.memmap) else "")
            raise ValueError(f"features should be 2-D [N, D], got {len(shape)}-D with shape {shape}{hint}")
        if not dtype_ok:
            raise TypeError(f"features should have a floating-point dtype, got {dtype}")
        if shape[0] < 2 or shape[1] < 1:
            raise ValueError(f"features should have N >= 2 rows and D >= 1 columns, got shape {shape}")
        self.data = features
        self.num_rows, self.dim = int(shape[0]), int(shape[1])
        self.dtype = str(dtype).replace("torch.", "")
        self.is_tensor = isinstance(features, Tensor)
        self.is_memmap = isinstance(features, np.memmap)
        self.device = features.device if self.is_tensor else torch.device("cpu")

    def block(self, start: int, stop: int) -> Tensor:
        """Rows [start, stop) as a CPU-or-device tensor of the features' float type, checked finite."""
        rows = self.data[start:stop]
        rows = rows if self.is_tensor else _from_numpy(rows)
        if rows.dtype not in (torch.float32, torch.float64):
            rows = rows.float()
        _require_finite(rows, start)
        return rows

    def numpy_block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a contiguous float32 numpy array (what faiss takes), checked finite."""
        return np.ascontiguousarray(self.block(start, stop).cpu().numpy(), dtype=np.float32)

    def numpy_rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows `ids` (sorted int64) as a contiguous float32 numpy array, checked finite."""
        return np.ascontiguousarray(self.rows(ids).cpu().numpy(), dtype=np.float32)

    def rows(self, ids: np.ndarray) -> Tensor:
        """The rows `ids` (sorted int64) as a tensor, checked finite."""
        if self.is_tensor:
            rows = self.data[torch.from_numpy(ids).to(self.device)]
        else:
            rows = _from_numpy(self.data[ids])
        if rows.dtype not in (torch.float32, torch.float64):
            rows = rows.float()
        _require_finite(rows, 0, ids)
        return rows

    def whole(self) -> Tensor:
        """All rows as one tensor (in-memory input only), checked finite block by block."""
        x = self.data if self.is_tensor else _from_numpy(self.data)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        for start in range(0, self.num_rows, DEFAULT_BLOCK_SIZE):
            _require_finite(x[start : start + DEFAULT_BLOCK_SIZE], start)
        return x


def _from_numpy(array: np.ndarray) -> Tensor:
    """A tensor over `array` without a copy where it is an in-memory, writable, C-contiguous
    array; otherwise (memmap blocks, read-only or strided views) a copy, read into memory."""
    if isinstance(array, np.memmap) or not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C", copy=True)
    return torch.from_numpy(array)


def _require_finite(rows: Tensor, start: int, ids: np.ndarray | None = None) -> None:
    """Raise ValueError naming the first row (global id) holding NaN or inf."""
    finite = torch.isfinite(rows).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        row = int(ids[bad]) if ids is not None else start + bad
        raise ValueError(f"features should be finite, got NaN or inf in row {row} "
                         f"({int((~finite).sum())} such rows among the {rows.shape[0]} read with it)")
