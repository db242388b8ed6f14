"""Pseudo-label propagation for face clustering (paper III-D, end).

Edges whose link score reaches a threshold join their nodes; the connected components are the
clusters. A component with more than max_size nodes is left for the next iteration, where only
its internal edges are kept and the threshold rises to th + (1 - th) * step; this repeats until
no component is too big or max_iter passes have run.

Connected components use a vectorised union-find on numpy arrays: every pass hooks the larger
root of each edge to the smaller one (np.minimum.at), then pointer jumping (parent = parent[parent])
flattens the trees. No recursion, no Python loop over nodes or edges; memory is O(N + E).

    from hdml_ext.cluster import propagate_knn
    labels, info = propagate_knn(nbr_idx, link_score, threshold=0.6, max_size=300)
"""

from __future__ import annotations

import numpy as np

from .._checks import as_array, as_float_array, as_int_vector, require_int, same_length

__all__ = ["connected_components", "propagate_edges", "propagate_knn"]

# The one set of defaults (`hdml cluster`, the demo and `ClusterConfig` use them).
THRESHOLD = 0.5
MAX_SIZE = 300
STEP = 0.05
MAX_ITER = 20


def _check_endpoints(num_nodes: int, src: object, dst: object) -> tuple[np.ndarray, np.ndarray]:
    src_np = as_int_vector("src", src, allow_empty=True)
    dst_np = as_int_vector("dst", dst, allow_empty=True)
    same_length(("src", "dst"), (src_np, dst_np))
    for name, ends in (("src", src_np), ("dst", dst_np)):
        if ends.size and (ends.min() < 0 or ends.max() >= num_nodes):
            raise ValueError(
                f"{name} should hold node ids in [0, {num_nodes}), got values in [{ends.min()}, {ends.max()}]"
            )
    return src_np, dst_np


def _roots(num_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Root (smallest node id) of every node's component; src, dst already checked."""
    parent = np.arange(num_nodes, dtype=np.int64)
    while True:
        root_src = parent[src]
        root_dst = parent[dst]
        low = np.minimum(root_src, root_dst)
        high = np.maximum(root_src, root_dst)
        joining = low != high
        if not joining.any():
            return parent
        # Hook: every root that is the larger end of an edge points to the smallest root it
        # meets. Parents only decrease, so no cycle can form.
        np.minimum.at(parent, high[joining], low[joining])
        # Keep only the edges still joining two trees for the next pass.
        src, dst = src[joining], dst[joining]
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def _relabel_by_first_appearance(ids: np.ndarray) -> np.ndarray:
    """Map arbitrary cluster ids [N] to 0..C-1, numbering clusters by their smallest node index."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(first.shape[0], dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0], dtype=np.int64)
    return rank[inverse.reshape(-1)]


def connected_components(num_nodes: int, src: object, dst: object) -> np.ndarray:
    """Connected components of an undirected graph.

    Args:
        num_nodes: N; nodes are 0..N-1 (nodes without edges are singletons).
        src, dst: [E] integer edge endpoints in [0, N); direction and duplicates do not matter.

    Returns labels [N] int64 in 0..C-1, numbered by first appearance: the component holding
    node 0 is 0, the component of the smallest node not in it is 1, and so on.
    """
    num_nodes = require_int("num_nodes", num_nodes, minimum=0)
    src_np, dst_np = _check_endpoints(num_nodes, src, dst)
    if num_nodes == 0:
        return np.zeros(0, dtype=np.int64)
    return _relabel_by_first_appearance(_roots(num_nodes, src_np, dst_np))


def _check_settings(threshold: object, max_size: object, step: object, max_iter: object) -> None:
    for name, value in (("threshold", threshold), ("step", step)):
        is_number = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
        if not is_number or not np.isfinite(value):
            raise ValueError(f"{name} should be a finite number, got {value!r}")
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step should be in (0, 1], got {step}")
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1
    ):
        raise ValueError(f"max_size should be a positive int or None, got {max_size!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter should be an int >= 1, got {max_iter!r}")


def propagate_edges(
    num_nodes: int,
    src: object,
    dst: object,
    score: object,
    *,
    threshold: float = THRESHOLD,
    max_size: int | None = MAX_SIZE,
    step: float = STEP,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, dict]:
    """Cluster N nodes from scored edges by thresholded connected components with size control.

    Args:
        num_nodes: N.
        src, dst: [E] integer edge endpoints in [0, N) (undirected; duplicates allowed).
        score: [E] real link score of each edge (higher = more likely the same identity).
        threshold: edges with score >= threshold are kept in the first pass.
        max_size: largest cluster accepted; None for no limit (plain connected components).
        step: after a pass, the threshold for the too-big components becomes
            th + (1 - th) * step.
        max_iter: the most passes (the first included). Components still too big then are kept
            as they are, and info says so.

    Returns (labels, info). labels: [N] int64 in 0..C-1, numbered by first appearance (the
    cluster holding node 0 is 0, ...). Nodes without a kept edge are singletons. The paper
    numbers clusters from 1: add 1 for that. info: {"iterations": passes run,
    "num_clusters": C, "num_resplit_nodes": nodes in a too-big component of the first pass,
    "num_oversized": clusters still larger than max_size, "converged": num_oversized == 0,
    "final_threshold": the threshold of the last pass}.
    """
    num_nodes = require_int("num_nodes", num_nodes, minimum=0)
    src_np, dst_np = _check_endpoints(num_nodes, src, dst)
    score_np = as_float_array("score", score, 1)
    same_length(("src", "score"), (src_np, score_np))
    _check_settings(threshold, max_size, step, max_iter)

    cluster = np.arange(num_nodes, dtype=np.int64)  # every node starts alone
    keep = score_np >= threshold
    src_np, dst_np, score_np = src_np[keep], dst_np[keep], score_np[keep]
    active = np.arange(num_nodes, dtype=np.int64)  # nodes still being clustered
    local = np.full(num_nodes, -1, dtype=np.int64)  # node id -> index into active
    big_node = np.zeros(num_nodes, dtype=bool)  # node is in a too-big component (scratch)
    th = float(threshold)
    iterations = num_resplit = num_oversized = 0
    while active.size:
        iterations += 1
        local[active] = np.arange(active.size, dtype=np.int64)
        roots = _roots(active.size, local[src_np], local[dst_np])
        local[active] = -1
        cluster[active] = active[roots]  # the smallest node id of each component
        if max_size is None:
            break
        sizes = np.bincount(roots, minlength=active.size)
        too_big = sizes[roots] > max_size  # [active.size]
        if iterations == 1:
            num_resplit = int(too_big.sum())
        if not too_big.any():
            break
        if iterations == max_iter:
            num_oversized = int((sizes > max_size).sum())
            break
        # Next pass: the nodes of too-big components, their internal edges, a higher threshold.
        th = th + (1.0 - th) * step
        active = active[too_big]
        big_node[active] = True
        keep = big_node[src_np] & (score_np >= th)  # an edge's ends share a component
        big_node[active] = False
        src_np, dst_np, score_np = src_np[keep], dst_np[keep], score_np[keep]

    labels = _relabel_by_first_appearance(cluster) if num_nodes else np.zeros(0, dtype=np.int64)
    info = {
        "iterations": iterations,
        "num_clusters": int(labels.max()) + 1 if num_nodes else 0,
        "num_resplit_nodes": num_resplit,
        "num_oversized": num_oversized,
        "converged": num_oversized == 0,
        "final_threshold": th,
    }
    return labels, info


def propagate_knn(
    nbr_idx: object,
    score: object,
    *,
    threshold: float = THRESHOLD,
    max_size: int | None = MAX_SIZE,
    step: float = STEP,
    max_iter: int = MAX_ITER,
) -> tuple[np.ndarray, dict]:
    """`propagate_edges` over a kNN table: node i is linked to nbr_idx[i, j] with score[i, j].

    Args:
        nbr_idx: [N, k] integer neighbour ids in [0, N); -1 marks a missing neighbour (as faiss
            returns) and is ignored.
        score: [N, k] real link scores (e.g. the edge head's probability that the pair shares
            an identity).
        threshold, max_size, step, max_iter: as in `propagate_edges`.

    Returns (labels [N] int64, info) as `propagate_edges`.
    """
    idx = as_array("nbr_idx", nbr_idx)
    if idx.ndim != 2:
        raise ValueError(f"nbr_idx should be 2-D [N, k], got {idx.ndim}-D with shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"nbr_idx should hold integers, got dtype {idx.dtype}")
    scores = as_float_array("score", score, 2)
    if scores.shape != idx.shape:
        raise ValueError(f"score should have the shape of nbr_idx {idx.shape}, got {scores.shape}")
    num_nodes, k = idx.shape
    if idx.size and (idx.min() < -1 or idx.max() >= num_nodes):
        raise ValueError(
            f"nbr_idx should hold node ids in [0, {num_nodes}) or -1, "
            f"got values in [{idx.min()}, {idx.max()}]"
        )
    src = np.repeat(np.arange(num_nodes, dtype=np.int64), k)
    dst = idx.reshape(-1).astype(np.int64, copy=False)
    present = dst >= 0
    return propagate_edges(
        num_nodes,
        src[present],
        dst[present],
        scores.reshape(-1)[present],
        threshold=threshold,
        max_size=max_size,
        step=step,
        max_iter=max_iter,
    )
