"""The faiss backends of `build_fgraphs` ("faiss-flat", "faiss-ivf", "faiss-hnsw") and the
recall tuning they share: the exact neighbours of a seeded sample of rows, gathered while the
index is filled (or given, by "auto"). Settings and their reasons: docs/graph.md, "Backends"
and "Threads"."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import ops
from .exact import Tables, drop_self, merge_topk, repair_short_rows
from .feature_blocks import FeatureBlocks

#: Recall@k on the sample that tuned indexes aim for unless told otherwise (`target_recall`).
DEFAULT_TARGET_RECALL = 0.95
TUNE_QUERIES = 256
IVF_STORED_PROBES = 8
IVF_TRAIN_PER_LIST = 20
IVF_KMEANS_ITER = 10
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
SEED = 1234


def faiss_module() -> object:
    """The faiss module, set to as many OpenMP threads as torch uses (docs/graph.md, "Threads")."""
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` [M, k] found in the same row of `found` [M, k]."""
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / truth.size


def sample_ids(num_rows: int) -> np.ndarray:
    """The seeded, sorted sample of min(N, `TUNE_QUERIES`) rows that recall is measured on."""
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(num_rows, size=min(num_rows, TUNE_QUERIES), replace=False))


class SampleTruth:
    """The exact neighbours of the rows `sample_ids`, gathered while an index is filled block
    by block (so the data are read once) or given, and the recall of an index's answers for them.

    ids: [M] the sampled rows; queries: float32 [M, D] their features; truth: None, or their
    exact neighbours [M, k] int64 (self excluded) already known; gathering: whether `add` is
    to be fed every block.
    """

    def __init__(self, rows: FeatureBlocks, k: int, truth: np.ndarray | None = None) -> None:
        self.k = k
        self.ids = sample_ids(rows.num_rows)
        self.queries = rows.rows(self.ids).float().cpu().numpy()
        self._best_d = torch.full((self.ids.size, 0), math.inf)
        self._best_i = torch.empty((self.ids.size, 0), dtype=torch.int64)
        self._truth = truth
        self.gathering = truth is None

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


def _search_all(rows: FeatureBlocks, k: int, block_size: int, progress: bool, search: object, desc: str):
    """Run `search(x_block, start) -> (sq_dist, idx)` over all row blocks and `_finish` them."""
    out_d = np.empty((rows.num_rows, k), dtype=np.float32)
    out_i = np.empty((rows.num_rows, k), dtype=np.int64)
    for start in tqdm(range(0, rows.num_rows, block_size), desc=desc, disable=not progress, leave=False):
        stop = min(start + block_size, rows.num_rows)
        out_d[start:stop], out_i[start:stop] = _finish(*search(rows.numpy_block(start, stop), start),
                                                       np.arange(start, stop))
    return out_d, out_i


def faiss_flat_tables(
    rows: FeatureBlocks, k: int, block_size: int, progress: bool, target_recall: float
) -> Tables:
    """Backend "faiss-flat" (`faiss.IndexFlatL2`; exact, so `target_recall` is met): as `exact_tables`."""
    faiss = faiss_module()
    index = faiss.IndexFlatL2(rows.dim)
    for start in tqdm(range(0, rows.num_rows, block_size), desc="faiss-flat: add", disable=not progress,
                      leave=False):
        index.add(rows.numpy_block(start, min(start + block_size, rows.num_rows)))
    out_d, out_i = _search_all(rows, k, block_size, progress, lambda x, _: index.search(x, k + 1),
                               "faiss-flat: search")
    return torch.from_numpy(out_d), torch.from_numpy(out_i), {}


def _ivf_nlist(num_rows: int) -> int:
    return max(1, min(round(4 * math.sqrt(num_rows)), num_rows // IVF_TRAIN_PER_LIST))


class IVFIndex:
    """A `faiss.IndexIVFFlat` over all rows, built in steps that "auto" can time and stop between
    (graph/auto.py): `train`, `add_block` until `filled`, `tune` nprobe on the sample, `tables`.

    nlist: lists; nprobe, recall, scan_share, sample_seconds: the last tuning step's nprobe, its
    recall@k on the sample, the mean share of all rows its probes scanned, and the seconds
    the sample's search took (as the full search runs it: probe, then `_finish`).
    """

    def __init__(self, rows: FeatureBlocks, k: int, block_size: int, sample: SampleTruth) -> None:
        self.faiss = faiss_module()
        self.rows, self.k, self.block_size, self.sample = rows, k, block_size, sample
        n, dim = rows.num_rows, rows.dim
        self.nlist = _ivf_nlist(n)
        rng = np.random.default_rng(SEED)
        self.train_ids = np.sort(rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * self.nlist), replace=False))
        self.quantizer = self.faiss.IndexFlatL2(dim)
        self.index = self.faiss.IndexIVFFlat(self.quantizer, dim, self.nlist)
        self.index.cp.niter = IVF_KMEANS_ITER
        self.index.cp.min_points_per_centroid = IVF_TRAIN_PER_LIST // 2  # no faiss warning at 20 per list
        self.index.cp.seed = SEED
        # Each row's nearest lists, computed while adding and reused by the search.
        self.stored = min(IVF_STORED_PROBES, self.nlist)
        self.assign = np.empty((n, self.stored), dtype=np.int64)
        self.assign_d = np.empty((n, self.stored), dtype=np.float32)
        self.filled = 0
        self.nprobe, self.recall, self.scan_share, self.sample_seconds = 0, 0.0, 0.0, math.inf

    def train(self) -> None:
        """Train the coarse quantizer by k-means on the seeded sample `train_ids`."""
        self.index.train(self.rows.numpy_rows(self.train_ids))

    def add_block(self) -> None:
        """Assign and add the next `block_size` rows (and feed the sample's truth if it gathers)."""
        start, stop = self.filled, min(self.filled + self.block_size, self.rows.num_rows)
        x = self.rows.numpy_block(start, stop)
        self.assign_d[start:stop], self.assign[start:stop] = self.quantizer.search(x, self.stored)
        first = np.ascontiguousarray(self.assign[start:stop, 0])
        self.index.add_core(stop - start, self.faiss.swig_ptr(x), None, self.faiss.swig_ptr(first))
        if self.sample.gathering:
            self.sample.add(x, start)
        self.filled = stop

    def _probe(self, x: np.ndarray, assigned: slice | np.ndarray, nprobe: int) -> tuple[np.ndarray, ...]:
        """Search rows x, whose coarse assignments are assign[assigned], in nprobe lists."""
        self.index.nprobe = nprobe
        if nprobe <= self.stored:
            return self.index.search_preassigned(x, self.k + 1, self.assign[assigned, :nprobe],
                                                 self.assign_d[assigned, :nprobe])
        return self.index.search(x, self.k + 1)

    def measure(self, nprobe: int, repeats: int = 1) -> None:
        """Search the sample at `nprobe` (`repeats` times, the fastest timed) and record nprobe,
        recall, scan_share, sample_seconds."""
        stats = self.faiss.cvar.indexIVF_stats
        self.sample_seconds = math.inf
        for _ in range(repeats):
            stats.reset()
            start = time.perf_counter()
            found_sq, found = self._probe(self.sample.queries, self.sample.ids, nprobe)
            _finish(found_sq, found, self.sample.ids)  # timed: the full search does it for every row
            self.sample_seconds = min(self.sample_seconds, time.perf_counter() - start)
        self.scan_share = stats.ndis / (self.sample.ids.size * self.rows.num_rows)
        self.nprobe, self.recall = nprobe, self.sample.recall(found_sq, found)

    def tune(self, target_recall: float, affordable: Callable[[], bool] = lambda: True,
             repeats: int = 1) -> bool:
        """`measure` nprobe = 1, 2, 4, ... until the recall reaches `target_recall` (True), or
        nprobe = nlist or `affordable()` says no after a step that fell short (False)."""
        nprobe = 1
        while True:
            self.measure(nprobe, repeats)
            if self.recall >= target_recall:
                return True
            if nprobe >= self.nlist or not affordable():
                return False
            nprobe = min(2 * nprobe, self.nlist)

    def tables(self, progress: bool) -> Tables:
        """Search every row at the tuned nprobe: `Tables` with params {nlist, nprobe, train_rows,
        kmeans_iter, sample_recall, sample_size, reprobed_rows, repaired_rows}."""
        rows, k, nprobe, nlist = self.rows, self.k, self.nprobe, self.nlist
        out_d, out_i = _search_all(rows, k, self.block_size, progress,
                                   lambda x, s: self._probe(x, slice(s, s + x.shape[0]), nprobe),
                                   f"faiss-ivf: search (nprobe={nprobe})")
        # Rows whose probed lists held fewer than k+1 points: search them again with 4x the
        # probes (cheap, few rows); whatever is still short is recomputed exactly by repair_short_rows.
        short = np.flatnonzero((out_i < 0).any(axis=1))
        if short.size and nprobe < nlist:
            self.index.nprobe = min(nlist, 4 * nprobe)
            for start in range(0, short.size, self.block_size):
                ids = short[start : start + self.block_size]
                x = np.ascontiguousarray(rows.rows(ids).float().cpu().numpy())
                out_d[ids], out_i[ids] = _finish(*self.index.search(x, k + 1), ids)
            self.index.nprobe = nprobe
        repaired = repair_short_rows(rows, out_d, out_i, k, self.block_size)
        params = {"nlist": nlist, "nprobe": nprobe, "train_rows": int(self.train_ids.size),
                  "kmeans_iter": IVF_KMEANS_ITER, "sample_recall": round(self.recall, 4),
                  "sample_size": int(self.sample.ids.size), "reprobed_rows": int(short.size),
                  "repaired_rows": repaired}
        return torch.from_numpy(out_d), torch.from_numpy(out_i), params


def faiss_ivf_tables(
    rows: FeatureBlocks, k: int, block_size: int, progress: bool, target_recall: float
) -> Tables:
    """Backend "faiss-ivf" (`faiss.IndexIVFFlat`, nprobe tuned for `target_recall`): as
    `exact_tables`, with `IVFIndex.tables`'s params."""
    ivf = IVFIndex(rows, k, block_size, SampleTruth(rows, k))
    ivf.train()
    with tqdm(total=rows.num_rows, desc="faiss-ivf: add", disable=not progress, leave=False) as bar:
        while ivf.filled < rows.num_rows:
            ivf.add_block()
            bar.n = ivf.filled
            bar.refresh()
    ivf.tune(target_recall)
    return ivf.tables(progress)


def faiss_hnsw_tables(
    rows: FeatureBlocks, k: int, block_size: int, progress: bool, target_recall: float
) -> Tables:
    """Backend "faiss-hnsw" (`faiss.IndexHNSWFlat`, efSearch tuned for `target_recall`): as
    `exact_tables`, params {M, efConstruction, efSearch, sample_recall, sample_size, repaired_rows}."""
    faiss = faiss_module()
    n = rows.num_rows
    index = faiss.IndexHNSWFlat(rows.dim, HNSW_M)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    sample = SampleTruth(rows, k)
    for start in tqdm(range(0, n, block_size), desc="faiss-hnsw: add", disable=not progress, leave=False):
        x = rows.numpy_block(start, min(start + block_size, n))
        index.add(x)
        sample.add(x, start)
    for factor in (2, 3, 4, 6, 8, 16):
        index.hnsw.efSearch = factor * (k + 1)
        recall = sample.recall(*index.search(sample.queries, k + 1))
        if recall >= target_recall:
            break
    ef = int(index.hnsw.efSearch)
    out_d, out_i = _search_all(rows, k, block_size, progress, lambda x, _: index.search(x, k + 1),
                               f"faiss-hnsw: search (efSearch={ef})")
    repaired = repair_short_rows(rows, out_d, out_i, k, block_size)
    params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef,
              "sample_recall": round(recall, 4), "sample_size": int(sample.ids.size),
              "repaired_rows": repaired}
    return torch.from_numpy(out_d), torch.from_numpy(out_i), params
