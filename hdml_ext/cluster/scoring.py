"""Scored kNN edges for face clustering (paper III-D, end): every node is the focus of its own
F-Graph (its k nearest neighbours by Euclidean distance, `hdml_ext.graph.FGraphs`) and the link
head scores each (focus, neighbour) pair (`link_edges`); `similarity_edges` scores the same
edges by cosine similarity, the no-graph baseline."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import require_dim, require_int, require_tensor
from ..graph import FGraphs, build_fgraphs


def node_fgraphs(
    embeddings: Tensor, k: int, knn_idx: Tensor | FGraphs | None = None, *, progress: bool = False
) -> FGraphs:
    """The F-Graphs of every row of `embeddings` ([N, D]) with k neighbours, on its device.

    knn_idx: precomputed `FGraphs` (from `hdml_ext.graph.build_fgraphs`) or an int64 [N, >= k]
    table (nearest first, self excluded), of which the first k columns are used; None:
    `build_fgraphs(embeddings, k)` (backend "auto": exact while that is fast, an approximate
    index for large N).
    """
    require_tensor("embeddings", embeddings)
    require_dim("embeddings", embeddings, 2)
    num_nodes = embeddings.shape[0]
    if knn_idx is None:
        graphs = build_fgraphs(embeddings, k, progress=progress)
    else:
        graphs = knn_idx if isinstance(knn_idx, FGraphs) else FGraphs(knn_idx)
        require_int("k", k, minimum=1)
        if graphs.num_nodes != num_nodes or graphs.k < k:
            raise ValueError(
                f"knn_idx should be [N, >= k] = [{num_nodes}, >= {k}], got {tuple(graphs.knn_idx.shape)}"
            )
    return graphs.with_k(k).to(embeddings.device)


@torch.no_grad()
def link_edges(
    model: nn.Module,
    embeddings: Tensor,
    k: int,
    *,
    batch_size: int = 256,
    knn_idx: Tensor | FGraphs | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The scored edges of every node's F-Graph.

    model: anything with `link_scores_of_nodes(table [N, D], batches of (nodes, adj)) ->
    iterator of [B, k]` (HDML, HDMLOnFeatures). embeddings: [N, D] on the model's device.
    knn_idx: precomputed `FGraphs` or [N, >= k] table, or None to build them (`node_fgraphs`).
    Returns (src, dst, score), each [N * k]: src[i * k + j] = i, dst = its j-th neighbour,
    score = the link probability (same identity), on the CPU.

    Each batch of `batch_size` F-Graphs builds its node sets and adjacency on demand; held for
    all N are the [N, k] neighbour and score tables and the model's per-node work (HDML's first
    RE-GCN projection, [N, 2 * gcn_dims[0]], computed once rather than once per graph member).
    """
    require_int("batch_size", batch_size, minimum=1)
    graphs = node_fgraphs(embeddings, k, knn_idx, progress=progress)
    num_nodes = embeddings.shape[0]
    starts = range(0, num_nodes, batch_size)
    batches = (graphs.batch(torch.arange(start, min(start + batch_size, num_nodes), device=embeddings.device))
               for start in starts)
    scores = torch.empty(num_nodes, k)
    was_training = model.training
    model.eval()
    try:
        batch_scores = model.link_scores_of_nodes(embeddings, batches)
        for start, scored in zip(
            tqdm(starts, desc="scoring F-Graphs", disable=not progress, leave=False), batch_scores
        ):
            scores[start : start + scored.shape[0]] = scored.float().cpu()
    finally:
        model.train(was_training)
    src = torch.arange(num_nodes).repeat_interleave(k)
    return src, graphs.knn_idx.cpu().reshape(-1), scores.reshape(-1)


@torch.no_grad()
def similarity_edges(
    embeddings: Tensor, k: int, *, knn_idx: Tensor | FGraphs | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The no-graph counterpart of `link_edges`: the same kNN edges, scored by the cosine
    similarity of the two embeddings instead of a link head.

    embeddings: [N, D]. knn_idx: as in `link_edges`.
    Returns (src, dst, score), each [N * k], laid out as `link_edges`' (score in [-1, 1]), on
    the CPU, so that `propagation.propagate_edges` clusters them with the very same procedure.
    """
    knn_idx = node_fgraphs(embeddings, k, knn_idx).knn_idx
    num_nodes = embeddings.shape[0]
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    score = (unit[:, None, :] * unit[knn_idx]).sum(-1).clamp(-1.0, 1.0)
    src = torch.arange(num_nodes).repeat_interleave(k)
    return src, knn_idx.cpu().reshape(-1), score.cpu().reshape(-1)


