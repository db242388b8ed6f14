"""The F-Graph sampler: batches of focus nodes and their F-Graphs for training (paper III-B).

A training step sees B focus nodes, each with the k nearest neighbours of its current
embedding. The F-Graphs of the whole training set (`hdml_ext.graph.FGraphs`) are built once per
rebuild (from the model's current embeddings, `rebuild`), and every batch is collated from them:

    sampler = FGraphSampler(labels, k=50, identities_per_batch=4, focus_per_identity=4, seed=0)
    sampler.rebuild(embeddings)                 # [N, D] -> sampler.fgraphs, kNN tables [N, k]
    for focus in sampler.focus_batches(epoch):  # PK batches of focus ids
        batch = sampler.collate(focus)          # distinct rows once, nodes remapped to them

Focus nodes are drawn PK-style (P identities x K focus nodes each, as in the Re-ID literature's
identity samplers), so each batch holds several identities and the link task sees positives
and negatives in every graph. An F-Graph's k+1 nodes overlap heavily with its neighbours'
graphs, so each distinct image is embedded once per batch: `nodes` indexes the batch's
`image_ids`, not the data set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import require_dim, require_int, require_tensor
from ..graph import FGraphs, build_fgraphs, cap_positive_neighbours, largest_k, require_k, require_knn_backend
from .streams import stream_generator

logger = logging.getLogger(__name__)

#: With `max_positive_share`, `rebuild` searches this many times k neighbours before capping.
WIDE_SEARCH_FACTOR = 4


def search_plan(k: int, wanted: int, device: torch.device, backend: str) -> tuple[int, torch.device]:
    """How `rebuild` searches `wanted` (>= k) neighbours per row with `backend` on `device`:
    (neighbours, device). Within `hdml_ext.graph.largest_k` (the CUDA kNN kernel's k <= 1016)
    the search is as asked; past it a wider search narrows to the limit (never below k), and a
    search that needs more than the limit for k itself runs on the CPU; either is logged as a
    warning saying what changed."""
    limit = largest_k(backend, device)
    if limit is None or wanted <= limit:
        return wanted, device
    if k <= limit:
        logger.warning("F-Graph rebuild: searching %d neighbours per row, not %d (%d x k): the %s kNN "
                       "backend on CUDA takes at most %d", limit, wanted, WIDE_SEARCH_FACTOR, backend, limit)
        return limit, device
    logger.warning("F-Graph rebuild: k = %d is above the %s kNN backend's CUDA limit %d: searching on the "
                   "CPU (or set train.knn_backend to a faiss backend)", k, backend, limit)
    return wanted, torch.device("cpu")


class FGraphBatch(NamedTuple):
    """One training batch of F-Graphs.

    image_ids: [U] int64, the distinct data-set rows the batch needs, ascending.
    nodes: [B, k+1] int64 rows of `image_ids`: nodes[b, 0] is focus[b] (the focus is node 0 of
        its own graph), then its k neighbours nearest first.
    adj: [B, k+1, k+1] bool F-Graph adjacency (`hdml_ext.graph.FGraphs.batch`).
    labels: [U] int64 class of each distinct row.
    focus: [B] int64 data-set ids of the focus nodes.

    The rows themselves are read with `hdml_ext.data.rows.read_rows(source, image_ids)`.
    """

    image_ids: Tensor
    nodes: Tensor
    adj: Tensor
    labels: Tensor
    focus: Tensor


class FGraphSampler:
    """PK batches of focus nodes and the collation of their F-Graphs.

    Args:
        labels: [N] int64 class of every training row (identities; -1 is not allowed).
        k: neighbours per F-Graph (the paper's k, 50); 1 <= k <= N - 1.
        identities_per_batch: P, identities per batch.
        focus_per_identity: K, focus nodes per identity and batch.
        seed: the batches of epoch e are a function of (seed, e) alone.
        drop_last: drop the epoch's last batch when it holds fewer than P identities.
        backend: the kNN backend of `rebuild` (`hdml_ext.graph.KNN_BACKENDS`); "exact" by
            default, the exact op on the embeddings' device.
        max_positive_share: None (the paper: each row's k nearest neighbours), or a share in
            [0, 1]: `rebuild` searches 4k neighbours and keeps at most ceil(share * k) of the
            row's own identity, the nearest other identities filling the rest
            (`hdml_ext.graph.cap_positive_neighbours`), so that training graphs hold hard
            negatives as graphs of unseen identities do.

    Per epoch every row is a focus node once: each identity's rows are shuffled and cut into
    groups of K (a last, short group is topped up with other rows of the same identity when it
    has K or more; identities with fewer than K rows give one group of all of them), and each
    batch takes one group from each of P identities drawn at random among those with groups left.
    """

    def __init__(
        self,
        labels: Tensor,
        k: int,
        *,
        identities_per_batch: int = 4,
        focus_per_identity: int = 4,
        seed: int = 0,
        drop_last: bool = False,
        backend: str = "exact",
        max_positive_share: float | None = None,
    ) -> None:
        require_tensor("labels", labels)
        require_dim("labels", labels, 1)
        if labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"labels should be an int64 tensor of class ids, got dtype {labels.dtype}")
        self.labels = labels.detach().to("cpu", torch.int64)
        num_rows = int(self.labels.shape[0])
        if num_rows < 2:
            raise ValueError(f"labels should hold at least 2 rows to build F-Graphs, got {num_rows}")
        if int(self.labels.min()) < 0:
            raise ValueError(
                f"labels should be >= 0 (junk rows must be dropped before training), "
                f"got min {int(self.labels.min())}"
            )
        self.k = require_k(k, num_rows)
        self.backend = require_knn_backend(backend)
        if max_positive_share is not None and not 0.0 <= float(max_positive_share) <= 1.0:
            raise ValueError(f"max_positive_share should be None or in [0, 1], got {max_positive_share!r}")
        self.max_positive_share = max_positive_share
        self.identities_per_batch = require_int("identities_per_batch", identities_per_batch, minimum=1)
        self.focus_per_identity = require_int("focus_per_identity", focus_per_identity, minimum=1)
        self.seed = require_int("seed", seed)
        self.drop_last = bool(drop_last)
        self.fgraphs: FGraphs | None = None
        order = torch.argsort(self.labels, stable=True)
        classes, counts = torch.unique_consecutive(self.labels[order], return_counts=True)
        self._members: list[Tensor] = list(order.split(counts.tolist()))
        self.classes = classes

    @property
    def num_rows(self) -> int:
        return int(self.labels.shape[0])

    def rebuild(self, embeddings: Tensor) -> None:
        """Build `fgraphs` from the current embeddings [N, D] (Euclidean, self excluded) with
        `build_fgraphs(embeddings, k, backend=backend)`: the search runs on the embeddings'
        device, the tables live on the CPU. With `max_positive_share`, the search keeps 4k
        neighbours and the same-identity ones are capped (class docstring). On CUDA the search
        stays within the kNN kernel's limit (`search_plan`)."""
        require_tensor("embeddings", embeddings)
        require_dim("embeddings", embeddings, 2)
        if embeddings.shape[0] != self.num_rows:
            raise ValueError(
                f"embeddings should have one row per label ({self.num_rows}), got {embeddings.shape[0]}"
            )
        wanted = self.k
        if self.max_positive_share is not None:
            wanted = min(self.num_rows - 1, WIDE_SEARCH_FACTOR * self.k)
        searched, device = search_plan(self.k, wanted, embeddings.device, self.backend)
        graphs = build_fgraphs(embeddings.to(device), searched, backend=self.backend)
        if self.max_positive_share is None:
            self.set_fgraphs(graphs)
            return
        capped = cap_positive_neighbours(graphs.to("cpu"), self.labels, self.k, self.max_positive_share)
        self.set_fgraphs(capped)

    def set_fgraphs(self, fgraphs: FGraphs) -> None:
        """Use F-Graphs built elsewhere: N = len(labels) nodes and k neighbours each; their
        tables are kept on the CPU."""
        if not isinstance(fgraphs, FGraphs):
            raise TypeError(f"fgraphs should be an hdml_ext.graph.FGraphs, got {type(fgraphs).__name__}")
        if (fgraphs.num_nodes, fgraphs.k) != (self.num_rows, self.k):
            raise ValueError(f"fgraphs should have [N, k] = [{self.num_rows}, {self.k}] tables, got "
                             f"[{fgraphs.num_nodes}, {fgraphs.k}]")
        self.fgraphs = fgraphs.to("cpu")

    def set_table(self, knn_idx: Tensor, knn_dist: Tensor) -> None:
        """Use a kNN table built elsewhere (e.g. broadcast from another process): knn_idx int64
        [N, k] and knn_dist [N, k] as `rebuild` makes them."""
        self.set_fgraphs(FGraphs(knn_idx, knn_dist, "given", "kNN tables set by the caller"))

    def _require_fgraphs(self) -> FGraphs:
        if self.fgraphs is None:
            raise RuntimeError("the sampler has no F-Graphs yet: call rebuild(embeddings) first")
        return self.fgraphs

    def focus_batches(self, epoch: int) -> list[Tensor]:
        """The focus ids of every batch of `epoch`: a list of int64 [B] tensors (B <= P * K)."""
        gen = stream_generator(self.seed, require_int("epoch", epoch, minimum=0))
        size = self.focus_per_identity
        groups: list[list[Tensor]] = []
        for members in self._members:
            shuffled = members[torch.randperm(members.numel(), generator=gen)]
            chunks = list(shuffled.split(size))
            last = chunks[-1]
            if last.numel() < size <= members.numel():
                rest = shuffled[: shuffled.numel() - last.numel()]
                extra = rest[torch.randperm(rest.numel(), generator=gen)[: size - last.numel()]]
                chunks[-1] = torch.cat([last, extra])
            groups.append(chunks)
        remaining = [len(chunks) for chunks in groups]
        batches: list[Tensor] = []
        while True:
            available = [c for c, left in enumerate(remaining) if left > 0]
            if not available:
                break
            if len(available) < self.identities_per_batch and self.drop_last:
                break
            picks = torch.randperm(len(available), generator=gen)[: self.identities_per_batch].tolist()
            parts = []
            for p in picks:
                c = available[p]
                parts.append(groups[c][len(groups[c]) - remaining[c]])
                remaining[c] -= 1
            batches.append(torch.cat(parts))
        return batches

    def collate(self, focus: Tensor | Sequence[int]) -> FGraphBatch:
        """The F-Graphs of `focus` ([B] data-set ids) as one batch.

        The distinct rows of all B graphs are listed once (`image_ids`) and `nodes` indexes
        them, so rows[nodes[b]] are the data-set rows fgraphs.nodes(focus)[b] when rows =
        read_rows(source, image_ids).
        """
        fgraphs = self._require_fgraphs()
        focus_t = torch.as_tensor(focus, dtype=torch.int64).reshape(-1).cpu()
        if focus_t.numel() == 0:
            raise ValueError("focus should hold at least one node id, got none")
        global_nodes, adj = fgraphs.batch(focus_t)
        image_ids, nodes = torch.unique(global_nodes, return_inverse=True)
        return FGraphBatch(
            image_ids=image_ids,
            nodes=nodes,
            adj=adj,
            labels=self.labels[image_ids],
            focus=focus_t,
        )

    def state_dict(self) -> dict:
        """The kNN tables (so a resumed run continues with the same graphs) and the settings."""
        fgraphs = self.fgraphs
        return {
            "k": self.k,
            "seed": self.seed,
            "knn_idx": None if fgraphs is None else fgraphs.knn_idx,
            "knn_dist": None if fgraphs is None else fgraphs.knn_dist,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict`; k must match."""
        if int(state["k"]) != self.k:
            raise ValueError(f"sampler state was saved with k={state['k']}, this sampler has k={self.k}")
        knn_idx = state["knn_idx"]
        if knn_idx is None:
            self.fgraphs = None
            return
        if tuple(knn_idx.shape) != (self.num_rows, self.k):
            raise ValueError(
                f"sampler state's knn_idx should be [{self.num_rows}, {self.k}], got {tuple(knn_idx.shape)}"
            )
        restored = FGraphs(knn_idx, state.get("knn_dist"), "given", "kNN tables restored from a state_dict")
        self.set_fgraphs(restored)
