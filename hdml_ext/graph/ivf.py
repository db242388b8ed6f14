"""Backend "ivf": our own all-kNN graph over inverted lists (`ops.knn_ivf`), the self-join that
clustering needs, at a recall chosen before any row is searched (docs/graph.md, "Backends").

1. `train`: k-means (faiss) on a seeded sample gives `nlist` centroids, about
   `IVF_ROWS_PER_LIST` rows per list; each row's home list is its nearest centroid.
2. `choose_nprobe`: every row will search its `nprobe` nearest lists, and the search is exact
   within them, so recall@k is the share of true neighbours whose home list is among them. On
   the recall sample (`IVF_SAMPLE_ROWS` seeded rows whose exact neighbours are known) that
   share is counted for every nprobe at once, and nprobe is the smallest whose sample recall,
   less two standard errors (over the sampled rows), reaches `target_recall`: no trial searches.
3. `tables`: each row's nprobe nearest centroids (`ops.knn`), the rows grouped by home list,
   then `ops.knn_ivf` (GEMMs per pair of lists, a running top-k per row, exact refinement).
   Rows whose lists held fewer than k other rows are recomputed exactly.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import ops
from .exact import Tables, exact_knn_rows, repair_short_rows
from .faiss_backends import IVF_KMEANS_ITER, IVF_TRAIN_PER_LIST, SEED, faiss_module
from .feature_blocks import FeatureBlocks

#: Rows per inverted list: each list is one GEMM operand; smaller lists scan fewer rows for the
#: same recall, larger ones make the GEMMs and the centroid search cheaper.
IVF_ROWS_PER_LIST = 256
#: Rows whose exact neighbours choose nprobe (their recall's standard error is about 0.005 at
#: recall 0.95 on clustered 1M x 64 rows; 256 rows missed the target by 0.011 there).
IVF_SAMPLE_ROWS = 1024
#: Standard errors of the sample recall kept as a margin above `target_recall`.
IVF_RECALL_MARGIN_SE = 2.0


def ivf_sample_ids(num_rows: int) -> np.ndarray:
    """The seeded, sorted sample of min(N, `IVF_SAMPLE_ROWS`) rows that choose nprobe."""
    return np.sort(np.random.default_rng(SEED).choice(num_rows, size=min(num_rows, IVF_SAMPLE_ROWS),
                                                      replace=False))


def ivf_nlist(num_rows: int) -> int:
    """Lists for N rows: about `IVF_ROWS_PER_LIST` rows each, at least 1, at most N / 20."""
    return max(1, min(round(num_rows / IVF_ROWS_PER_LIST), num_rows // IVF_TRAIN_PER_LIST))


class IVFJoin:
    """The "ivf" backend in steps that "auto" (graph/auto.py) can time and stop between.

    rows, k: the features and neighbours per row; truth: the exact neighbours [M, k] of the
    rows `ivf_sample_ids(N)` (computed when not given). After `train`: nlist, centroids [nlist, D].
    list_share [nlist] (each list's share of the training rows' homes). After `choose_nprobe`:
    nprobe, sample_recall (the recall@k the join will have on the sample) and scan_share (the
    mean share of all rows that a sampled row's nprobe lists hold, by list_share).
    """

    def __init__(self, rows: FeatureBlocks, k: int, truth: np.ndarray | None = None) -> None:
        self.rows, self.k = rows, k
        self.sample = ivf_sample_ids(rows.num_rows)
        self.truth = exact_knn_rows(rows, self.sample, k)[1] if truth is None else truth
        self.nlist = ivf_nlist(rows.num_rows)
        self.centroids: Tensor | None = None
        self.list_share: Tensor | None = None
        self.nprobe, self.sample_recall, self.scan_share = 0, 0.0, 0.0
        self.train_rows = 0

    def train(self) -> None:
        """k-means centroids (faiss, `IVF_KMEANS_ITER` rounds, seeded) on a sample of
        `IVF_TRAIN_PER_LIST` rows per list."""
        faiss = faiss_module()
        n = self.rows.num_rows
        size = min(n, IVF_TRAIN_PER_LIST * self.nlist)
        train_ids = np.sort(np.random.default_rng(SEED).choice(n, size=size, replace=False))
        self.train_rows = int(train_ids.size)
        train = self.rows.numpy_rows(train_ids)
        kmeans = faiss.Kmeans(self.rows.dim, self.nlist, niter=IVF_KMEANS_ITER, seed=SEED,
                              min_points_per_centroid=IVF_TRAIN_PER_LIST // 2,
                              max_points_per_centroid=IVF_TRAIN_PER_LIST)
        kmeans.train(train)
        self.centroids = torch.from_numpy(np.ascontiguousarray(kmeans.centroids))
        homes = self._nearest_lists(torch.from_numpy(train), 1)[:, 0]
        self.list_share = torch.bincount(homes, minlength=self.nlist).double() / train.shape[0]

    def _nearest_lists(self, x: Tensor, count: int) -> Tensor:
        """The `count` nearest centroids of the rows x [M, D], nearest first: [M, count] int64."""
        return ops.knn(self.centroids.to(x.device, x.dtype), count, queries=x)[1]

    def choose_nprobe(self, target_recall: float) -> None:
        """The smallest nprobe at which the sample's true neighbours lie in the probed lists for
        a share that, less `IVF_RECALL_MARGIN_SE` standard errors, reaches `target_recall`
        (module doc, step 2); with the sample_recall and scan_share it gives."""
        queries = self.rows.rows(self.sample).cpu()
        ranking = self._nearest_lists(queries, self.nlist)  # [M, nlist]
        rank = torch.empty_like(ranking)
        rank.scatter_(1, ranking, torch.arange(self.nlist).expand_as(ranking))
        neighbours, where = np.unique(self.truth, return_inverse=True)
        homes = self._nearest_lists(self.rows.rows(neighbours).cpu(), 1)[:, 0]
        home = homes[torch.from_numpy(where.reshape(-1))].view(self.truth.shape)
        needed = rank.gather(1, home)  # [M, k]: the probes each neighbour needs, less one
        found = torch.zeros(ranking.shape, dtype=torch.float64).scatter_add_(
            1, needed, torch.ones(needed.shape, dtype=torch.float64)).cumsum(1) / self.k  # [M, nlist]
        recall = found.mean(0)  # at nprobe = i + 1
        standard_error = found.std(0, correction=1) / math.sqrt(found.shape[0]) if found.shape[0] > 1 else 0.0
        reaching = torch.nonzero(recall - IVF_RECALL_MARGIN_SE * standard_error >= target_recall - 1e-12)
        self.nprobe = int(reaching[0, 0]) + 1 if reaching.numel() else self.nlist
        self.sample_recall = float(recall[self.nprobe - 1])
        self.scan_share = float(self.list_share[ranking[:, :self.nprobe]].sum(1).mean())

    def tables(self, progress: bool = False) -> Tables:
        """All rows' neighbours at the chosen nprobe: `Tables` with params {nlist, nprobe,
        train_rows, kmeans_iter, sample_recall, sample_size, repaired_rows, probe_seconds,
        join_seconds}. progress: a tqdm bar over the two steps (each one op call)."""
        x = self.rows.whole()
        bar = tqdm(total=2, desc=f"ivf: each row's {self.nprobe} nearest of {self.nlist} lists",
                   disable=not progress, leave=False)
        started = time.perf_counter()
        probe = self._nearest_lists(x, self.nprobe)
        home = probe[:, 0]
        list_ids = torch.argsort(home, stable=True)
        list_ptr = torch.zeros(self.nlist + 1, dtype=torch.int64, device=x.device)
        list_ptr[1:] = torch.bincount(home, minlength=self.nlist).cumsum(0)
        probed_s = _seconds_since(started, x)
        bar.update()
        bar.set_description(f"ivf: join of {self.rows.num_rows:,} rows (ops.knn_ivf)")
        dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, self.k)
        bar.update()
        bar.close()
        joined_s = _seconds_since(started, x) - probed_s
        out_d, out_i = dist.float().cpu().numpy(), idx.cpu().numpy()
        repaired = repair_short_rows(self.rows, out_d, out_i, self.k)
        params = {"nlist": self.nlist, "nprobe": self.nprobe, "train_rows": self.train_rows,
                  "kmeans_iter": IVF_KMEANS_ITER, "sample_recall": round(self.sample_recall, 4),
                  "sample_size": int(self.sample.size), "repaired_rows": repaired,
                  "probe_seconds": round(probed_s, 3), "join_seconds": round(joined_s, 3)}
        return torch.from_numpy(out_d), torch.from_numpy(out_i), params


def _seconds_since(started: float, x: Tensor) -> float:
    """Wall seconds since `started` (time.perf_counter), once x's GPU has finished its work."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - started


def ivf_tables(rows: FeatureBlocks, k: int, block_size: int, progress: bool, target_recall: float) -> Tables:
    """Backend "ivf" (module doc): `Tables` with `IVFJoin.tables`'s params. Holds all rows in
    memory (a memmap is read whole); CUDA rows are searched on their GPU (the k-means on the CPU)."""
    with tqdm(total=2, desc="ivf: exact neighbours of the recall sample", disable=not progress,
              leave=False) as bar:
        join = IVFJoin(rows, k)
        bar.update()
        bar.set_description(f"ivf: k-means, {join.nlist} lists")
        join.train()
        bar.update()
    join.choose_nprobe(target_recall)
    return join.tables(progress)
