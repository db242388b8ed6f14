"""The faiss backends of `build_fgraphs` ("faiss-flat", "faiss-ivf", "faiss-hnsw") and the
recall tuning they share: the exact neighbours of a seeded sample of rows, gathered while the
index is filled. Settings and their reasons: docs/graph.md, "Backends" and "Threads"."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import ops
from .exact import Tables, drop_self, exact_knn_rows, merge_topk
from .rows import FeatureRows

TUNE_RECALL = 0.95
TUNE_QUERIES = 256
IVF_STORED_PROBES = 8
IVF_TRAIN_PER_LIST = 20
IVF_KMEANS_ITER = 10
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
SEED = 1234
_REPAIR_CHUNK = 4096


def _faiss() -> object:
    """The faiss module, set to as many OpenMP threads as torch uses (docs/graph.md, "Threads")."""
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` [M, k] found in the same row of `found` [M, k]."""
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / truth.size


class _SampleTruth:
    """The exact neighbours of a seeded sample of rows, gathered while an index is filled block
    by block (so the data are read once), and the recall of an index's answers for them.

    ids: [M] the sampled rows; queries: float32 [M, D] their features.
    """

    def __init__(self, rows: FeatureRows, k: int) -> None:
        self.k = k
        rng = np.random.default_rng(SEED)
        self.ids = np.sort(rng.choice(rows.num_rows, size=min(rows.num_rows, TUNE_QUERIES), replace=False))
        self.queries = rows.rows(self.ids).float().cpu().numpy()
        self._best_d = torch.full((self.ids.size, 0), math.inf)
        self._best_i = torch.empty((self.ids.size, 0), dtype=torch.int64)
        self._truth: np.ndarray | None = None

    def add(self, block: np.ndarray, start: int) -> None:
        """Merge in the rows block [B, D] whose first row is row `start`."""
        d, i = ops.knn(torch.from_numpy(block), min(self.k + 1, block.shape[0]),
                       queries=torch.from_numpy(self.queries))
        self._best_d, self._best_i = merge_topk(self._best_d, self._best_i, d, i + start, self.k + 1)

    def recall(self, found_d: np.ndarray, found: np.ndarray) -> float:
        """Recall@k of an index's k+1 answers (self included) for the sampled rows."""
        if self._truth is None:
            self._truth = drop_self(self._best_d.numpy(), self._best_i.numpy(), self.ids)[1]
        return _recall(drop_self(found_d, found, self.ids)[1], self._truth)


def _finish(sq: np.ndarray, idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss's k+1 answers [b, k+1] (squared L2) for rows `ids` -> (Euclidean dist, idx) [b, k]:
    sorted by (distance, id), since faiss's heaps leave equal distances in no fixed order; self
    dropped; -1 ids (missing) last."""
    order = np.argsort(idx, axis=1, kind="stable")
    order = np.take_along_axis(order, np.argsort(np.take_along_axis(sq, order, 1), axis=1, kind="stable"), 1)
    sq, idx = np.take_along_axis(sq, order, 1), np.take_along_axis(idx, order, 1)
    dist, idx = drop_self(sq, idx, ids)
    return np.sqrt(np.maximum(dist, 0.0)), idx


def _search_all(rows: FeatureRows, k: int, block_size: int, progress: bool, search: object, desc: str):
    """Run `search(x_block, start) -> (sq_dist, idx)` over all row blocks and `_finish` them."""
    out_d = np.empty((rows.num_rows, k), dtype=np.float32)
    out_i = np.empty((rows.num_rows, k), dtype=np.int64)
    for start in tqdm(range(0, rows.num_rows, block_size), desc=desc, disable=not progress, leave=False):
        stop = min(start + block_size, rows.num_rows)
        out_d[start:stop], out_i[start:stop] = _finish(*search(rows.numpy_block(start, stop), start),
                                                       np.arange(start, stop))
    return out_d, out_i


def _repair(rows: FeatureRows, out_d: np.ndarray, out_i: np.ndarray, k: int, block_size: int) -> int:
    """Recompute exactly the rows with missing (-1) neighbours; returns how many there were."""
    short = np.flatnonzero((out_i < 0).any(axis=1))
    for start in range(0, short.size, _REPAIR_CHUNK):
        ids = short[start : start + _REPAIR_CHUNK]
        out_d[ids], out_i[ids] = exact_knn_rows(rows, ids, k, block_size=block_size)
    return int(short.size)


def faiss_flat_tables(rows: FeatureRows, k: int, block_size: int, progress: bool) -> Tables:
    """Backend "faiss-flat" (`faiss.IndexFlatL2`): (knn_dist, knn_idx, params) as `exact_tables`."""
    faiss = _faiss()
    index = faiss.IndexFlatL2(rows.dim)
    for start in tqdm(range(0, rows.num_rows, block_size), desc="faiss-flat: add", disable=not progress,
                      leave=False):
        index.add(rows.numpy_block(start, min(start + block_size, rows.num_rows)))
    out_d, out_i = _search_all(rows, k, block_size, progress, lambda x, _: index.search(x, k + 1),
                               "faiss-flat: search")
    return torch.from_numpy(out_d), torch.from_numpy(out_i), {}


def _ivf_nlist(num_rows: int) -> int:
    return max(1, min(round(4 * math.sqrt(num_rows)), num_rows // IVF_TRAIN_PER_LIST))


def faiss_ivf_tables(rows: FeatureRows, k: int, block_size: int, progress: bool) -> Tables:
    """Backend "faiss-ivf" (`faiss.IndexIVFFlat`, nprobe tuned for recall): as `exact_tables`,
    params {nlist, nprobe, train_rows, kmeans_iter, sample_recall, sample_size, reprobed_rows,
    repaired_rows}."""
    faiss = _faiss()
    n, dim = rows.num_rows, rows.dim
    nlist = _ivf_nlist(n)
    rng = np.random.default_rng(SEED)
    train_ids = np.sort(rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * nlist), replace=False))
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist)
    index.cp.niter = IVF_KMEANS_ITER
    index.cp.min_points_per_centroid = IVF_TRAIN_PER_LIST // 2  # no faiss warning at 20 per list
    index.cp.seed = SEED
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
            x = np.ascontiguousarray(rows.rows(ids).float().cpu().numpy())
            out_d[ids], out_i[ids] = _finish(*index.search(x, k + 1), ids)
        index.nprobe = nprobe
    repaired = _repair(rows, out_d, out_i, k, block_size)
    params = {"nlist": nlist, "nprobe": nprobe, "train_rows": int(train_ids.size),
              "kmeans_iter": IVF_KMEANS_ITER, "sample_recall": round(recall, 4),
              "sample_size": int(sample.ids.size), "reprobed_rows": int(short.size),
              "repaired_rows": repaired}
    return torch.from_numpy(out_d), torch.from_numpy(out_i), params


def faiss_hnsw_tables(rows: FeatureRows, k: int, block_size: int, progress: bool) -> Tables:
    """Backend "faiss-hnsw" (`faiss.IndexHNSWFlat`, efSearch tuned for recall): as
    `exact_tables`, params {M, efConstruction, efSearch, sample_recall, sample_size, repaired_rows}."""
    faiss = _faiss()
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
