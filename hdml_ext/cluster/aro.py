"""Approximate rank-order clustering (ARO; Otto, Wang and Jain, "Clustering millions of faces by
identity", TPAMI 2018), vectorised over a kNN table.

Every face a has a list L_a = [a, its k nearest neighbours] (nearest first; a itself at rank 0),
and O_a(x) is the rank of x in L_a. For each kNN pair (a, b), b in L_a:

    d(a, b) = #{x in L_a[0 .. O_a(b)] : x not in L_b}     (how many of the faces a ranks up to b
                                                          b does not list)
    D(a, b) = (d(a, b) + d(b, a)) / min(O_a(b), O_b(a))

where, when a is not in L_b, the sum of d(b, a) runs over all of L_b and min(...) is O_a(b) (the
paper's truncation at k). Pairs with D below a threshold are merged transitively (connected
components). Only kNN pairs get a distance (the "approximate" of the name): O(N k^2) work.

    labels = aro_cluster(knn_idx, threshold=1.5)          # knn_idx: [N, k], self excluded
    labels = aro(features, k=20, threshold=1.5)            # kNN by hdml_ext.graph.build_fgraphs
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import as_array, require_int
from ..graph import build_fgraphs
from .propagation import connected_components

__all__ = ["aro", "aro_cluster", "aro_distances"]

#: Edges whose rank lookups are done at once (bounds the [chunk, k + 1] temporaries).
CHUNK_EDGES = 1 << 16


def _check_knn(knn_idx: object) -> np.ndarray:
    idx = as_array("knn_idx", knn_idx)
    if idx.ndim != 2 or idx.shape[1] < 1:
        raise ValueError(f"knn_idx should be 2-D [N, k] with k >= 1, got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"knn_idx should hold integers, got dtype {idx.dtype}")
    num_nodes = idx.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= num_nodes):
        raise ValueError(f"knn_idx should hold node ids in [0, {num_nodes}), got values in "
                         f"[{idx.min()}, {idx.max()}]")
    if np.any(idx == np.arange(num_nodes)[:, None]):
        raise ValueError("knn_idx should exclude each node itself (its row i should not hold i)")
    return idx.astype(np.int64, copy=False)


class _Ranks:
    """O_a(x) for any (a, x): the rank of x in L_a = [a, knn_idx[a]], or -1 when x is not in L_a."""

    def __init__(self, lists: np.ndarray) -> None:
        num_nodes, length = lists.shape
        self.num_nodes = num_nodes
        keys = (np.arange(num_nodes, dtype=np.int64)[:, None] * num_nodes + lists).reshape(-1)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.ranks = np.tile(np.arange(length, dtype=np.int64), num_nodes)[order]

    def __call__(self, owner: np.ndarray, member: np.ndarray) -> np.ndarray:
        keys = owner * self.num_nodes + member
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return np.where(self.keys[at] == keys, self.ranks[at], -1)


def aro_distances(knn_idx: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The approximate rank-order distance D(a, b) of every kNN pair (module docstring).

    knn_idx: [N, k] integer neighbour ids (nearest first, each row without its own node).
    Returns (src, dst, distance), each [N * k]: src[a * k + j] = a, dst = knn_idx[a, j],
    distance float64 >= 0 (0: the two lists agree up to the pair's ranks).
    """
    idx = _check_knn(knn_idx)
    num_nodes, k = idx.shape
    lists = np.concatenate([np.arange(num_nodes, dtype=np.int64)[:, None], idx], axis=1)  # [N, k + 1]
    rank_in = _Ranks(lists)
    src = np.repeat(np.arange(num_nodes, dtype=np.int64), k)
    dst = idx.reshape(-1)
    rank_ab = np.tile(np.arange(1, k + 1, dtype=np.int64), num_nodes)  # O_a(b), >= 1
    distance = np.empty(src.size, dtype=np.float64)
    columns = np.arange(k + 1, dtype=np.int64)
    for start in range(0, src.size, CHUNK_EDGES):
        a, b, o_ab = (part[start : start + CHUNK_EDGES] for part in (src, dst, rank_ab))
        o_ba = rank_in(b, a)  # -1: a is not in L_b
        # d(a, b): faces of L_a up to rank O_a(b) that L_b does not hold.
        missing_ab = rank_in(b[:, None], lists[a]) < 0  # [E, k + 1]
        d_ab = (missing_ab & (columns <= o_ab[:, None])).sum(axis=1)
        # d(b, a): faces of L_b up to rank O_b(a) (all of L_b when a is not in it) that L_a lacks.
        bound = np.where(o_ba < 0, k, o_ba)
        missing_ba = rank_in(a[:, None], lists[b]) < 0
        d_ba = (missing_ba & (columns <= bound[:, None])).sum(axis=1)
        denominator = np.where(o_ba < 0, o_ab, np.minimum(o_ab, o_ba))
        distance[start : start + a.size] = (d_ab + d_ba) / denominator
    return src, dst, distance


def aro_cluster(knn_idx: object, threshold: float) -> np.ndarray:
    """Cluster labels [N] int64 (numbered by first appearance): the connected components of the
    kNN pairs whose `aro_distances` are below `threshold`; knn_idx [N, k] as there."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise ValueError(f"threshold should be a finite number, got {threshold!r}")
    src, dst, distance = aro_distances(knn_idx)
    keep = distance < threshold
    return connected_components(as_array("knn_idx", knn_idx).shape[0], src[keep], dst[keep])


def aro(features: object, k: int, threshold: float, *, backend: str = "auto") -> np.ndarray:
    """ARO on `features` [N, D] (numpy or torch): the k nearest neighbours by Euclidean
    distance (`hdml_ext.graph.build_fgraphs` with `backend`; L2-normalise the rows first for
    cosine neighbours), then `aro_cluster`. Returns labels [N] int64."""
    require_int("k", k, minimum=1)
    graphs = build_fgraphs(torch.as_tensor(np.asarray(features, dtype=np.float32)), k, backend=backend)
    return aro_cluster(graphs.knn_idx.cpu().numpy(), threshold)
