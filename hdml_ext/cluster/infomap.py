"""Infomap (the map equation; Rosvall and Bergstrom 2008, the `infomap` package) over scored kNN
edges, run the way face-cluster-by-infomap runs it on face features: every kNN edge (i, j) whose
score reaches a floor becomes a directed link i -> j weighted by the score, Infomap finds a
two-level partition ("--two-level --directed"), and the nodes left without a link are
singletons.

    labels, info = infomap_edges(N, src, dst, score, min_score=0.6)
    labels, info = infomap_knn(features, k=20, min_score=0.6)   # cosine-weighted kNN graph
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import as_float_array, require_int, same_length
from ..graph import build_fgraphs
from .propagation import _check_endpoints, _relabel_by_first_appearance

__all__ = ["INFOMAP_OPTIONS", "cosine_knn_edges", "infomap_edges", "infomap_knn"]

#: The options face-cluster-by-infomap passes (two levels: one partition, no hierarchy).
INFOMAP_OPTIONS = "--two-level --directed"


def infomap_edges(
    num_nodes: int,
    src: object,
    dst: object,
    score: object,
    *,
    min_score: float | None = None,
    num_trials: int = 1,
    seed: int = 123,
) -> tuple[np.ndarray, dict]:
    """Infomap's modules of the graph of scored edges.

    Args:
        num_nodes: N; nodes are 0..N-1.
        src, dst: [E] integer edge endpoints in [0, N); each edge is the directed link src -> dst.
        score: [E] real edge weight (link probability or cosine similarity); edges with a score
            <= 0, below `min_score`, or from a node to itself are dropped.
        min_score: the floor (None: every positive score is kept).
        num_trials: Infomap's trials (it keeps the shortest code length).
        seed: Infomap's random seed (the same seed gives the same partition).

    Returns (labels [N] int64 in 0..C-1 numbered by first appearance, info {"num_clusters",
    "num_links": links given to Infomap, "codelength"}).
    """
    import infomap

    num_nodes = require_int("num_nodes", num_nodes, minimum=0)
    src_np, dst_np = _check_endpoints(num_nodes, src, dst)
    score_np = as_float_array("score", score, 1)
    same_length(("src", "score"), (src_np, score_np))
    if min_score is not None and not np.isfinite(min_score):
        raise ValueError(f"min_score should be a finite number or None, got {min_score!r}")
    require_int("num_trials", num_trials, minimum=1)
    keep = (score_np > 0) & (src_np != dst_np)
    if min_score is not None:
        keep &= score_np >= min_score
    src_np, dst_np, score_np = src_np[keep], dst_np[keep], score_np[keep]

    modules = np.arange(num_nodes, dtype=np.int64) + num_nodes  # singletons unless linked
    codelength = 0.0
    if src_np.size:
        runner = infomap.Infomap(INFOMAP_OPTIONS, silent=True, seed=int(seed), num_trials=int(num_trials))
        runner.add_links(zip(src_np.tolist(), dst_np.tolist(), score_np.tolist()))
        result = runner.run()
        if result is None:  # infomap < 2.16: the results live on the runner
            result = runner
        found = result.modules() if callable(result.modules) else runner.get_modules()
        nodes = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
        modules[nodes] = np.fromiter(found.values(), dtype=np.int64, count=len(found))
        codelength = float(result.codelength)
    labels = _relabel_by_first_appearance(modules) if num_nodes else np.zeros(0, dtype=np.int64)
    info = {"num_clusters": int(labels.max()) + 1 if num_nodes else 0, "num_links": int(src_np.size),
            "codelength": codelength}
    return labels, info


def cosine_knn_edges(features: object, k: int, *, backend: str = "auto") -> tuple[np.ndarray, ...]:
    """The k nearest neighbours of every row of `features` [N, D] by cosine similarity (the
    Euclidean neighbours of the L2-normalised rows, `build_fgraphs` with `backend`), as (src,
    dst, cosine), each [N * k], src[i * k + j] = i."""
    require_int("k", k, minimum=1)
    unit = torch.nn.functional.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=1)
    knn_idx = build_fgraphs(unit, k, backend=backend).knn_idx.cpu()
    cosine = (unit[:, None, :] * unit[knn_idx]).sum(-1).clamp(-1.0, 1.0)
    src = np.repeat(np.arange(unit.shape[0], dtype=np.int64), k)
    return src, knn_idx.reshape(-1).numpy(), cosine.reshape(-1).numpy().astype(np.float64)


def infomap_knn(
    features: object, k: int, *, min_score: float | None = None, backend: str = "auto", **options: int
) -> tuple[np.ndarray, dict]:
    """Infomap over the cosine-weighted kNN graph of `features` [N, D] (face-cluster-by-infomap's
    baseline): `cosine_knn_edges`, then `infomap_edges` with `min_score` (its min_sim) and
    `options` (num_trials, seed)."""
    src, dst, cosine = cosine_knn_edges(features, k, backend=backend)
    return infomap_edges(src.size // k, src, dst, cosine, min_score=min_score, **options)
