"""Person Re-ID inference: rank the gallery for each query by HDML's link scores (paper III-D).

For a query q the F-Graph (`hdml_ext.graph.query_fgraphs`) has the query as focus (node 0) and
its k nearest gallery items as the other nodes. Its adjacency joins the query to all of them and
two gallery items a, c when c is in a's own k nearest gallery items (the gallery's kNN table,
self excluded), OR-ed both ways. The link head scores S_f (softmax of eq. 14, "same identity as
the query") for the k items; they are ranked by S first, and the rest of the gallery follows by
distance:

    result = evaluate_reid(model, query_images, gallery_images, q_pids, g_pids, q_camids, g_camids)
    result["mAP"], result["rank1"]

`distance_order` / `evaluate_orders(distance_order(...))` give the plain embedding-distance
ranking (the no-graph baseline); both are scored with the Market-1501 protocol of
`hdml_ext.metrics`. Queries are processed in blocks, so no [Q, G] matrix is held at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import require_int, require_query_gallery
from ..graph import query_fgraphs
from ..metrics.ranking import BLOCK_ENTRIES


def _block_rows(num_gallery: int, block: int | None) -> int:
    return block if block is not None else max(1, BLOCK_ENTRIES // max(num_gallery, 1))


def distance_order(
    query: Tensor, gallery: Tensor, *, block: int | None = None
) -> Iterator[tuple[slice, Tensor]]:
    """The gallery sorted by Euclidean distance to each query, best first.

    query: [Q, D], gallery: [G, D] embeddings. Yields (rows, order) per block of queries, order
    int64 [rows, G]; equal distances keep gallery order.
    """
    require_query_gallery(query, gallery)
    rows = _block_rows(gallery.shape[0], block)
    for start in range(0, query.shape[0], rows):
        stop = min(start + rows, query.shape[0])
        dist = torch.cdist(query[start:stop], gallery)
        yield slice(start, stop), torch.sort(dist, dim=1, stable=True).indices


@torch.no_grad()
def query_link_scores(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    k: int,
    *,
    batch_size: int = 256,
    gallery_knn: Tensor | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Link scores S of every query's F-Graph over the gallery.

    model: anything with `link_scores_of_nodes(table [G + Q, D], batches of (nodes, adj)) ->
    iterator of [B, k]` (HDML, HDMLOnFeatures: their per-node work runs once per gallery item,
    not once per graph holding it). query [Q, D], gallery [G, D]: embeddings on the model's device.
    Returns (neighbours, scores): int64 [Q, k] gallery ids nearest first, and float [Q, k] the
    probability that each is the query's identity. Graphs are scored `batch_size` at a time.
    gallery_knn: a precomputed int64 [G, >= k] gallery kNN table (`query_fgraphs`).
    """
    require_int("batch_size", batch_size, minimum=1)
    require_query_gallery(query, gallery)
    graphs = query_fgraphs(query, gallery, k, gallery_knn=gallery_knn)
    embeddings = torch.cat([gallery, query])
    num_query = query.shape[0]
    starts = range(0, num_query, batch_size)
    batches = (graphs.batch(torch.arange(start, min(start + batch_size, num_query))) for start in starts)
    was_training = model.training
    model.eval()
    try:
        batch_scores = model.link_scores_of_nodes(embeddings, batches)
        progress_bar = tqdm(starts, desc="scoring query graphs", disable=not progress, leave=False)
        scores = [scored.float() for _, scored in zip(progress_bar, batch_scores)]
    finally:
        model.train(was_training)
    return graphs.knn_idx, torch.cat(scores)


def graph_order(
    query: Tensor, gallery: Tensor, neighbours: Tensor, scores: Tensor, *, block: int | None = None
) -> Iterator[tuple[slice, Tensor]]:
    """The gallery ranked per query: its k graph neighbours by link score (highest first, ties
    in neighbour order), then every other item by Euclidean distance (ties in gallery order).

    query [Q, D], gallery [G, D] embeddings; neighbours int64 [Q, k] and scores [Q, k] from
    `query_link_scores`. Yields (rows, order int64 [rows, G]) per block of queries.
    """
    require_query_gallery(query, gallery)
    if neighbours.shape != scores.shape or neighbours.dim() != 2 or neighbours.shape[0] != query.shape[0]:
        raise ValueError(
            f"neighbours and scores should both be [Q, k] with Q = {query.shape[0]}, got "
            f"{tuple(neighbours.shape)} and {tuple(scores.shape)}"
        )
    rows = _block_rows(gallery.shape[0], block)
    for start in range(0, query.shape[0], rows):
        stop = min(start + rows, query.shape[0])
        nbr = neighbours[start:stop].to(gallery.device)
        dist = torch.cdist(query[start:stop], gallery)
        # Neighbours to the front (in gallery order), the rest by distance after them ...
        dist.scatter_(1, nbr, float("-inf"))
        order = torch.sort(dist, dim=1, stable=True).indices
        # ... then the front re-ordered by link score.
        by_score = torch.sort(-scores[start:stop].to(gallery.device), dim=1, stable=True).indices
        order[:, : nbr.shape[1]] = nbr.gather(1, by_score)
        yield slice(start, stop), order
