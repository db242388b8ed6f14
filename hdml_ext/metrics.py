"""Evaluation metrics: mAP/CMC for person Re-ID, NMI, pairwise and BCubed F-scores for clustering.

Inputs are numpy arrays, torch tensors (any device) or sequences; outputs are Python floats and
numpy arrays. The clustering metrics work from the sparse contingency table of the two
labelings (the counts n_ij = |C_i ∩ Ĉ_j| that are non-zero), so they take O(N log N) time and
O(N) memory, never O(N^2).

    from hdml_ext.metrics import rank_metrics, nmi
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids)
    result["mAP"], result["cmc"][0]   # mAP and rank-1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from ._arrays import as_array, as_float_array, as_int_vector, same_length

__all__ = [
    "bcubed_fscore", "nmi", "pairwise_fscore", "rank_metrics", "rank_metrics_from_blocks",
    "rank_metrics_from_order",
]

# Queries are processed in blocks so that the [block, G] temporaries stay near this many entries
# (about 16 MB per int64 temporary): Market-1501's 3,368 x 15,913 never exists at once.
_BLOCK_ENTRIES = 1 << 21


def _check_ids(
    num_queries: int, num_gallery: int, q_pids: object, g_pids: object, q_camids: object, g_camids: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    return qp, gp, qc, gc


def _check_max_rank(max_rank: object) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)):
        raise TypeError(f"max_rank should be an int, got {type(max_rank).__name__} ({max_rank!r})")
    if max_rank < 1:
        raise ValueError(f"max_rank should be >= 1, got {max_rank}")
    return int(max_rank)


def _blocks(num_queries: int, num_gallery: int) -> Iterator[slice]:
    step = max(1, _BLOCK_ENTRIES // max(num_gallery, 1))
    for start in range(0, num_queries, step):
        yield slice(start, min(start + step, num_queries))


def _score_block(
    order: np.ndarray, qp: np.ndarray, qc: np.ndarray, g_pids: np.ndarray, g_camids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP and first-match position of a block of queries.

    order: [B, G] gallery indices best-first. qp, qc: [B] the queries' pids and camids.
    Returns (ap [B] float64, first [B] int64 0-based rank of the first true match after
    filtering, counted [B] bool: the query has at least one true match).
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
    first_col = np.argmax(match, axis=1)
    first = position[np.arange(order.shape[0]), first_col] - 1
    return ap, first, counted


def _summarise(
    aps: list[np.ndarray], firsts: list[np.ndarray], counted: list[np.ndarray], max_rank: int
) -> dict:
    ap = np.concatenate(aps)
    first = np.concatenate(firsts)
    keep = np.concatenate(counted)
    num_valid = int(keep.sum())
    if num_valid == 0:
        raise ValueError(
            "no query has a true match in the gallery once same-camera entries and junk (pid -1) "
            "are removed, so mAP and CMC are undefined: check q_pids/g_pids and q_camids/g_camids"
        )
    hist = np.bincount(np.minimum(first[keep], max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    return {"mAP": float(ap[keep].mean()), "cmc": cmc.astype(np.float64), "num_valid_queries": num_valid}


def rank_metrics_from_order(
    order: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    max_rank: int = 50,
) -> dict:
    """mAP and CMC of a precomputed ranking, under the Market-1501 protocol.

    Args:
        order: [Q, G] integer; row q is a permutation of 0..G-1, the gallery best-first for query q
            (the Re-ID inference ranks by link scores, then by distance).
        q_pids, q_camids: [Q] integer identity and camera of each query.
        g_pids, g_camids: [G] integer identity and camera of each gallery entry; pid -1 is junk.
        max_rank: length of the returned CMC curve.

    For each query, gallery entries with the query's pid and camid, and entries with pid -1, are
    removed from its ranking; queries left with no true match are skipped. AP is the mean over the
    true matches of the precision at that match; cmc[r] is the share of the counted queries whose
    first true match is within the top r + 1.

    Returns:
        {"mAP": float, "cmc": float64 ndarray [max_rank], "num_valid_queries": int}.
        Raises ValueError when no query has a true match.
    """
    order_np = as_array("order", order)
    if order_np.ndim != 2:
        raise ValueError(f"order should be 2-D [Q, G], got {order_np.ndim}-D with shape {order_np.shape}")
    if order_np.dtype.kind not in "iu":
        raise TypeError(f"order should hold integer gallery indices, got dtype {order_np.dtype}")
    num_queries, num_gallery = order_np.shape
    if num_queries == 0 or num_gallery == 0:
        raise ValueError(f"order should be non-empty, got shape {order_np.shape}")
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
    qp, gp, qc, gc = _check_ids(qp.shape[0], gp.shape[0], qp, gp, q_camids, g_camids)
    max_rank = _check_max_rank(max_rank)
    num_gallery = gp.shape[0]
    aps, firsts, counted = [], [], []
    for rows, order in blocks:
        chunk = as_array("order", order)
        if chunk.dtype.kind not in "iu":
            raise TypeError(f"order should hold integer gallery indices, got dtype {chunk.dtype}")
        num_rows = len(range(*rows.indices(qp.shape[0])))
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
        ap, first, ok = _score_block(chunk, qp[rows], qc[rows], gp, gc)
        aps.append(ap)
        firsts.append(first)
        counted.append(ok)
    return _summarise(aps, firsts, counted, max_rank)


def rank_metrics(
    distmat: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    max_rank: int = 50,
) -> dict:
    """mAP and CMC of a query-gallery distance matrix, under the Market-1501 protocol.

    Args:
        distmat: [Q, G] real, lower = more similar (+inf allowed, NaN not). Each row is ranked
            with a stable argsort, so ties keep gallery order.
        q_pids, q_camids, g_pids, g_camids, max_rank: as in `rank_metrics_from_order`.

    Returns:
        {"mAP": float, "cmc": float64 ndarray [max_rank], "num_valid_queries": int}; the same as
        `rank_metrics_from_order(np.argsort(distmat, axis=1, kind="stable"), ...)`, computed
        block by block so that the [Q, G] ranking is never held at once.
    """
    dist = as_float_array("distmat", distmat, 2, allow_inf=True)
    num_queries, num_gallery = dist.shape
    if num_queries == 0 or num_gallery == 0:
        raise ValueError(f"distmat should be non-empty, got shape {dist.shape}")
    qp, gp, qc, gc = _check_ids(num_queries, num_gallery, q_pids, g_pids, q_camids, g_camids)
    max_rank = _check_max_rank(max_rank)
    aps, firsts, counted = [], [], []
    for block in _blocks(num_queries, num_gallery):
        order = np.argsort(dist[block], axis=1, kind="stable")
        ap, first, ok = _score_block(order, qp[block], qc[block], gp, gc)
        aps.append(ap)
        firsts.append(first)
        counted.append(ok)
    return _summarise(aps, firsts, counted, max_rank)


class _Contingency(NamedTuple):
    """Sparse contingency table of two labelings of N items.

    cells[c] is a non-zero count n_ij; cell_true[c] = a_i and cell_pred[c] = b_j are the sizes of
    that cell's class and cluster; true_sizes [|C|] and pred_sizes [|Ĉ|] are all the sizes.
    """

    cells: np.ndarray
    cell_true: np.ndarray
    cell_pred: np.ndarray
    true_sizes: np.ndarray
    pred_sizes: np.ndarray
    n: int


def _contingency(labels_true: object, labels_pred: object) -> _Contingency:
    truth = as_int_vector("labels_true", labels_true)
    pred = as_int_vector("labels_pred", labels_pred)
    same_length(("labels_true", "labels_pred"), (truth, pred))
    _, t_idx = np.unique(truth, return_inverse=True)
    _, p_idx = np.unique(pred, return_inverse=True)
    t_idx = t_idx.reshape(-1)
    p_idx = p_idx.reshape(-1)
    true_sizes = np.bincount(t_idx)
    pred_sizes = np.bincount(p_idx)
    key = t_idx * np.int64(pred_sizes.shape[0]) + p_idx
    _, first, cells = np.unique(key, return_index=True, return_counts=True)
    return _Contingency(
        cells=cells.astype(np.int64),
        cell_true=true_sizes[t_idx[first]].astype(np.int64),
        cell_pred=pred_sizes[p_idx[first]].astype(np.int64),
        true_sizes=true_sizes.astype(np.int64),
        pred_sizes=pred_sizes.astype(np.int64),
        n=int(truth.shape[0]),
    )


def _entropy(sizes: np.ndarray, n: int) -> float:
    p = sizes / n
    return float(-(p * np.log(p)).sum())


def nmi(labels_true: object, labels_pred: object) -> float:
    """Normalised mutual information MI(C, Ĉ) / sqrt(H(C) H(Ĉ)) (paper IV-A; natural log).

    Args:
        labels_true: [N] integer ground-truth classes C.
        labels_pred: [N] integer predicted clusters Ĉ (label values are arbitrary).

    Returns 1.0 when both labelings are a single cluster and 0.0 when exactly one of them is.
    Equals sklearn's normalized_mutual_info_score(..., average_method="geometric").
    """
    table = _contingency(labels_true, labels_pred)
    single_true, single_pred = table.true_sizes.shape[0] == 1, table.pred_sizes.shape[0] == 1
    if single_true and single_pred:
        return 1.0
    if single_true or single_pred:
        return 0.0
    n, cells = table.n, table.cells
    log_ratio = np.log(cells) + math.log(n) - np.log(table.cell_true) - np.log(table.cell_pred)
    mi = float((cells / n * log_ratio).sum())
    h_true, h_pred = _entropy(table.true_sizes, n), _entropy(table.pred_sizes, n)
    return float(min(max(mi, 0.0) / math.sqrt(h_true * h_pred), 1.0))


def _fscore(precision: float, recall: float) -> float:
    total = precision + recall
    return 0.0 if total == 0.0 else 2.0 * precision * recall / total


def pairwise_fscore(labels_true: object, labels_pred: object) -> tuple[float, float, float]:
    """Pairwise precision, recall and F-score over unordered pairs of items.

    A pair is a true positive when both items share a predicted cluster and a true class.
    precision = TP / (pairs sharing a predicted cluster), recall = TP / (pairs sharing a class),
    counted from the contingency table as sums of C(n, 2). With no predicted pairs (all
    singletons) precision is 1.0 (no pair is wrongly joined); with no true pairs recall is 1.0.

    Args:
        labels_true, labels_pred: [N] integer labelings.

    Returns (precision, recall, f) as Python floats.
    """
    table = _contingency(labels_true, labels_pred)

    def pairs(sizes: np.ndarray) -> int:
        return int((sizes * (sizes - 1) // 2).sum())

    tp, pred_pairs, true_pairs = pairs(table.cells), pairs(table.pred_sizes), pairs(table.true_sizes)
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    return float(precision), float(recall), _fscore(precision, recall)


def bcubed_fscore(labels_true: object, labels_pred: object) -> tuple[float, float, float]:
    """BCubed precision, recall and F-score (per-item averages).

    For item x with class C(x) and cluster Ĉ(x): precision(x) = |C(x) ∩ Ĉ(x)| / |Ĉ(x)|,
    recall(x) = |C(x) ∩ Ĉ(x)| / |C(x)|; both are averaged over items, i.e.
    precision = sum_ij n_ij^2 / b_j / N and recall = sum_ij n_ij^2 / a_i / N.

    Args:
        labels_true, labels_pred: [N] integer labelings.

    Returns (precision, recall, f) as Python floats.
    """
    table = _contingency(labels_true, labels_pred)
    squared = table.cells.astype(np.float64) ** 2
    precision = float((squared / table.cell_pred).sum() / table.n)
    recall = float((squared / table.cell_true).sum() / table.n)
    return precision, recall, _fscore(precision, recall)
