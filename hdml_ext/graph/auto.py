"""What `build_fgraphs(backend="auto")` runs: "exact" or "ivf", by a cost model of the inputs
(docs/graph.md, "auto"): the same features, k, device and `target_recall` always give the same
choice, whatever the machine's load (no timing).

Below a size floor (N^2 D at most `EXACT_MAX_WORK`, or `EXACT_MAX_WORK_CUDA` on a GPU) exact kNN
costs seconds and is taken without estimating. Above it, both candidates are costed in row
pairs compared (each pair is D multiply-adds), on a seeded sample of rows:

- exact: N^2 pairs (`SELF_JOIN_SHARE` of them for in-memory CPU rows, which the op joins with
  itself computing each pair once);
- ivf (graph/ivf.py): the k-means centroids are trained (seeded) on the sample, the exact
  neighbours of `IVF_SAMPLE_ROWS` seeded rows give the nprobe that reaches `target_recall` and
  the share of the rows that nprobe lists hold; its cost is the k-means (`IVF_KMEANS_ITER`
  passes of the training rows against the centroids), the centroid search (`PROBE_COST` x N x
  nlist pairs) and the join (`JOIN_COST` x the exact pairs x that share). The two factors are
  the measured cost of a pair in those steps relative to exact's.

"ivf" is taken only when its lists hold at most `MAX_SCAN_SHARE` of the rows and its cost is
below exact's; its trained state is reused. The choice, the costs, nprobe and the sample's
recall are recorded in the FGraphs' reason and params ("auto").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .faiss_backends import IVF_KMEANS_ITER
from .feature_blocks import FeatureBlocks
from .ivf import IVFJoin

# Below these N^2 D "auto" takes exact without estimating: about 46k x 64 rows, a few seconds
# of ops.knn on 2 CPU cores (on CUDA about 1M x 64).
EXACT_MAX_WORK = 2**37
EXACT_MAX_WORK_CUDA = 2**46
# In-memory CPU rows: exact is one self-join, whose symmetric schedule computes each pair once,
# half the products per row of a search with queries. Past its candidate-buffer limit (2^24
# slots, about 200k rows at k = 20) the op falls back to the blocked schedule and this halving
# underestimates exact, which errs towards exact.
SELF_JOIN_SHARE = 0.5
# Cost of a pair of rows compared, relative to exact's per pair (measured on this project's
# 2-core AMD EPYC at 200k and 1M x 64 clustered rows: 3.6-5 for the centroid search, ops.knn
# with queries on its blocked schedule; 3.4-5.3 for the join, lists of ~256 rows).
PROBE_COST = 4.0
JOIN_COST = 5.0
# The largest share of the rows a row's probed lists may hold: beyond it the lists do not
# separate the data (e.g. i.i.d. Gaussian rows) and exact is as good.
MAX_SCAN_SHARE = 0.1


@dataclass
class AutoChoice:
    """The backend "auto" chose, why (with the costs), what it decided on (recorded in the
    FGraphs' params under "auto": N^2 D and the exact limit, and above it the costs, nlist,
    nprobe, ivf's sample recall and scan share, target_recall), and for "ivf" the trained join
    whose `tables` it runs."""

    backend: str
    reason: str
    estimate: dict = field(default_factory=dict)
    ivf: IVFJoin | None = None


def choose_backend(rows: FeatureBlocks, k: int, target_recall: float) -> AutoChoice:
    """Pick "exact" or "ivf" for the kNN tables of `rows` by the cost model of the module doc:
    a function of the features (through a seeded sample), k, their device and target_recall."""
    n = rows.num_rows
    work = n**2 * rows.dim
    limit, where = (EXACT_MAX_WORK_CUDA, "CUDA") if rows.device.type == "cuda" else (EXACT_MAX_WORK, "CPU")
    floor = {"work": work, "exact_limit": limit}
    if work <= limit:
        return AutoChoice("exact", f"auto: N^2 D = {work:.3g} <= {limit:.3g} (exact limit on {where}): "
                                   "exact ops.knn costs seconds, not worth estimating", floor)
    join = IVFJoin(rows, k)
    join.train()
    join.choose_nprobe(target_recall)
    self_join = rows.device.type == "cpu" and not rows.is_memmap
    exact_pairs = float(n) ** 2 * (SELF_JOIN_SHARE if self_join else 1.0)
    train_pairs = float(IVF_KMEANS_ITER) * join.train_rows * join.nlist
    probe_pairs = PROBE_COST * exact_pairs * join.nlist / n
    join_pairs = JOIN_COST * exact_pairs * join.scan_share
    ivf_pairs = train_pairs + probe_pairs + join_pairs
    estimate = {**floor, "exact_pairs": exact_pairs, "ivf_pairs": ivf_pairs, "nlist": join.nlist,
                "nprobe": join.nprobe, "ivf_sample_recall": round(join.sample_recall, 4),
                "scan_share": round(join.scan_share, 4), "target_recall": target_recall}
    head = (f"auto: N^2 D = {work:.3g} > {limit:.3g} (exact limit on {where}); row pairs compared: exact "
            f"{exact_pairs:.3g}, ivf {ivf_pairs:.3g} (k-means {train_pairs:.2g} + centroid search "
            f"{probe_pairs:.2g} + join {join_pairs:.2g} at nprobe {join.nprobe} of {join.nlist}: sample "
            f"recall@{k} {join.sample_recall:.3f}, scanning {join.scan_share:.1%} of the rows)")
    if join.scan_share > MAX_SCAN_SHARE:
        return AutoChoice("exact", f"{head}; ivf reaches target_recall {target_recall:g} only scanning more "
                                   f"than {MAX_SCAN_SHARE:.0%} of the rows: exact", estimate)
    if ivf_pairs >= exact_pairs:
        return AutoChoice("exact", f"{head}; ivf at target_recall {target_recall:g} is no cheaper: exact",
                          estimate)
    return AutoChoice("ivf", f"{head}; cheaper at target_recall {target_recall:g}: approximate ivf (the "
                             "centroids reused)", estimate, join)
