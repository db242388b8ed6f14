"""`FGraphs`, the one handle for F-Graphs (paper III-B): the [N, k] kNN tables of N nodes, from
which the node sets and adjacency of any batch of focus nodes are built on demand; and the
checks every F-Graph caller shares (docs/graph.md)."""

from __future__ import annotations

import copy
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import ops
from .._checks import require_dim, require_index, require_int, require_tensor

#: The format marker `FGraphs.save` writes into every file (key "format").
FILE_FORMAT = "hdml_ext.fgraphs/1"
#: Rows per block of `require_knn_table` (bounds its temporaries to a few MB).
_CHECK_ROWS = 1 << 14


def require_k(k: object, num_nodes: int, *, nodes: str = "N") -> int:
    """Check 1 <= k <= num_nodes - 1 (an F-Graph holds its focus and k *other* nodes) and
    return k. `nodes` names the node count in the message ("N"; "G" for a Re-ID gallery)."""
    require_int("k", k, minimum=1)
    if k > num_nodes - 1:
        raise ValueError(
            f"k should be at most {nodes} - 1 = {num_nodes - 1} (each F-Graph holds k nodes besides "
            f"its focus, self excluded), got k={k} for {nodes} = {num_nodes}"
        )
    return int(k)


def require_knn_table(knn_idx: Tensor, name: str = "knn_idx") -> None:
    """Raise ValueError naming the first bad row unless every row i of the int64 [N, k] table
    holds k distinct ids of other rows: ids in [0, N), none equal to i, none twice.

    Vectorised over blocks of `_CHECK_ROWS` rows on the host (a CUDA table is copied): 0.28-0.33 s
    for N = 1M, k = 50 on one core here (int32 row sorts when N < 2^31).
    """
    num_nodes = knn_idx.shape[0]
    if knn_idx.numel() == 0:
        return
    table = knn_idx.detach().cpu().numpy()
    if int(table.min()) < 0 or int(table.max()) >= num_nodes:
        row = int(np.flatnonzero(((table < 0) | (table >= num_nodes)).any(axis=1))[0])
        col = int(np.flatnonzero((table[row] < 0) | (table[row] >= num_nodes))[0])
        raise ValueError(f"{name} should hold ids of rows in [0, {num_nodes}), got {int(table[row, col])} "
                         f"in row {row} (column {col})")
    dtype = np.int32 if num_nodes <= np.iinfo(np.int32).max else np.int64
    for start in range(0, num_nodes, _CHECK_ROWS):
        block = table[start : start + _CHECK_ROWS].astype(dtype)
        rows = np.arange(start, start + block.shape[0], dtype=dtype)
        own = (block == rows[:, None]).any(axis=1)
        block.sort(axis=1)
        bad = own | (block[:, 1:] == block[:, :-1]).any(axis=1)
        if bad.any():
            _raise_bad_row(name, table, start + int(np.flatnonzero(bad)[0]))


def _raise_bad_row(name: str, table: np.ndarray, row: int) -> None:
    """The error of `require_knn_table` for `row`, which holds itself or an id twice."""
    values = table[row]
    own = np.flatnonzero(values == row)
    if own.size:
        raise ValueError(f"{name} should list each row's neighbours without the row itself, got row {row} "
                         f"holding {row} at column {int(own[0])} (a learn-to-cluster table that starts "
                         "every row with the row itself: FGraphs.load removes that column)")
    ids, counts = np.unique(values, return_counts=True)
    twice = int(ids[counts > 1][0])
    raise ValueError(f"{name} should list k distinct neighbours per row, got row {row} holding {twice} "
                     f"at columns {np.flatnonzero(values == twice).tolist()}")


def fgraph_nodes(knn_idx: Tensor, focus: Tensor | None = None) -> Tensor:
    """Node ids of the F-Graphs of `focus`: int64 [B, k+1], in `ops.fgraph_adjacency`'s order.

    Row b is [f, knn_idx[f, 0], ..., knn_idx[f, k-1]] for f = focus[b]: the focus is node 0
    of its own graph, then its neighbours nearest first. focus=None means all N nodes.
    """
    require_tensor("knn_idx", knn_idx)
    require_dim("knn_idx", knn_idx, 2)
    require_index("knn_idx", knn_idx)
    num_nodes = knn_idx.shape[0]
    if focus is None:
        focus = torch.arange(num_nodes, device=knn_idx.device)
    else:
        require_tensor("focus", focus)
        require_dim("focus", focus, 1)
        require_index("focus", focus)
        if focus.device != knn_idx.device:
            raise ValueError(f"focus should be on knn_idx's device {knn_idx.device}, got {focus.device}")
        if focus.numel() and (int(focus.min()) < 0 or int(focus.max()) >= num_nodes):
            raise ValueError(f"focus ids should lie in [0, {num_nodes}), got values in "
                             f"[{int(focus.min())}, {int(focus.max())}]")
    return torch.cat([focus[:, None], knn_idx[focus]], dim=1)


@dataclass
class FGraphs:
    """The kNN tables of N nodes, from which every node's F-Graph is built on demand.

    knn_idx: [N, k] int64, row i the k nearest neighbours of node i, self excluded, nearest
        first; 1 <= k <= N - 1. Checked when the handle is made (`require_knn_table`: ids in
        [0, N), none the row itself, none twice; ValueError naming the first bad row), so a
        caller's table never puts a focus twice into its own F-Graph.
    knn_dist: [N, k] float32 Euclidean distances (not squared), ascending along each row, or
        None when only the ids are known (a table passed in by a caller).
    backend: the backend that computed them ("exact", "ivf", "faiss-flat", "faiss-ivf", "faiss-hnsw",
        "given" for tables passed in).
    reason: why `build_fgraphs` chose it (or that the tables came from a cache file).
    params: the index settings used (nlist, nprobe, efSearch, ...) and the sampled recall.
    """

    knn_idx: Tensor
    knn_dist: Tensor | None = None
    backend: str = "given"
    reason: str = "tables given by the caller"
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_tensor("knn_idx", self.knn_idx)
        require_dim("knn_idx", self.knn_idx, 2)
        require_index("knn_idx", self.knn_idx)
        require_k(self.k, self.num_nodes)
        if self.knn_dist is not None:
            require_tensor("knn_dist", self.knn_dist)
            if self.knn_dist.shape != self.knn_idx.shape:
                raise ValueError(f"knn_dist should have knn_idx's shape {tuple(self.knn_idx.shape)}, "
                                 f"got {tuple(self.knn_dist.shape)}")
        require_knn_table(self.knn_idx)

    @property
    def num_nodes(self) -> int:
        """N, the number of nodes (rows)."""
        return int(self.knn_idx.shape[0])

    @property
    def k(self) -> int:
        """Neighbours per node: each F-Graph has k + 1 nodes."""
        return int(self.knn_idx.shape[1])

    def nodes(self, focus: Tensor | None = None) -> Tensor:
        """Node ids [B, k+1] int64 of the F-Graphs of `focus` ([B] int64; None: all N)."""
        return fgraph_nodes(self.knn_idx, focus)

    def adjacency(self, focus: Tensor | None = None, *, symmetric: bool = True) -> Tensor:
        """Adjacency bool [B, k+1, k+1] of the F-Graphs of `focus` ([B] int64; None: all N),
        in the node order of `nodes` (`hdml_ext.ops.fgraph_adjacency`)."""
        return ops.fgraph_adjacency(self.knn_idx, focus, symmetric=symmetric)

    def batch(self, focus: Tensor) -> tuple[Tensor, Tensor]:
        """The F-Graphs of `focus` ([B] int64 node ids on knn_idx's device), as the models take
        them: (nodes int64 [B, k+1], adj bool [B, k+1, k+1]) from `nodes` and from `adjacency`
        with symmetric=False (row a: node a's neighbours inside the graph). The models run the
        RE-GCN on its undirected version (the paper's edges) and the overlap prior on the rows."""
        return self.nodes(focus), self.adjacency(focus, symmetric=False)

    def with_k(self, k: int) -> FGraphs:
        """The same graphs keeping the first k neighbours of every row (1 <= k <= self.k)."""
        require_int("k", k, minimum=1)
        if k > self.k:
            raise ValueError(f"k should be at most the tables' {self.k} columns, got k={k}")
        if k == self.k:
            return self
        dist = None if self.knn_dist is None else self.knn_dist[:, :k].contiguous()
        return self._derived(knn_idx=self.knn_idx[:, :k].contiguous(), knn_dist=dist)

    def to(self, device: torch.device | str) -> FGraphs:
        """The same graphs with their tables on `device`."""
        dist = None if self.knn_dist is None else self.knn_dist.to(device)
        return self._derived(knn_idx=self.knn_idx.to(device), knn_dist=dist)

    def _derived(self, **changes: object) -> FGraphs:
        """A copy with `changes` to tables derived from these checked ones (not checked again)."""
        graphs = copy.copy(self)
        graphs.__dict__.update(changes)
        return graphs

    def save(self, path: str | os.PathLike, *, fingerprint: str = "") -> None:
        """Write the tables as .npz in the learn-to-cluster layout (docs/graph.md, "Save / load")
        with the format marker `FILE_FORMAT`; `fingerprint` identifies the features (caches).

        The file is written beside `path` and renamed into place, so a reader never sees half.
        """
        if self.knn_dist is None:
            raise ValueError("knn_dist should be a tensor to save the tables, got None")
        path = Path(path)
        idx = self.knn_idx.cpu().numpy()
        dist = self.knn_dist.cpu().numpy().astype(np.float32, copy=False)
        id_dtype = np.float32 if self.num_nodes <= 2**24 else np.float64  # ids exact as floats
        data = np.empty((self.num_nodes, 2, self.k), dtype=id_dtype)
        data[:, 0] = idx
        data[:, 1] = dist
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, data=data, format=np.str_(FILE_FORMAT), metric=np.str_("euclidean"),
                         backend=np.str_(self.backend), reason=np.str_(self.reason),
                         fingerprint=np.str_(fingerprint))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, k: int | None = None) -> FGraphs:
        """Read a file written by `save`, or a learn-to-cluster knn .npz ('data' [N, 2, k]).

        learn-to-cluster's files list each row itself first: when column 0 is the row itself in
        every row, that column is removed (its k is one less) and params gets
        "self_column_removed": True. A row holding itself anywhere else, an id twice, or ids out
        of [0, N) is refused (`require_knn_table`, naming the first bad row).
        k: keep the first k columns (None: all) after that. params gets "format" and
        "fingerprint" ("" when the file has none). Raises ValueError naming `path` when the file
        is not an .npz of kNN tables, holds fewer than k columns, or holds ids that are not
        integers in [0, N), a bad table, or distances that are not finite.
        """
        arrays = read_npz(path)
        if "data" not in arrays:
            raise ValueError(f"path should be a knn .npz with an array 'data' [N, 2, k], "
                             f"got {path} holding arrays {sorted(arrays)}")
        data = arrays["data"]
        text = {key: str(arrays.get(key, "")) for key in ("format", "backend", "reason", "fingerprint")}
        if data.ndim != 3 or data.shape[1] != 2:
            raise ValueError(f"'data' in {path} should have shape [N, 2, k], got {data.shape}")
        ids, dist = data[:, 0], data[:, 1]
        num_nodes = data.shape[0]
        if not np.isfinite(dist).all():
            raise ValueError(f"'data' in {path} should hold finite distances, got NaN or inf")
        valid = np.isfinite(ids) & (ids == np.round(ids)) & (ids >= 0) & (ids < num_nodes)
        if not valid.all():
            row = int(np.flatnonzero(~valid.all(axis=1))[0])
            raise ValueError(f"'data' in {path} should hold neighbour ids: integers in [0, {num_nodes}), "
                             f"got NaN, inf, fractions or ids out of range, first in row {row}: "
                             f"{ids[row][~valid[row]][:3].tolist()}")
        params = {"format": text["format"], "fingerprint": text["fingerprint"]}
        reason = text["reason"]
        if ids.shape[1] and (ids[:, 0] == np.arange(num_nodes)).all():
            ids, dist = ids[:, 1:], dist[:, 1:]
            params["self_column_removed"] = True
            reason = f"{reason}; " if reason else ""
            reason += "every row listed itself first (learn-to-cluster): that column removed"
        if k is not None:
            require_int("k", k, minimum=1)
            if k > ids.shape[1]:
                raise ValueError(f"k should be at most the file's {ids.shape[1]} neighbour columns, "
                                 f"got k={k}")
            ids, dist = ids[:, :k], dist[:, :k]
        idx = torch.from_numpy(np.ascontiguousarray(ids).astype(np.int64))
        knn_dist = torch.from_numpy(np.ascontiguousarray(dist).astype(np.float32))
        try:
            return cls(idx, knn_dist, text["backend"] or "unknown", reason, params)
        except ValueError as error:
            raise ValueError(f"'data' in {path}: {error}") from None


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays `keys` (None: all) that the .npz at `path` holds, read without pickle;
    ValueError naming `path` when it is not a readable .npz."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"path should be an .npz of kNN tables, could not read {path}: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"path should be an .npz of kNN tables, got a single .npy array in {path}")
    try:
        with loaded as npz:
            return {key: npz[key] for key in npz.files if keys is None or key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"path should be an .npz of kNN tables, could not read {path}: {error}") from error
