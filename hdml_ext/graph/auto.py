"""What `build_fgraphs(backend="auto")` runs: "exact" or "ivf", by estimated cost
(docs/graph.md, "auto").

Below a size floor (`EXACT_MAX_WORK`) exact kNN costs seconds and is taken without probing.
Above it, both candidates are costed on a seeded sample of rows:

- exact: the exact neighbours among all N of `EXACT_TIMED_QUERIES` seeded rows (one pass; they
  are ivf's recall sample, whose neighbours are its truth), timed and scaled to N queries;
- ivf (graph/ivf.py): the k-means centroids are trained for real (timed); the sample's truth
  gives the nprobe that reaches `target_recall` and the share of the rows that nprobe lists
  hold, without searching anything. Its search is estimated from exact's: the centroid search
  and the join cost `PROBE_COST` and `JOIN_COST` times exact's time per pair of rows compared.

"ivf" is taken only when its lists hold at most `MAX_SCAN_SHARE` of the rows and its estimated
total (train + centroid search + join) is below exact's estimate; its trained state is reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .exact import exact_knn_rows
from .ivf import IVF_SAMPLE_ROWS, IVFJoin, ivf_sample_ids
from .rows import FeatureRows

# Below these N^2 D "auto" takes exact without estimating: about 46k x 64 rows, a few seconds
# of ops.knn on 2 CPU cores (on CUDA about 1M x 64).
EXACT_MAX_WORK = 2**37
EXACT_MAX_WORK_CUDA = 2**46
# Rows whose exact search is timed: ivf's recall sample, one full query tile of the op's blocked
# schedule (fewer rows run it slower per row: at 60,000 x 64 on one thread here 256 sampled rows
# took 3.7x the self-join's time per row, 1024 rows 2.2x).
EXACT_TIMED_QUERIES = IVF_SAMPLE_ROWS
# In-memory CPU rows: exact is one self-join, whose symmetric schedule computes each pair once,
# half the products per row of the timed rows' search. Past its candidate-buffer limit (2^24
# slots, about 200k rows at k = 20) the op falls back to the blocked schedule and this halving
# underestimates exact, which errs towards exact.
SELF_JOIN_SHARE = 0.5
# Seconds per pair of rows compared, relative to exact's per pair (measured on this project's
# 2-core AMD EPYC at 200k and 1M x 64 clustered rows: 3.6-5 for the centroid search, ops.knn
# with queries on its blocked schedule; 3.4-5.3 for the join, lists of ~256 rows).
PROBE_COST = 4.0
JOIN_COST = 5.0
# The largest share of the rows a row's probed lists may hold: beyond it the lists do not
# separate the data (e.g. i.i.d. Gaussian rows) and exact is as good.
MAX_SCAN_SHARE = 0.1


@dataclass
class AutoChoice:
    """The backend "auto" chose, why (with the estimates), and for "ivf" the trained join
    whose `tables` it runs."""

    backend: str
    reason: str
    ivf: IVFJoin | None = None


def _exact_estimate(rows: FeatureRows, sample: np.ndarray, k: int, block_size: int) -> tuple:
    """The exact neighbours [M, k] of rows `sample` (ivf's recall sample, `EXACT_TIMED_QUERIES`
    rows: one full query tile of the op) and the estimated seconds of exact on all N, from
    timing them."""
    start = time.perf_counter()
    truth = exact_knn_rows(rows, sample, k, block_size=block_size)[1]
    seconds = (time.perf_counter() - start) * rows.num_rows / sample.size
    if rows.device.type == "cpu" and not rows.is_memmap:
        seconds *= SELF_JOIN_SHARE
    return truth, seconds


def choose_backend(rows: FeatureRows, k: int, block_size: int, target_recall: float) -> AutoChoice:
    """Pick "exact" or "ivf" for the kNN tables of `rows` by estimated cost (module doc)."""
    n = rows.num_rows
    work = n**2 * rows.dim
    limit, where = (EXACT_MAX_WORK_CUDA, "CUDA") if rows.device.type == "cuda" else (EXACT_MAX_WORK, "CPU")
    if work <= limit:
        return AutoChoice("exact", f"auto: N^2 D = {work:.3g} <= {limit:.3g} (exact limit on {where}): "
                                   "exact ops.knn costs seconds, not worth estimating")
    began = time.perf_counter()
    truth, exact_s = _exact_estimate(rows, ivf_sample_ids(n), k, block_size)
    join = IVFJoin(rows, k, truth)
    start = time.perf_counter()
    join.train()
    train_s = time.perf_counter() - start
    join.choose_nprobe(target_recall)
    probe_s = PROBE_COST * exact_s * join.nlist / n
    join_s = JOIN_COST * exact_s * join.scan_share
    ivf_s = train_s + probe_s + join_s
    head = (f"auto: estimated exact {exact_s:.3g} s, ivf {ivf_s:.3g} s (train {train_s:.2g} + centroid "
            f"search {probe_s:.2g} + join {join_s:.2g} s at nprobe {join.nprobe} of {join.nlist}: sample "
            f"recall@{k} {join.sample_recall:.3f}, scanning {join.scan_share:.1%} of the rows)")
    estimates = f"estimates took {time.perf_counter() - began:.3g} s"
    if join.scan_share > MAX_SCAN_SHARE:
        return AutoChoice("exact", f"{head}; ivf reaches target_recall {target_recall:g} only scanning more "
                                   f"than {MAX_SCAN_SHARE:.0%} of the rows: exact ({estimates})")
    if ivf_s >= exact_s:
        return AutoChoice("exact", f"{head}; ivf at target_recall {target_recall:g} is no cheaper: exact "
                                   f"({estimates})")
    return AutoChoice("ivf", f"{head}; cheaper at target_recall {target_recall:g}: approximate ivf "
                             f"({estimates}, the centroids reused)", join)
