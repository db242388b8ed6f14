"""What `build_fgraphs(backend="auto")` runs: "exact" or "faiss-ivf", by estimated cost
(docs/graph.md, "auto").

Below a size floor (`EXACT_MAX_WORK`) exact kNN costs seconds and is taken without probing.
Above it, both candidates are costed on seeded samples of rows:

- exact: `EXACT_TIMED_QUERIES` rows' exact neighbours among all N (one pass; they include the
  recall sample, whose neighbours are the truth for IVF), timed and scaled to N queries;
- faiss-ivf: the quantizer is trained for real; the lists of the recall sample's true
  neighbours give the nprobe the target needs and the share of rows it scans, before any row
  is added (a cheap exit for unclustered data); then the index is filled (timed) and nprobe =
  1, 2, 4, ... searched on the sample until recall@k reaches `target_recall`, the full search
  estimated as the sample's time per query times N. The index is kept when it wins.

IVF is taken only when it reaches the target while scanning at most `MAX_SCAN_SHARE` of the
rows and its estimated total (train + add + search) is below exact's estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .exact import exact_knn_rows
from .faiss_backends import SEED, IVFIndex, SampleTruth, sample_ids
from .rows import FeatureRows

# Below these N^2 D "auto" takes exact without estimating: about 46k x 64 rows, a few seconds
# of ops.knn on 2 CPU cores (on CUDA about 1M x 64).
EXACT_MAX_WORK = 2**37
EXACT_MAX_WORK_CUDA = 2**46
# Rows whose exact search is timed: one full query tile of the op's blocked schedule (fewer
# rows run it slower per row: at 60,000 x 64 on one thread here 256 sampled rows took 3.7x
# the self-join's time per row, 1024 rows 2.2x).
EXACT_TIMED_QUERIES = 1024
# In-memory CPU rows: exact is one self-join, whose symmetric schedule computes each pair once,
# half the products per row of the timed rows' search. Past its candidate-buffer limit (2^24
# slots, about 200k rows at k = 20) the op falls back to the blocked schedule and this halving
# underestimates exact, which errs towards exact.
SELF_JOIN_SHARE = 0.5
# IVF-Flat scans its lists one query at a time, without exact's GEMM tiles: probing all lists
# took 8x exact's time at 30,000 x 64 on one thread here (probing 43% of the rows: 2.5x).
MAX_SCAN_SHARE = 0.25
# Training plus (estimated) adding may cost at most this share of exact's estimate before the
# index is filled: an IVF then rejected wastes at most that much.
MAX_SETUP_SHARE = 0.25
# Sample searches per tuning step, the fastest one timed (the first may wake thread pools).
TIMED_REPEATS = 2


@dataclass
class AutoChoice:
    """The backend "auto" chose, why (with the estimates), and for "faiss-ivf" the index,
    trained, filled and tuned, that `IVFIndex.tables` searches."""

    backend: str
    reason: str
    ivf: IVFIndex | None = None


def _exact_estimate(rows: FeatureRows, tune_ids: np.ndarray, k: int, block_size: int) -> tuple:
    """The exact neighbours [M, k] of rows `tune_ids` (the recall sample) and the estimated
    seconds of exact on all N, from timing `EXACT_TIMED_QUERIES` rows that include them."""
    n = rows.num_rows
    timed = np.arange(n)
    if n > EXACT_TIMED_QUERIES:
        others = np.setdiff1d(timed, tune_ids, assume_unique=True)
        extra = np.random.default_rng(SEED).choice(others, EXACT_TIMED_QUERIES - tune_ids.size, replace=False)
        timed = np.sort(np.concatenate([tune_ids, extra]))
    start = time.perf_counter()
    truth = exact_knn_rows(rows, timed, k, block_size=block_size)[1]
    seconds = (time.perf_counter() - start) * n / timed.size
    if rows.device.type == "cpu" and not rows.is_memmap:
        seconds *= SELF_JOIN_SHARE
    return truth[np.searchsorted(timed, tune_ids)], seconds


def _lists_needed(ivf: IVFIndex, truth: np.ndarray, target_recall: float) -> tuple[int, float]:
    """From a trained (still empty) `ivf`: the nprobe in 1, 2, 4, ... at which the recall
    sample's true neighbours [M, k] `truth` lie in the probed lists for a `target_recall` share
    (what IVF-Flat's recall is), and the mean share of the rows those lists hold (list sizes
    from the training rows)."""
    nlist, rows = ivf.nlist, ivf.rows
    ranking = ivf.quantizer.search(ivf.sample.queries, nlist)[1]  # [M, nlist] lists, nearest first
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(nlist)[None, :], axis=1)
    neighbours, where = np.unique(truth, return_inverse=True)
    home = ivf.quantizer.search(rows.numpy_rows(neighbours), 1)[1][:, 0][where.reshape(truth.shape)]
    needed = np.sort(np.take_along_axis(rank, home, axis=1).ravel())  # probes each neighbour needs - 1
    reach = int(needed[min(needed.size - 1, int(np.ceil(target_recall * needed.size)) - 1)]) + 1
    nprobe = min(nlist, 1 << (reach - 1).bit_length())
    sizes = np.bincount(ivf.quantizer.search(rows.numpy_rows(ivf.train_ids), 1)[1][:, 0], minlength=nlist)
    share = float(sizes[ranking[:, :nprobe]].sum(axis=1).mean() / ivf.train_ids.size)
    return nprobe, share


def choose_backend(rows: FeatureRows, k: int, block_size: int, target_recall: float) -> AutoChoice:
    """Pick "exact" or "faiss-ivf" for the kNN tables of `rows` by estimated cost (module doc)."""
    work = rows.num_rows**2 * rows.dim
    limit, where = (EXACT_MAX_WORK_CUDA, "CUDA") if rows.device.type == "cuda" else (EXACT_MAX_WORK, "CPU")
    if work <= limit:
        return AutoChoice("exact", f"auto: N^2 D = {work:.3g} <= {limit:.3g} (exact limit on {where}): "
                                   "exact ops.knn costs seconds, not worth estimating")
    began = time.perf_counter()
    n = rows.num_rows
    truth, exact_s = _exact_estimate(rows, sample_ids(n), k, block_size)
    ivf = IVFIndex(rows, k, block_size, SampleTruth(rows, k, truth))
    start = time.perf_counter()
    ivf.train()
    train_s = time.perf_counter() - start
    head = f"auto: estimated exact {exact_s:.3g} s"

    def exact(why: str) -> AutoChoice:
        probe_s = time.perf_counter() - began
        return AutoChoice("exact", f"{head}; {why}: exact (estimates took {probe_s:.3g} s)")

    nprobe, share = _lists_needed(ivf, truth, target_recall)
    if share > MAX_SCAN_SHARE:
        return exact(f"faiss-ivf's sampled rows find {target_recall:g} of their neighbours only in their "
                     f"{nprobe} nearest of {ivf.nlist} lists, {share:.0%} of the rows > {MAX_SCAN_SHARE:.0%}")
    start = time.perf_counter()
    ivf.add_block()
    first_add_s = time.perf_counter() - start
    add_s = first_add_s * n / ivf.filled
    if train_s + add_s > MAX_SETUP_SHARE * exact_s:
        return exact(f"faiss-ivf's training and adding alone {train_s + add_s:.3g} s > "
                     f"{MAX_SETUP_SHARE:g} of it")
    start = time.perf_counter()
    while ivf.filled < n:
        ivf.add_block()
    add_s = first_add_s + time.perf_counter() - start
    setup_s = train_s + add_s

    def search_s() -> float:
        return ivf.sample_seconds * n / ivf.sample.ids.size

    def affordable() -> bool:
        return ivf.scan_share <= MAX_SCAN_SHARE and setup_s + search_s() < exact_s

    reached = ivf.tune(target_recall, affordable, repeats=TIMED_REPEATS)
    ivf_s = setup_s + search_s()
    head += (f", faiss-ivf {ivf_s:.3g} s (train {train_s:.2g} + add {add_s:.2g} + search {search_s():.2g} s "
             f"at nprobe {ivf.nprobe} of {ivf.nlist}: sample recall@{k} {ivf.recall:.3f}, "
             f"scanning {ivf.scan_share:.1%} of the rows)")
    if not reached:
        return exact(f"IVF missed target_recall {target_recall:g} by the time it scanned more than "
                     f"{MAX_SCAN_SHARE:.0%} of the rows or cost more than exact")
    if ivf.scan_share > MAX_SCAN_SHARE:
        return exact(f"IVF reaches target_recall {target_recall:g} only scanning more than "
                     f"{MAX_SCAN_SHARE:.0%} of the rows")
    if ivf_s >= exact_s:
        return exact(f"IVF at target_recall {target_recall:g} is no cheaper")
    probe_s = time.perf_counter() - began
    return AutoChoice("faiss-ivf", f"{head}; cheaper at target_recall {target_recall:g}: approximate faiss "
                                   f"IVF-Flat (estimates took {probe_s:.3g} s, the index reused)", ivf)
