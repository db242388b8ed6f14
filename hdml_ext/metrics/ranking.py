"""Re-ID ranking metrics under the Market-1501 protocol: mAP, CMC and mINP.

Queries are scored block by block, so no [Q, G] temporary is held at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from .._checks import as_array, as_float_array, as_int_vector, require_int, same_length

__all__ = ["BLOCK_ENTRIES", "rank_metrics", "rank_metrics_from_blocks", "rank_metrics_from_order"]

#: Entries of a [block, G] temporary per block of queries (about 16 MB of float32, 32 MB of
#: int64): Market-1501's 3,368 x 15,913 never exists at once. The one block size of the
#: package's query-by-gallery work (these metrics, `hdml_ext.reid`'s rankings and re-ranking).
BLOCK_ENTRIES = 1 << 22


class _Ids(NamedTuple):
    """The checked id arrays: pids and camids [Q] of the queries, [G] of the gallery, int64."""

    qp: np.ndarray
    gp: np.ndarray
    qc: np.ndarray
    gc: np.ndarray


def _check_ids(
    num_queries: int, num_gallery: int, q_pids: object, g_pids: object, q_camids: object, g_camids: object
) -> _Ids:
    """Convert the id arrays and check them against the [Q, G] shape of the ranking."""
    qp = as_int_vector("q_pids", q_pids)
    gp = as_int_vector("g_pids", g_pids)
    qc = as_int_vector("q_camids", q_camids)
    gc = as_int_vector("g_camids", g_camids)
    same_length(("q_pids", "q_camids"), (qp, qc))
    same_length(("g_pids", "g_camids"), (gp, gc))
    if qp.shape[0] != num_queries:
        raise ValueError(
            f"q_pids should have one entry per row of the ranking ({num_queries}), got {qp.shape[0]}"
        )
    if gp.shape[0] != num_gallery:
        raise ValueError(
            f"g_pids should have one entry per column of the ranking ({num_gallery}), got {gp.shape[0]}"
        )
    return _Ids(qp, gp, qc, gc)


def _require_non_empty(name: str, shape: tuple[int, ...]) -> None:
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} should be non-empty, got shape {shape}")


def _blocks(num_queries: int, num_gallery: int) -> Iterator[slice]:
    step = max(1, BLOCK_ENTRIES // max(num_gallery, 1))
    for start in range(0, num_queries, step):
        yield slice(start, min(start + step, num_queries))


class _BlockScores(NamedTuple):
    """Per-query scores of one block: ap [B] float64, first [B] int64 (0-based rank of the first
    true match after filtering), inp [B] float64, counted [B] bool (has a true match)."""

    ap: np.ndarray
    first: np.ndarray
    inp: np.ndarray
    counted: np.ndarray


def _score_block(
    order: np.ndarray, qp: np.ndarray, qc: np.ndarray, g_pids: np.ndarray, g_camids: np.ndarray
) -> _BlockScores:
    """AP, first-match position and INP of a block of queries.

    order: [B, G] gallery indices best-first. qp, qc: [B] the queries' pids and camids.
    """
    ranked_pids = g_pids[order]
    same_pid = ranked_pids == qp[:, None]
    # Market-1501 protocol: drop junk (pid -1) and the query's own pid seen by its own camera.
    valid = ranked_pids != -1
    valid &= ~(same_pid & (g_camids[order] == qc[:, None]))
    match = same_pid & valid
    num_rel = match.sum(axis=1)
    counted = num_rel > 0
    position = np.cumsum(valid, axis=1, dtype=np.int64)  # 1-based rank among the kept entries
    hits = np.cumsum(match, axis=1, dtype=np.int64)
    rows, cols = np.nonzero(match)
    precision = hits[rows, cols] / position[rows, cols]
    ap = np.bincount(rows, weights=precision, minlength=order.shape[0]) / np.maximum(num_rel, 1)
    block_rows = np.arange(order.shape[0])
    first = position[block_rows, np.argmax(match, axis=1)] - 1
    # INP (fast-reid): true matches / 1-based rank of the last (hardest) true match.
    last_col = order.shape[1] - 1 - np.argmax(match[:, ::-1], axis=1)
    inp = num_rel / np.maximum(position[block_rows, last_col], 1)
    return _BlockScores(ap, first, inp, counted)


def _summarise(scores: list[_BlockScores], max_rank: int) -> dict:
    keep = np.concatenate([block.counted for block in scores])
    num_valid = int(keep.sum())
    if num_valid == 0:
        raise ValueError(
            "no query has a true match in the gallery once same-camera entries and junk (pid -1) "
            "are removed, so mAP and CMC are undefined: check q_pids/g_pids and q_camids/g_camids"
        )
    ap = np.concatenate([block.ap for block in scores])[keep]
    first = np.concatenate([block.first for block in scores])[keep]
    inp = np.concatenate([block.inp for block in scores])[keep]
    hist = np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    return {
        "mAP": float(ap.mean()),
        "cmc": cmc.astype(np.float64),
        "mINP": float(inp.mean()),
        "num_valid_queries": num_valid,
    }


def _rank_metrics(orders: Iterable[tuple[slice, np.ndarray]], ids: _Ids, max_rank: object) -> dict:
    """The metrics dict of checked orders: (rows, order int64 [len(rows), G]) per block."""
    max_rank = require_int("max_rank", max_rank, minimum=1)
    scores = [_score_block(order, ids.qp[rows], ids.qc[rows], ids.gp, ids.gc) for rows, order in orders]
    return _summarise(scores, max_rank)


def rank_metrics_from_order(
    order: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    max_rank: int = 50,
) -> dict:
    """mAP, CMC and mINP of a precomputed ranking, under the Market-1501 protocol.

    Args:
        order: [Q, G] integer; row q is a permutation of 0..G-1, the gallery best-first for query q
            (the Re-ID inference ranks by link scores, then by distance).
        q_pids, q_camids: [Q] integer identity and camera of each query.
        g_pids, g_camids: [G] integer identity and camera of each gallery entry; pid -1 is junk.
        max_rank: length of the returned CMC curve.

    For each query, gallery entries with the query's pid and camid, and entries with pid -1, are
    removed from its ranking; queries left with no true match are skipped. AP is the mean over the
    true matches of the precision at that match; cmc[r] is the share of the counted queries whose
    first true match is within the top r + 1; INP (fast-reid's inverse negative penalty) is the
    number of true matches over the 1-based rank of the last one, and mINP its mean.

    Returns:
        {"mAP": float, "cmc": float64 ndarray [max_rank], "mINP": float,
        "num_valid_queries": int}. Raises ValueError when no query has a true match.
    """
    order_np = as_array("order", order)
    if order_np.ndim != 2:
        raise ValueError(f"order should be 2-D [Q, G], got {order_np.ndim}-D with shape {order_np.shape}")
    if order_np.dtype.kind not in "iu":
        raise TypeError(f"order should hold integer gallery indices, got dtype {order_np.dtype}")
    num_queries, num_gallery = order_np.shape
    _require_non_empty("order", order_np.shape)
    _check_ids(num_queries, num_gallery, q_pids, g_pids, q_camids, g_camids)
    blocks = ((block, order_np[block]) for block in _blocks(num_queries, num_gallery))
    return rank_metrics_from_blocks(blocks, q_pids, g_pids, q_camids, g_camids, max_rank)


def rank_metrics_from_blocks(
    blocks: Iterable[tuple[slice, object]],
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    max_rank: int = 50,
) -> dict:
    """`rank_metrics_from_order` of a ranking given block by block, so that the [Q, G] ranking
    is never held at once.

    Args:
        blocks: (rows, order) pairs: `rows` a slice of the queries, `order` [len(rows), G]
            integer, each row a permutation of 0..G-1, the gallery best-first (as
            `hdml_ext.engine.distance_order` and `graph_order` yield them).
        q_pids, q_camids, g_pids, g_camids, max_rank: as in `rank_metrics_from_order`.

    Returns `rank_metrics_from_order`'s dict over the queries of all blocks.
    """
    qp, gp = as_int_vector("q_pids", q_pids), as_int_vector("g_pids", g_pids)
    ids = _check_ids(qp.shape[0], gp.shape[0], qp, gp, q_camids, g_camids)
    orders = ((rows, _checked_order(rows, order, qp.shape[0], gp.shape[0])) for rows, order in blocks)
    return _rank_metrics(orders, ids, max_rank)


def _checked_order(rows: slice, order: object, num_queries: int, num_gallery: int) -> np.ndarray:
    """`order` of the queries `rows` as int64 [len(rows), G]; raise unless each row is a
    permutation of 0..G-1."""
    chunk = as_array("order", order)
    if chunk.dtype.kind not in "iu":
        raise TypeError(f"order should hold integer gallery indices, got dtype {chunk.dtype}")
    num_rows = len(range(*rows.indices(num_queries)))
    if chunk.shape != (num_rows, num_gallery):
        raise ValueError(
            f"order of queries {rows.start}:{rows.stop} should be [{num_rows}, G = {num_gallery}], "
            f"got shape {chunk.shape}"
        )
    if chunk.size:
        low, high = int(chunk.min()), int(chunk.max())
        if low < 0 or high >= num_gallery:
            raise ValueError(
                f"order should hold gallery indices in [0, {num_gallery}), got values in [{low}, {high}]"
            )
    chunk = chunk.astype(np.int64, copy=False)
    seen = np.zeros(chunk.shape, dtype=bool)
    seen[np.arange(chunk.shape[0])[:, None], chunk] = True
    if not seen.all():
        bad = rows.start + int(np.nonzero(~seen.all(axis=1))[0][0])
        raise ValueError(
            f"order should be a permutation of 0..{num_gallery - 1} in every row, row {bad} is not"
        )
    return chunk


def rank_metrics(
    distmat: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    max_rank: int = 50,
) -> dict:
    """mAP, CMC and mINP of a query-gallery distance matrix, under the Market-1501 protocol.

    Args:
        distmat: [Q, G] real, lower = more similar (+inf allowed, NaN not). Each row is ranked
            with a stable argsort, so ties keep gallery order.
        q_pids, q_camids, g_pids, g_camids, max_rank: as in `rank_metrics_from_order`.

    Returns:
        {"mAP": float, "cmc": float64 ndarray [max_rank], "mINP": float,
        "num_valid_queries": int}; the same as
        `rank_metrics_from_order(np.argsort(distmat, axis=1, kind="stable"), ...)`, computed
        block by block so that the [Q, G] ranking is never held at once.
    """
    dist = as_float_array("distmat", distmat, 2, allow_inf=True)
    num_queries, num_gallery = dist.shape
    _require_non_empty("distmat", dist.shape)
    ids = _check_ids(num_queries, num_gallery, q_pids, g_pids, q_camids, g_camids)
    blocks = _blocks(num_queries, num_gallery)
    orders = ((block, np.argsort(dist[block], axis=1, kind="stable")) for block in blocks)
    return _rank_metrics(orders, ids, max_rank)
