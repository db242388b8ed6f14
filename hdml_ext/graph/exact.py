"""Exact kNN tables with `hdml_ext.ops.knn`: in one op call for in-memory rows, or streamed
block against block for a memmap; and the exact neighbours of chosen rows (`exact_knn_rows`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import ops
from .feature_blocks import DEFAULT_BLOCK_SIZE, FeatureBlocks, Features

#: What every backend returns: (knn_dist float32 [N, k], knn_idx int64 [N, k]) on the CPU, and
#: the index settings it used.
Tables = tuple[Tensor, Tensor, dict]
# Short rows recomputed per exact_knn_rows pass by repair_short_rows.
_REPAIR_CHUNK = 4096


def merge_topk(best_d: Tensor, best_i: Tensor, d: Tensor, i: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Keep the `keep` smallest (distance, then index) of two candidate lists per row."""
    dist = torch.cat([best_d, d], dim=1)
    idx = torch.cat([best_i, i], dim=1)
    order = torch.sort(idx, dim=1, stable=True).indices  # ties in distance: smaller id first
    dist, idx = dist.gather(1, order), idx.gather(1, order)
    order = torch.sort(dist, dim=1, stable=True).indices[:, :keep]
    return dist.gather(1, order), idx.gather(1, order)


def drop_self(dist: np.ndarray, idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From [b, k+1] results drop each row's own id, or the last column where it is absent."""
    mask = idx == ids[:, None]
    mask[~mask.any(axis=1), -1] = True
    mask[mask.cumsum(axis=1) > 1] = False  # defensive: exactly one dropped per row
    rows, cols = dist.shape
    return dist[~mask].reshape(rows, cols - 1), idx[~mask].reshape(rows, cols - 1)


def exact_tables(
    rows: FeatureBlocks, k: int, block_size: int, progress: bool, target_recall: float
) -> Tables:
    """Backend "exact": `Tables` with no params (recall 1, so any `target_recall` is met)."""
    if not rows.is_memmap:
        dist, idx = ops.knn(rows.whole(), k)
        return dist.float().cpu(), idx.cpu(), {}
    out_d = torch.empty(rows.num_rows, k)
    out_i = torch.empty(rows.num_rows, k, dtype=torch.int64)
    blocks = range(0, rows.num_rows, block_size)
    bar = tqdm(total=len(blocks) ** 2, desc="exact kNN (blocks)", disable=not progress, leave=False)
    for q_start in blocks:
        q_stop = min(q_start + block_size, rows.num_rows)
        queries = rows.block(q_start, q_stop)
        best_d = queries.new_full((q_stop - q_start, 0), math.inf)
        best_i = torch.empty((q_stop - q_start, 0), dtype=torch.int64)
        for start in blocks:
            block = queries if start == q_start else rows.block(start, min(start + block_size, rows.num_rows))
            d, i = ops.knn(block, min(k + 1, block.shape[0]), queries=queries)
            best_d, best_i = merge_topk(best_d, best_i, d, i + start, k + 1)
            bar.update()
        dist, idx = drop_self(best_d.numpy(), best_i.numpy(), np.arange(q_start, q_stop))
        out_d[q_start:q_stop] = torch.from_numpy(dist).float()
        out_i[q_start:q_stop] = torch.from_numpy(idx)
    bar.close()
    return out_d, out_i, {}


def exact_knn_rows(
    features: Features | FeatureBlocks,
    ids: np.ndarray,
    k: int,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN of the rows `ids` among all rows of `features`, self excluded, in one pass.

    features: [N, D] tensor, array or memmap (streamed in `block_size` rows). ids: [M] int64.
    Returns (dist [M, k] float32 Euclidean, idx [M, k] int64), nearest first, ties to the
    smaller index. Used to measure recall and to repair short approximate rows.
    """
    rows = features if isinstance(features, FeatureBlocks) else FeatureBlocks(features)
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    queries = rows.rows(ids[order])
    keep = k + 1
    best_d = queries.new_full((ids.size, 0), math.inf)
    best_i = torch.empty((ids.size, 0), dtype=torch.int64, device=queries.device)
    for start in tqdm(range(0, rows.num_rows, block_size), desc="exact kNN of sampled rows",
                      disable=not progress, leave=False):
        block = rows.block(start, min(start + block_size, rows.num_rows)).to(queries.device)
        d, i = ops.knn(block, min(keep, block.shape[0]), queries=queries)
        best_d, best_i = merge_topk(best_d, best_i, d, i + start, keep)
    dist, idx = drop_self(best_d.float().cpu().numpy(), best_i.cpu().numpy(), ids[order])
    out_d, out_i = np.empty_like(dist), np.empty_like(idx)
    out_d[order], out_i[order] = dist, idx
    return out_d, out_i


def repair_short_rows(rows: FeatureBlocks, out_d: np.ndarray, out_i: np.ndarray, k: int,
                      block_size: int = DEFAULT_BLOCK_SIZE) -> int:
    """Recompute exactly, in place, the rows of an approximate backend's tables [N, k] with
    missing (-1) neighbours; returns how many there were."""
    short = np.flatnonzero((out_i < 0).any(axis=1))
    for start in range(0, short.size, _REPAIR_CHUNK):
        ids = short[start : start + _REPAIR_CHUNK]
        out_d[ids], out_i[ids] = exact_knn_rows(rows, ids, k, block_size=block_size)
    return int(short.size)


def exact_knn(features: Tensor, k: int, *, queries: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`hdml_ext.ops.knn` for callers outside graph/ that need the distances in the features'
    own dtype (k-reciprocal re-ranking compares them with its own): (dist [M, k] Euclidean,
    ascending, idx int64 [M, k]) on the features' device; queries None: each row's nearest
    other rows."""
    return ops.knn(features, k, queries=queries)
