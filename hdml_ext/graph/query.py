"""F-Graphs of queries over a gallery (Re-ID, paper III-D): `query_fgraphs(queries, gallery, k)`.

A query's F-Graph has the query as focus (node 0) and its k nearest gallery items as the other
nodes. Its adjacency joins the query to all of them, and two gallery items a, c when c is among
a's own k nearest gallery items (the gallery's kNN table, self excluded), OR-ed both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import ops
from .._checks import require_dim, require_index, require_tensor
from .fgraphs import fgraph_nodes, require_k


@dataclass
class QueryFGraphs:
    """The F-Graphs of Q queries over a gallery of G items.

    table: int64 [G + Q, k]: rows 0..G-1 the gallery's own kNN table (gallery ids, self
        excluded), row G + q the k nearest gallery ids of query q, nearest first.
    num_gallery: G.
    knn_dist: [Q, k] the queries' Euclidean distances to those items (the embeddings' dtype).
    Node ids in `batch` index the rows of cat([gallery, queries]): gallery item g is node g,
    query q is node G + q.
    """

    table: Tensor
    num_gallery: int
    knn_dist: Tensor

    @property
    def gallery_knn(self) -> Tensor:
        """int64 [G, k] the gallery's own kNN table."""
        return self.table[: self.num_gallery]

    @property
    def knn_idx(self) -> Tensor:
        """int64 [Q, k] each query's k nearest gallery ids, nearest first."""
        return self.table[self.num_gallery :]

    @property
    def num_queries(self) -> int:
        """Q, the number of queries."""
        return int(self.table.shape[0]) - self.num_gallery

    @property
    def k(self) -> int:
        """Gallery items per query graph: each F-Graph has k + 1 nodes."""
        return int(self.table.shape[1])

    def batch(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """The F-Graphs of `queries` ([B] int64 query ids in [0, Q)): (nodes int64 [B, k+1]
        into cat([gallery, queries]), adj bool [B, k+1, k+1] directed as `FGraphs.batch` gives
        it: `ops.fgraph_adjacency(..., symmetric=False)`)."""
        require_tensor("queries", queries)
        require_dim("queries", queries, 1)
        require_index("queries", queries)
        if queries.numel() and (int(queries.min()) < 0 or int(queries.max()) >= self.num_queries):
            raise ValueError(f"queries should lie in [0, {self.num_queries}), got values in "
                             f"[{int(queries.min())}, {int(queries.max())}]")
        focus = queries.to(self.table.device) + self.num_gallery
        return fgraph_nodes(self.table, focus), ops.fgraph_adjacency(self.table, focus, symmetric=False)


def query_fgraphs(
    queries: Tensor, gallery: Tensor, k: int, *, gallery_knn: Tensor | None = None
) -> QueryFGraphs:
    """The F-Graphs of every row of `queries` over `gallery` (exact kNN, `hdml_ext.ops.knn`).

    queries [Q, D], gallery [G, D]: embeddings of one dtype, on one device (the tables stay
    there). k: 1 <= k <= G - 1. gallery_knn: a precomputed int64 [G, >= k] gallery table
    (nearest first, self excluded; its first k columns are used), or None to compute it.
    """
    for name, rows in (("queries", queries), ("gallery", gallery)):
        require_tensor(name, rows)
        require_dim(name, rows, 2)
    require_k(k, gallery.shape[0], nodes="G")
    if gallery_knn is None:
        gallery_knn = ops.knn(gallery.detach(), k)[1]
    else:
        require_tensor("gallery_knn", gallery_knn)
        require_index("gallery_knn", gallery_knn)
        if gallery_knn.dim() != 2 or gallery_knn.shape[0] != gallery.shape[0] or gallery_knn.shape[1] < k:
            raise ValueError(f"gallery_knn should be [G, >= k] = [{gallery.shape[0]}, >= {k}], "
                             f"got {tuple(gallery_knn.shape)}")
    knn_dist, knn_idx = ops.knn(gallery.detach(), k, queries=queries.detach())
    table = torch.cat([gallery_knn[:, :k].to(knn_idx.device), knn_idx])
    return QueryFGraphs(table, int(gallery.shape[0]), knn_dist)
