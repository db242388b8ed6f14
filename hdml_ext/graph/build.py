"""`build_fgraphs(features, k) -> FGraphs`: the kNN tables of every row, at any scale, by the
backend asked for or chosen by "auto" (docs/graph.md)."""

from __future__ import annotations

import logging
import os
from typing import Callable

import torch

from .._checks import require_float, require_int
from ..ops.knn import CUDA_MAX_K
from .auto import choose_backend
from .cache import fingerprint, load_cache
from .exact import Tables, exact_tables
from .faiss_backends import DEFAULT_TARGET_RECALL, faiss_flat_tables, faiss_hnsw_tables, faiss_ivf_tables
from .feature_blocks import DEFAULT_BLOCK_SIZE, FeatureBlocks, Features
from .fgraphs import FGraphs, require_k
from .ivf import ivf_tables

logger = logging.getLogger(__name__)

#: Backend name -> function(rows, k, block_size, progress, target_recall) -> (knn_dist, knn_idx, params).
_TABLE_BUILDERS: dict[str, Callable[[FeatureBlocks, int, int, bool, float], Tables]] = {
    "exact": exact_tables,
    "ivf": ivf_tables,
    "faiss-flat": faiss_flat_tables,
    "faiss-ivf": faiss_ivf_tables,
    "faiss-hnsw": faiss_hnsw_tables,
}
KNN_BACKENDS = ("auto", *_TABLE_BUILDERS)
#: The backends that find every true neighbour (their params record sample_recall 1.0).
EXACT_BACKENDS = ("exact", "faiss-flat")


def require_knn_backend(backend: object) -> str:
    """Check that `backend` is one of `KNN_BACKENDS` and return it."""
    if not isinstance(backend, str) or backend not in KNN_BACKENDS:
        raise ValueError(f"backend should be one of {', '.join(KNN_BACKENDS)}, got {backend!r}")
    return backend


def largest_k(backend: str, device: torch.device | str) -> int | None:
    """The largest k `build_fgraphs` takes with `backend` for features on `device`, besides
    N - 1: None (no other limit) on the CPU and for the faiss backends (they search on the
    host); on CUDA `ops.knn.CUDA_MAX_K` for "exact", one less for "auto" and "ivf" (their recall
    sample searches k + 1 neighbours with ops.knn)."""
    if torch.device(device).type != "cuda" or require_knn_backend(backend).startswith("faiss"):
        return None
    return CUDA_MAX_K if backend == "exact" else CUDA_MAX_K - 1


def require_target_recall(target_recall: object) -> float:
    """Check that `target_recall` is a number in (0, 1] and return it as a float."""
    value = require_float("target_recall", target_recall)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"target_recall should be a number in (0, 1], got {target_recall!r}")
    return value


def build_fgraphs(
    features: Features,
    k: int,
    *,
    backend: str = "auto",
    target_recall: float = DEFAULT_TARGET_RECALL,
    block_size: int = DEFAULT_BLOCK_SIZE,
    cache: str | os.PathLike | None = None,
    progress: bool = False,
) -> FGraphs:
    """The kNN tables of every row of `features`, from which F-Graphs are built on demand.

    Args:
        features: [N, D] floating-point rows: a torch tensor (CPU or CUDA; read detached), a
            numpy array, or a `numpy.memmap` (possibly larger than memory; read `block_size`
            rows at a time).
        k: neighbours per node, 1 <= k <= N - 1 (each F-Graph has k + 1 nodes).
        backend: one of `KNN_BACKENDS`: "auto", "exact", "ivf" (ours: an exact join within
            inverted lists, ops.knn_ivf), "faiss-flat", "faiss-ivf" or "faiss-hnsw"
            (docs/graph.md, "Backends"). "auto" takes "exact" or "ivf", whichever a cost model
            of N, D, the device and a seeded sample rates cheaper at `target_recall`
            (graph/auto.py: deterministic, no timing).
        target_recall: recall@k, on a seeded sample of rows, that "ivf" and "faiss-ivf" choose
            nprobe for, "faiss-hnsw" efSearch, and that "auto" costs ivf at; in (0, 1].
        block_size: rows per streamed block (bounds the memory besides the tables and index).
        cache: a .npz path (docs/graph.md, "Cache"). A cache built from the same features
            (same fingerprint) with >= k columns is loaded (first k columns); when the path does
            not exist, or holds a cache of other features or fewer columns, the tables are
            computed and written there. A path holding anything else raises ValueError and is
            left untouched.
        progress: show tqdm progress bars.

    Returns:
        FGraphs with knn_idx [N, k] int64 and knn_dist [N, k] float32 (Euclidean, ascending,
        self excluded), on the CPU, plus the backend used, the reason it was chosen, and params:
        the index settings, "sample_recall" (the recall@k measured on the seeded sample; 1.0 for
        the exact backends) and, when "auto" estimated costs, "auto" (its estimate).

    Raises TypeError/ValueError naming the argument: features not 2-D or not floating point,
    N < 2, k out of [1, N-1], unknown backend, target_recall not in (0, 1], bad block_size,
    NaN/inf in the features, a `cache` path that holds something else.
    """
    rows = FeatureBlocks(features)
    require_k(k, rows.num_rows)
    require_knn_backend(backend)
    target_recall = require_target_recall(target_recall)
    require_int("block_size", block_size, minimum=1)

    stamp = ""
    if cache is not None:
        stamp = fingerprint(rows)
        loaded = load_cache(cache, stamp, k)
        if loaded is not None:
            return loaded

    prepared, estimate = None, None
    if backend == "auto":
        choice = choose_backend(rows, k, target_recall)
        backend, reason, prepared, estimate = choice.backend, choice.reason, choice.ivf, choice.estimate
    else:
        reason = f"requested backend={backend!r}"
    if backend == "ivf" and rows.device.type == "cuda":
        reason += " (k-means on the CPU, the centroid search and ops.knn_ivf on the GPU)"
    elif backend != "exact" and rows.device.type == "cuda":
        reason += " (faiss-cpu: CUDA rows are copied to the host block by block)"
    logger.info("build_fgraphs: N=%d D=%d k=%d -> %s (%s)", rows.num_rows, rows.dim, k, backend, reason)
    if prepared is not None:
        knn_dist, knn_idx, params = prepared.tables(progress)
    else:
        knn_dist, knn_idx, params = _TABLE_BUILDERS[backend](rows, k, block_size, progress, target_recall)
    if backend in EXACT_BACKENDS:
        params["sample_recall"] = 1.0
    if estimate is not None:
        params["auto"] = estimate
    graphs = FGraphs(knn_idx, knn_dist, backend, reason, params)
    if cache is not None:
        graphs.save(cache, fingerprint=stamp)
    return graphs
