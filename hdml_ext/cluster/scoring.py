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
from ..nn import FGraphLinkModel

#: F-Graphs per batch on the CPU: the fused kernel's GEMMs are sized by its tiles, not by the
#: batch, so a batch only needs to be large enough to hide the per-batch Python work (node sets,
#: adjacency, checks; about 1% at 256 graphs) and to share its tiles evenly between threads.
CPU_BATCH = 2048

#: Bounds of the batch sized from a GPU's free memory (`scoring_batch_size`), and the share of
#: the free memory a batch's activations may take.
GPU_BATCH_RANGE = (256, 16384)
GPU_MEMORY_SHARE = 0.25

#: Bytes that `link_edges` lets an `FGraphLinkModel` hold for the first RE-GCN projection of all
#: N rows ([N, 2 * gcn_dims[0]]): 1M rows at gcn_dims[0] = 256 take 2 GiB in float32. Beyond it
#: each batch projects its own graphs' rows (about 20% more multiply-adds at k = 20).
MAX_PROJECTED_BYTES = 4 << 30


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


def scoring_batch_size(model: nn.Module, device: torch.device, k: int) -> int:
    """F-Graphs per scoring batch on `device`: `CPU_BATCH` on the CPU; on a GPU, as many as fit in
    `GPU_MEMORY_SHARE` of its free memory by the module path's activations (per graph about
    2 x 4 bytes x (k + 1) x (2 d_0 + 6 sum(d_l)), the RE-GCN widths d_l of an `FGraphLinkModel`,
    1536 each otherwise), within `GPU_BATCH_RANGE`, a multiple of 256."""
    if device.type != "cuda":
        return CPU_BATCH
    dims = model.regcn.dims if isinstance(model, FGraphLinkModel) else (1536,)
    per_graph = 2 * 4 * (k + 1) * (2 * dims[0] + 6 * sum(dims))
    free, _ = torch.cuda.mem_get_info(device)
    low, high = GPU_BATCH_RANGE
    fitting = int(GPU_MEMORY_SHARE * free) // per_graph // 256 * 256
    return max(low, min(high, fitting))


def locality_order(knn_idx: Tensor) -> Tensor:
    """The N foci of an [N, k] kNN table in an order where consecutive F-Graphs share many of
    their nodes, int64 [N] on knn_idx's device.

    The foci are sorted (stably) by the smallest node id of their F-Graph, min(f, knn_idx[f]):
    the members of one tight cluster mostly share it, so their graphs are scored together and
    read each other's rows of the projected table from cache. One pass over the table and a
    sort. Measured on bench_scoring's 50,000 rows (k = 20, clusters of 50): 32 consecutive
    F-Graphs hold 113 distinct nodes on average against 668 in index order, and the fused kernel
    scores about 10% more graphs/s (one thread; medians of 4 interleaved runs of 16,384 graphs).
    """
    self_ids = torch.arange(knn_idx.shape[0], device=knn_idx.device)
    key = torch.minimum(self_ids, knn_idx.min(dim=1).values) if knn_idx.shape[1] else self_ids
    return torch.sort(key, stable=True).indices


@torch.no_grad()
def link_edges(
    model: nn.Module,
    embeddings: Tensor,
    k: int,
    *,
    batch_size: int | None = None,
    knn_idx: Tensor | FGraphs | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The scored edges of every node's F-Graph.

    model: anything with `link_scores_of_nodes(table [N, D], batches of (nodes, adj)) ->
    iterator of [B, k]` (HDML, HDMLOnFeatures). embeddings: [N, D] on the model's device.
    knn_idx: precomputed `FGraphs` or [N, >= k] table, or None to build them (`node_fgraphs`).
    batch_size: F-Graphs per batch, or None to size it for the device (`scoring_batch_size`).
    Returns (src, dst, score), each [N * k]: src[i * k + j] = i, dst = its j-th neighbour,
    score = the link probability (same identity), on the CPU.

    Each batch of `batch_size` F-Graphs builds its node sets and adjacency on demand; held for
    all N are the [N, k] neighbour and score tables and the model's per-node work (HDML's first
    RE-GCN projection, [N, 2 * gcn_dims[0]], computed once rather than once per graph member,
    while it fits in `MAX_PROJECTED_BYTES`). The foci are taken in `locality_order`, so that
    graphs scored together share their rows. On the CPU an `FGraphLinkModel` scores float32
    rows with the fused `hdml_ext.ops.fgraph_scores` kernel (`hdml_ext.nn.link_inference`).
    """
    if batch_size is None:
        batch_size = scoring_batch_size(model, embeddings.device, k)
    require_int("batch_size", batch_size, minimum=1)
    graphs = node_fgraphs(embeddings, k, knn_idx, progress=progress)
    num_nodes = embeddings.shape[0]
    order = locality_order(graphs.knn_idx)
    starts = range(0, num_nodes, batch_size)
    batches = (graphs.batch(order[start : start + batch_size]) for start in starts)
    order_cpu = order.cpu()
    scores = torch.empty(num_nodes, k)
    was_training = model.training
    model.eval()
    try:
        options = {"max_projected_bytes": MAX_PROJECTED_BYTES} if isinstance(model, FGraphLinkModel) else {}
        batch_scores = model.link_scores_of_nodes(embeddings, batches, **options)
        for start, scored in zip(
            tqdm(starts, desc="scoring F-Graphs", disable=not progress, leave=False), batch_scores
        ):
            scores[order_cpu[start : start + scored.shape[0]]] = scored.float().cpu()
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


