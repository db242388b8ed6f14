"""F-Graphs of queries over a gallery (Re-ID, paper III-D): `query_fgraphs(queries, gallery, k)`.

A query's F-Graph has the query as focus (node 0) and its k nearest gallery items as the other
nodes. Its directed adjacency is the one `FGraphs.batch` gives a focus that belongs to the data:
row i lists which of node i's k nearest neighbours are in the graph, each neighbour list taken
over the gallery and the query together. So the query's row holds every gallery node; gallery
item a's row holds its k nearest gallery items in the graph, except that the query takes the
place of a's k-th when it is strictly nearer to a (a and the query are then reciprocal
neighbours, as a focus and its neighbours are in the training graphs).
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
    gallery_kth_dist: [G] each gallery item's distance to its k-th nearest gallery item.
    Node ids in `batch` index the rows of cat([gallery, queries]): gallery item g is node g,
    query q is node G + q.
    """

    table: Tensor
    num_gallery: int
    knn_dist: Tensor
    gallery_kth_dist: Tensor

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
        it, with each neighbour list over the gallery and the query (module doc))."""
        require_tensor("queries", queries)
        require_dim("queries", queries, 1)
        require_index("queries", queries)
        if queries.numel() and (int(queries.min()) < 0 or int(queries.max()) >= self.num_queries):
            raise ValueError(f"queries should lie in [0, {self.num_queries}), got values in "
                             f"[{int(queries.min())}, {int(queries.max())}]")
        queries = queries.to(self.table.device)
        focus = queries + self.num_gallery
        nodes = fgraph_nodes(self.table, focus)
        adj = ops.fgraph_adjacency(self.table, focus, symmetric=False)
        members = nodes[:, 1:]  # [B, k] gallery ids
        # Gallery items whose k-th gallery neighbour is farther than the query (ties go to the
        # gallery item, the smaller node id, as in every kNN table here).
        query_is_nearer = self.knn_dist[queries] < self.gallery_kth_dist[members]  # [B, k]
        displaced = self.table[members, -1]  # [B, k] each member's k-th gallery neighbour
        adj[:, 1:, :] &= ~((displaced[:, :, None] == nodes[:, None, :]) & query_is_nearer[:, :, None])
        adj[:, 1:, 0] = query_is_nearer
        return nodes, adj


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
    gallery = gallery.detach()
    if gallery_knn is None:
        gallery_dist, gallery_knn = ops.knn(gallery, k)
        gallery_kth_dist = gallery_dist[:, k - 1]
    else:
        require_tensor("gallery_knn", gallery_knn)
        require_index("gallery_knn", gallery_knn)
        if gallery_knn.dim() != 2 or gallery_knn.shape[0] != gallery.shape[0] or gallery_knn.shape[1] < k:
            raise ValueError(f"gallery_knn should be [G, >= k] = [{gallery.shape[0]}, >= {k}], "
                             f"got {tuple(gallery_knn.shape)}")
        gallery_knn = gallery_knn[:, :k].to(gallery.device)
        # As ops.knn gives distances: direct differences in double, rounded to the dtype.
        kth = gallery.double() - gallery.double()[gallery_knn[:, k - 1]]
        gallery_kth_dist = torch.linalg.vector_norm(kth, dim=1).to(gallery.dtype)
    knn_dist, knn_idx = ops.knn(gallery, k, queries=queries.detach())
    return QueryFGraphs(torch.cat([gallery_knn, knn_idx]), int(gallery.shape[0]), knn_dist, gallery_kth_dist)
