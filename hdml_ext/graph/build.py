"""kNN tables for every node's F-Graph, at any scale: `build_fgraphs(features, k) -> FGraphs`.

    graphs = build_fgraphs(features, k=20)            # backend="auto"
    graphs.backend, graphs.reason                     # which backend ran, and why
    nodes = graphs.nodes(focus)                       # [B, k+1] int64, on demand
    adj = graphs.adjacency(focus)                     # [B, k+1, k+1] bool, on demand
    graphs.save("knn_k20.npz"); FGraphs.load("knn_k20.npz")

Only the [N, k] tables (knn_idx int64, knn_dist float32) are kept; node sets and adjacency
are computed per batch of focus nodes (paper III-B; DESIGN.md "Graph contract").

Distances follow `hdml_ext.ops.knn`: Euclidean, *not* squared (faiss's squared L2 is passed
through a square root). Every row excludes the node itself and lists neighbours nearest first;
the exact backends put equal distances in the order of the smaller index first.

Backends
    "exact"       `hdml_ext.ops.knn` (CPU or CUDA). In-memory input is one op call; a
                  `numpy.memmap` is streamed: query blocks against data blocks, running top-k.
    "faiss-flat"  `faiss.IndexFlatL2`: exact up to float rounding, O(N^2 D) like "exact".
    "faiss-ivf"   `faiss.IndexIVFFlat`. nlist = round(4 sqrt(N)), at most N // 20. The coarse
                  quantizer is trained by k-means on a seeded sample of min(N, 20 nlist) rows
                  with 10 iterations (faiss asks for >= 39 points per list and 25 iterations by
                  default; at 1M rows those made training the slowest step, and the lists only
                  need to be reasonable: the search scans them exactly and nprobe is tuned).
                  Each row's nearest 8 lists are computed once, while adding, and reused for
                  the search (the queries are the database): the quantizer runs once, not twice.
                  nprobe is the smallest of 1, 2, 4, 8, 16, ... whose
                  recall@k on a seeded sample of 256 rows (exact neighbours found in the same
                  streaming pass) reaches `TUNE_RECALL` = 0.95 (margin over the 0.9 goal for
                  the sample's error), so it adapts to how clustered the data are.
    "faiss-hnsw"  `faiss.IndexHNSWFlat`, M = 32, efConstruction = 40 (faiss's default).
                  efSearch is the smallest of 2(k+1), 3(k+1), 4(k+1), 6(k+1), 8(k+1), 16(k+1)
                  reaching `TUNE_RECALL` on the same kind of sample.
    "auto"        "exact" when N^2 D is at most `EXACT_MAX_WORK` (CPU; a few seconds of
                  ops.knn on two cores) or `EXACT_MAX_WORK_CUDA` (features on a CUDA device),
                  else "faiss-ivf" (measured faster to build than HNSW at 1M x 64 on this
                  project's 2-core machines, at equal recall). `FGraphs.reason` says why; the
                  choice is also logged at INFO level on this module's logger.
    Approximate rows that come back short (an IVF probe or HNSW search found fewer than k+1
    points: faiss marks them -1) are recomputed exactly, so every id is valid.

Memory. Input may be a torch tensor, a numpy array, or a `numpy.memmap` larger than memory:
rows are read `block_size` at a time (checked for NaN/inf per block). Besides one block, the
process holds the [N, k] tables and, for the faiss backends, the index itself, which stores a
float32 copy of the data (N D 4 bytes; HNSW adds about 2 M 4 = 256 bytes of links per row;
"faiss-ivf" also keeps each row's 8 nearest lists, N 8 12 bytes). "exact" on a memmap keeps
nothing but blocks, and reads the data N / block_size times.

Threads. faiss runs with as many OpenMP threads as torch (`torch.get_num_threads()`), set
before every build. OpenMP runtimes: with the venv's torch 2.14.1 and faiss-cpu 1.15.1 wheels,
importing both maps *two* GNU OpenMP runtimes into the process (/proc/self/maps shows
torch/lib/libgomp.so.1 and faiss_cpu.libs/libgomp-<hash>.so.1.0.0; no libiomp). They are
separate copies of the same runtime, so they do not clash the way libgomp + libiomp can, but
each has its own thread pool and its own thread count: torch.set_num_threads does not reach
faiss, hence the explicit faiss.omp_set_num_threads here. The two pools never run at the same
time in this module (faiss and ops.knn calls alternate), so the cores are not oversubscribed.

Save / load. `FGraphs.save(path)` writes the face-clustering community's knn layout
(learn-to-cluster, GCN-V/GCN-E: `np.load(path)["data"]`, shape [N, 2, k], data[:, 0] the
neighbour ids as floats, data[:, 1] the distances), plus `metric`, `backend`, `reason`, `dim`.
Two differences from that community's files: rows exclude the node itself (theirs list it
first, at distance 0), and distances are Euclidean (theirs are 1 - cosine similarity; for
L2-normalised features the two are related by d_euclid^2 = 2 (1 - cos)). Ids are stored as
float32 while N <= 2^24 (exact), float64 above. `build_fgraphs(..., cache=path)` loads such a
file instead of recomputing when it has the same N and D and at least k columns (slicing the
first k), and writes it otherwise. The cache does not fingerprint the features themselves.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import ops
from ..ops._validate import require_int
from .fgraph import fgraph_nodes

__all__ = ["BACKENDS", "FGraphs", "build_fgraphs", "exact_knn_rows"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")
DEFAULT_BLOCK_SIZE = 65536
# "auto" uses the exact op while N^2 D stays below these (about 50k x 64 on 2 CPU cores).
EXACT_MAX_WORK = 2**37
EXACT_MAX_WORK_CUDA = 2**46
TUNE_RECALL = 0.95
TUNE_QUERIES = 256
IVF_STORED_PROBES = 8
IVF_TRAIN_PER_LIST = 20
IVF_KMEANS_ITER = 10
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
_SEED = 1234

Features = Union[Tensor, np.ndarray]


@dataclass
class FGraphs:
    """The kNN tables of N nodes, from which every node's F-Graph is built on demand.

    knn_idx: [N, k] int64, row i the k nearest neighbours of node i, self excluded, nearest first.
    knn_dist: [N, k] float32 Euclidean distances (not squared), ascending along each row.
    backend: the backend that computed them ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw").
    reason: why `build_fgraphs` chose it (or that the tables came from a cache file).
    params: the index settings used (nlist, nprobe, efSearch, ...) and the sampled recall.
    """

    knn_idx: Tensor
    knn_dist: Tensor
    backend: str
    reason: str
    params: dict = field(default_factory=dict)

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

    def save(self, path: str | os.PathLike, *, dim: int | None = None) -> None:
        """Write the tables as .npz in the learn-to-cluster layout (see the module docstring).

        `dim` (the feature width D) is recorded for `build_fgraphs(cache=...)` when given.
        The file is written next to `path` and renamed into place, so a reader never sees half.
        """
        path = Path(path)
        idx = self.knn_idx.cpu().numpy()
        dist = self.knn_dist.cpu().numpy().astype(np.float32, copy=False)
        dtype = np.float32 if self.num_nodes <= 2**24 else np.float64
        data = np.empty((self.num_nodes, 2, self.k), dtype=dtype)
        data[:, 0] = idx
        data[:, 1] = dist
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                data=data,
                metric=np.str_("euclidean"),
                backend=np.str_(self.backend),
                reason=np.str_(self.reason),
                dim=np.int64(-1 if dim is None else dim),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, k: int | None = None) -> FGraphs:
        """Read a file written by `save` (or a learn-to-cluster knn .npz whose rows exclude self).

        k: keep the first k columns (None: all). Raises ValueError when the file holds fewer.
        """
        with np.load(path, allow_pickle=False) as npz:
            if "data" not in npz.files:
                raise ValueError(
                    f"path should be a knn .npz with an array 'data' [N, 2, k], got arrays {npz.files}"
                )
            data = npz["data"]
            backend = str(npz["backend"]) if "backend" in npz.files else "unknown"
            reason = str(npz["reason"]) if "reason" in npz.files else ""
            dim = int(npz["dim"]) if "dim" in npz.files else -1
        if data.ndim != 3 or data.shape[1] != 2:
            raise ValueError(f"'data' in {path} should have shape [N, 2, k], got {data.shape}")
        if k is not None:
            require_int("k", k, minimum=1)
            if k > data.shape[2]:
                raise ValueError(f"k should be at most the file's {data.shape[2]} columns, got k={k}")
            data = data[:, :, :k]
        idx = torch.from_numpy(np.ascontiguousarray(data[:, 0]).astype(np.int64))
        dist = torch.from_numpy(np.ascontiguousarray(data[:, 1]).astype(np.float32))
        return cls(idx, dist, backend, reason, {"dim": dim})


# ----------------------------------------------------------------------------- input


class _Rows:
    """Uniform, validated row-block access to a tensor, an array or a memmap [N, D]."""

    def __init__(self, features: object) -> None:
        if isinstance(features, Tensor):
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
        return np.ascontiguousarray(self.block(start, stop).detach().cpu().numpy(), dtype=np.float32)

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


# ----------------------------------------------------------------------------- helpers


def _merge(best_d: Tensor, best_i: Tensor, d: Tensor, i: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Keep the `keep` smallest (distance, then index) of two candidate lists per row."""
    dist = torch.cat([best_d, d], dim=1)
    idx = torch.cat([best_i, i], dim=1)
    order = torch.sort(idx, dim=1, stable=True).indices  # ties in distance: smaller id first
    dist, idx = dist.gather(1, order), idx.gather(1, order)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :keep]
    return dist.gather(1, order), idx.gather(1, order)


def _drop_self(dist: np.ndarray, idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From [b, k+1] results drop each row's own id, or the last column where it is absent."""
    mask = idx == ids[:, None]
    mask[~mask.any(axis=1), -1] = True
    mask[mask.cumsum(axis=1) > 1] = False  # defensive: exactly one dropped per row
    rows, cols = dist.shape
    return dist[~mask].reshape(rows, cols - 1), idx[~mask].reshape(rows, cols - 1)


def exact_knn_rows(
    features: Features,
    ids: np.ndarray,
    k: int,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN of the rows `ids` among all rows of `features`, self excluded, in one pass.

    features: [N, D] tensor, array or memmap (streamed in `block_size` rows). ids: [M] int64.
    Returns (dist [M, k] float32 Euclidean, idx [M, k] int64), nearest first, ties to the
    smaller index. Used to measure recall and to repair short approximate rows.
    """
    rows = features if isinstance(features, _Rows) else _Rows(features)
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    queries = rows.rows(ids[order])
    keep = k + 1
    best_d = queries.new_full((ids.size, 0), math.inf)
    best_i = torch.empty((ids.size, 0), dtype=torch.int64, device=queries.device)
    for start in tqdm(range(0, rows.num_rows, block_size), desc="exact kNN of sampled rows",
                      disable=not progress, leave=False):
        block = rows.block(start, min(start + block_size, rows.num_rows)).to(queries.device)
        d, i = ops.knn(block, min(keep, block.shape[0]), queries=queries)
        best_d, best_i = _merge(best_d, best_i, d, i + start, keep)
    dist, idx = _drop_self(best_d.float().cpu().numpy(), best_i.cpu().numpy(), ids[order])
    out_d, out_i = np.empty_like(dist), np.empty_like(idx)
    out_d[order], out_i[order] = dist, idx
    return out_d, out_i


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` [M, k] found in the same row of `found` [M, k]."""
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / truth.size


def _set_faiss_threads() -> object:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def _tuning_sample(num_rows: int) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    return np.sort(rng.choice(num_rows, size=min(num_rows, TUNE_QUERIES), replace=False))


class _SampleTruth:
    """The exact neighbours of a seeded sample of rows, gathered while an index is filled block
    by block (so the data are read once), and the recall of an index's answers for them.

    ids: [M] the sampled rows; queries: float32 [M, D] their features.
    """

    def __init__(self, rows: _Rows, k: int) -> None:
        self.k = k
        self.ids = _tuning_sample(rows.num_rows)
        self.queries = rows.rows(self.ids).float().cpu().numpy()
        self._best_d = torch.full((self.ids.size, 0), math.inf)
        self._best_i = torch.empty((self.ids.size, 0), dtype=torch.int64)
        self._truth: np.ndarray | None = None

    def add(self, block: np.ndarray, start: int) -> None:
        """Merge in the rows block [B, D] whose first row is row `start`."""
        d, i = ops.knn(torch.from_numpy(block), min(self.k + 1, block.shape[0]),
                       queries=torch.from_numpy(self.queries))
        self._best_d, self._best_i = _merge(self._best_d, self._best_i, d, i + start, self.k + 1)

    def recall(self, found_d: np.ndarray, found: np.ndarray) -> float:
        """Recall@k of an index's k+1 answers (self included) for the sampled rows."""
        if self._truth is None:
            self._truth = _drop_self(self._best_d.numpy(), self._best_i.numpy(), self.ids)[1]
        return _recall(_drop_self(found_d, found, self.ids)[1], self._truth)


# ----------------------------------------------------------------------------- backends


def _exact(rows: _Rows, k: int, block_size: int, progress: bool) -> tuple[Tensor, Tensor, dict]:
    if not rows.is_memmap:
        x = rows.whole()
        dist, idx = ops.knn(x, k)
        return dist.float().cpu(), idx.cpu(), {}
    out_d = torch.empty(rows.num_rows, k)
    out_i = torch.empty(rows.num_rows, k, dtype=torch.int64)
    blocks = range(0, rows.num_rows, block_size)
    bar = tqdm(total=len(blocks) ** 2, desc="exact kNN (blocks)", disable=not progress, leave=False)
    for q_start in blocks:
        q_stop = min(q_start + block_size, rows.num_rows)
        queries = rows.block(q_start, q_stop)
        best_d = queries.new_full((q_stop - q_start, 0), math.inf)
        best_i = torch.empty((q_stop - q_start, 0), dtype=torch.int64)
        for start in blocks:
            block = queries if start == q_start else rows.block(start, min(start + block_size, rows.num_rows))
            d, i = ops.knn(block, min(k + 1, block.shape[0]), queries=queries)
            best_d, best_i = _merge(best_d, best_i, d, i + start, k + 1)
            bar.update()
        dist, idx = _drop_self(best_d.numpy(), best_i.numpy(), np.arange(q_start, q_stop))
        out_d[q_start:q_stop] = torch.from_numpy(dist).float()
        out_i[q_start:q_stop] = torch.from_numpy(idx)
    bar.close()
    return out_d, out_i, {}


def _search_all(rows: _Rows, k: int, block_size: int, progress: bool, search: object, desc: str):
    """Run `search(x_block, start) -> (sq_dist, idx)` over all row blocks, drop self, sqrt."""
    out_d = np.empty((rows.num_rows, k), dtype=np.float32)
    out_i = np.empty((rows.num_rows, k), dtype=np.int64)
    for start in tqdm(range(0, rows.num_rows, block_size), desc=desc, disable=not progress, leave=False):
        stop = min(start + block_size, rows.num_rows)
        sq, idx = search(rows.numpy_block(start, stop), start)
        # Re-sort by (distance, id): faiss's heaps leave equal distances in no fixed order.
        order = _lexsort_rows(sq, idx)
        sq, idx = np.take_along_axis(sq, order, 1), np.take_along_axis(idx, order, 1)
        dist, idx = _drop_self(sq, idx, np.arange(start, stop))
        out_d[start:stop] = np.sqrt(np.maximum(dist, 0.0))
        out_i[start:stop] = idx
    return out_d, out_i


def _lexsort_rows(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Per-row order by `primary`, then `secondary` ([b, m] each); -1 ids (missing) last."""
    order = np.argsort(secondary, axis=1, kind="stable")
    prim = np.take_along_axis(primary, order, 1)
    return np.take_along_axis(order, np.argsort(prim, axis=1, kind="stable"), 1)


def _repair(rows: _Rows, out_d: np.ndarray, out_i: np.ndarray, k: int, block_size: int) -> int:
    """Recompute exactly the rows with missing (-1) neighbours; returns how many there were."""
    short = np.flatnonzero((out_i < 0).any(axis=1))
    if short.size:
        for start in range(0, short.size, 4096):
            ids = short[start : start + 4096]
            out_d[ids], out_i[ids] = exact_knn_rows(rows, ids, k, block_size=block_size)
    return int(short.size)


def _faiss_flat(rows: _Rows, k: int, block_size: int, progress: bool):
    faiss = _set_faiss_threads()
    index = faiss.IndexFlatL2(rows.dim)
    for start in tqdm(range(0, rows.num_rows, block_size), desc="faiss-flat: add", disable=not progress,
                      leave=False):
        index.add(rows.numpy_block(start, min(start + block_size, rows.num_rows)))
    out_d, out_i = _search_all(rows, k, block_size, progress, lambda x, _: index.search(x, k + 1),
                               "faiss-flat: search")
    return torch.from_numpy(out_d), torch.from_numpy(out_i), {}


def _ivf_nlist(num_rows: int) -> int:
    return max(1, min(round(4 * math.sqrt(num_rows)), num_rows // IVF_TRAIN_PER_LIST))


def _faiss_ivf(rows: _Rows, k: int, block_size: int, progress: bool):
    faiss = _set_faiss_threads()
    n, dim = rows.num_rows, rows.dim
    nlist = _ivf_nlist(n)
    rng = np.random.default_rng(_SEED)
    train_ids = np.sort(rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * nlist), replace=False))
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist)
    index.cp.niter = IVF_KMEANS_ITER
    index.cp.min_points_per_centroid = IVF_TRAIN_PER_LIST // 2  # no faiss warning at 20 per list
    index.cp.seed = _SEED
    index.train(np.ascontiguousarray(rows.rows(train_ids).cpu().numpy(), dtype=np.float32))

    # One pass: coarse assignment (kept for the search), add, and the exact truth of a sample.
    stored = min(IVF_STORED_PROBES, nlist)
    assign = np.empty((n, stored), dtype=np.int64)
    assign_d = np.empty((n, stored), dtype=np.float32)
    sample = _SampleTruth(rows, k)
    for start in tqdm(range(0, n, block_size), desc="faiss-ivf: add", disable=not progress, leave=False):
        stop = min(start + block_size, n)
        x = rows.numpy_block(start, stop)
        assign_d[start:stop], assign[start:stop] = quantizer.search(x, stored)
        first = np.ascontiguousarray(assign[start:stop, 0])
        index.add_core(stop - start, faiss.swig_ptr(x), None, faiss.swig_ptr(first))
        sample.add(x, start)

    def probe(x: np.ndarray, assigned: slice | np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Search rows x, whose coarse assignments are assign[assigned], in nprobe lists."""
        index.nprobe = nprobe
        if nprobe <= stored:
            return index.search_preassigned(x, k + 1, assign[assigned, :nprobe], assign_d[assigned, :nprobe])
        return index.search(x, k + 1)

    nprobe = 1
    while True:
        recall = sample.recall(*probe(sample.queries, sample.ids, nprobe))
        if recall >= TUNE_RECALL or nprobe >= nlist:
            break
        nprobe = min(2 * nprobe, nlist)
    out_d, out_i = _search_all(rows, k, block_size, progress,
                               lambda x, s: probe(x, slice(s, s + x.shape[0]), nprobe),
                               f"faiss-ivf: search (nprobe={nprobe})")
    # Rows whose probed lists held fewer than k+1 points: search them again with 4x the probes
    # (cheap, few rows); whatever is still short is recomputed exactly by _repair.
    short = np.flatnonzero((out_i < 0).any(axis=1))
    if short.size and nprobe < nlist:
        index.nprobe = min(nlist, 4 * nprobe)
        for start in range(0, short.size, block_size):
            ids = short[start : start + block_size]
            sq, idx = index.search(np.ascontiguousarray(rows.rows(ids).float().cpu().numpy()), k + 1)
            order = _lexsort_rows(sq, idx)
            sq, idx = np.take_along_axis(sq, order, 1), np.take_along_axis(idx, order, 1)
            dist, idx = _drop_self(sq, idx, ids)
            out_d[ids], out_i[ids] = np.sqrt(np.maximum(dist, 0.0)), idx
        index.nprobe = nprobe
    repaired = _repair(rows, out_d, out_i, k, block_size)
    params = {"nlist": nlist, "nprobe": nprobe, "train_rows": int(train_ids.size),
              "kmeans_iter": IVF_KMEANS_ITER, "sample_recall": round(recall, 4),
              "sample_size": int(sample.ids.size), "reprobed_rows": int(short.size),
              "repaired_rows": repaired}
    return torch.from_numpy(out_d), torch.from_numpy(out_i), params


def _faiss_hnsw(rows: _Rows, k: int, block_size: int, progress: bool):
    faiss = _set_faiss_threads()
    n = rows.num_rows
    index = faiss.IndexHNSWFlat(rows.dim, HNSW_M)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    sample = _SampleTruth(rows, k)
    for start in tqdm(range(0, n, block_size), desc="faiss-hnsw: add", disable=not progress, leave=False):
        x = rows.numpy_block(start, min(start + block_size, n))
        index.add(x)
        sample.add(x, start)
    for factor in (2, 3, 4, 6, 8, 16):
        index.hnsw.efSearch = factor * (k + 1)
        recall = sample.recall(*index.search(sample.queries, k + 1))
        if recall >= TUNE_RECALL:
            break
    ef = int(index.hnsw.efSearch)
    out_d, out_i = _search_all(rows, k, block_size, progress, lambda x, _: index.search(x, k + 1),
                               f"faiss-hnsw: search (efSearch={ef})")
    repaired = _repair(rows, out_d, out_i, k, block_size)
    params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef,
              "sample_recall": round(recall, 4), "sample_size": int(sample.ids.size),
              "repaired_rows": repaired}
    return torch.from_numpy(out_d), torch.from_numpy(out_i), params


_RUN = {"exact": _exact, "faiss-flat": _faiss_flat, "faiss-ivf": _faiss_ivf, "faiss-hnsw": _faiss_hnsw}


def _choose(rows: _Rows) -> tuple[str, str]:
    work = rows.num_rows**2 * rows.dim
    on_cuda = rows.device.type == "cuda"
    limit, where = (EXACT_MAX_WORK_CUDA, "CUDA") if on_cuda else (EXACT_MAX_WORK, "CPU")
    if work <= limit:
        return "exact", (f"auto: N^2 D = {work:.3g} <= {limit:.3g} (exact limit on {where}): "
                         "exact ops.knn is fast enough")
    return "faiss-ivf", (f"auto: N^2 D = {work:.3g} > {limit:.3g} (exact limit on {where}): "
                         "approximate faiss IVF-Flat, nprobe tuned for recall")


# ----------------------------------------------------------------------------- entry point


def build_fgraphs(
    features: Features,
    k: int,
    *,
    backend: str = "auto",
    block_size: int = DEFAULT_BLOCK_SIZE,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
) -> FGraphs:
    """The kNN tables of every row of `features`, from which F-Graphs are built on demand.

    Args:
        features: [N, D] floating-point rows: a torch tensor (CPU or CUDA), a numpy array, or a
            `numpy.memmap` (possibly larger than memory; read `block_size` rows at a time).
        k: neighbours per node, 1 <= k <= N - 1 (each F-Graph has k + 1 nodes).
        backend: "auto", "exact", "faiss-flat", "faiss-ivf" or "faiss-hnsw" (module docstring).
        block_size: rows per streamed block (bounds the memory besides the tables and index).
        cache: a .npz path. When it exists with the same N and D and >= k columns, the tables
            are loaded from it (first k columns) instead of computed; otherwise they are
            computed and written there.
        progress: show tqdm progress bars.

    Returns:
        FGraphs with knn_idx [N, k] int64 and knn_dist [N, k] float32 (Euclidean, ascending,
        self excluded), on the CPU, plus the backend used and the reason it was chosen.

    Raises TypeError/ValueError naming the argument: features not 2-D or not floating point,
    N < 2, k out of [1, N-1], unknown backend, bad block_size, NaN/inf in the features.
    """
    rows = _Rows(features)
    require_int("k", k, minimum=1)
    if k > rows.num_rows - 1:
        raise ValueError(f"k should be at most N - 1 = {rows.num_rows - 1} (self is excluded), got k={k}")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend should be one of {', '.join(BACKENDS)}, got {backend!r}")
    require_int("block_size", block_size, minimum=1)

    if cache is not None and Path(cache).is_file():
        loaded = _load_cache(Path(cache), rows, k)
        if loaded is not None:
            return loaded

    if backend == "auto":
        backend, reason = _choose(rows)
    else:
        reason = f"requested backend={backend!r}"
    if backend != "exact" and rows.device.type == "cuda":
        reason += " (faiss-cpu: CUDA rows are copied to the host block by block)"
    logger.info("build_fgraphs: N=%d D=%d k=%d -> %s (%s)", rows.num_rows, rows.dim, k, backend, reason)
    knn_dist, knn_idx, params = _RUN[backend](rows, k, block_size, progress)
    graphs = FGraphs(knn_idx, knn_dist, backend, reason, params)
    if cache is not None:
        graphs.save(cache, dim=rows.dim)
    return graphs


def _load_cache(path: Path, rows: _Rows, k: int) -> FGraphs | None:
    try:
        graphs = FGraphs.load(path)
    except (ValueError, OSError, KeyError) as error:
        logger.info("build_fgraphs: cache %s unreadable (%s); recomputing", path, error)
        return None
    dim = graphs.params.get("dim", -1)
    if graphs.num_nodes != rows.num_rows or graphs.k < k or dim not in (-1, rows.dim):
        logger.info("build_fgraphs: cache %s holds N=%d, k=%d, D=%d; need N=%d, k>=%d, D=%d; recomputing",
                    path, graphs.num_nodes, graphs.k, dim, rows.num_rows, k, rows.dim)
        return None
    graphs.knn_idx = graphs.knn_idx[:, :k].contiguous()
    graphs.knn_dist = graphs.knn_dist[:, :k].contiguous()
    graphs.reason = f"loaded from cache {path} (computed by {graphs.backend}: {graphs.reason})"
    logger.info("build_fgraphs: %s", graphs.reason)
    return graphs
