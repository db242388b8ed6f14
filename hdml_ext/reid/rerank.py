"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), a Re-ID baseline beside distance ranking.

The algorithm is the reference implementation's (zhunzhong07/person-re-ranking, `re_ranking`)
on the N = Q + G stacked [query; gallery] rows, with d(i, j) the squared Euclidean distance of
the features as given (L2-normalise them first for the cosine form fast-reid uses), divided by
the largest d(i, .) of row i:

1. rank(i): i itself, then its nearest rows (`hdml_ext.graph.build_fgraphs`, exact backend).
   R(i, k) = {j among the first k + 1 of rank(i) : i among the first k + 1 of rank(j)}.
2. Expansion R*(i) = R(i, k1) united with every R(c, round(k1 / 2)), c in R(i, k1), that shares
   more than two thirds of its members with R(i, k1).
3. V[i, j] = exp(-d(i, j)) over j in R*(i), normalised to sum 1; with k2 > 1 each row is
   replaced by the mean of the rows of its k2 first in rank(i) (local query expansion).
4. Jaccard distance J(q, g) = 1 - sum_j min(V[q, j], V[g, j]) / sum_j max(V[q, j], V[g, j]).
5. Final distance (1 - lambda) J(q, g) + lambda d(q, g).

V is sparse (at most k2 (k1 + 1)(round(k1 / 2) + 2) entries a row), the Jaccard sums join V's query rows
with its gallery columns, and the final distances are produced a block of queries at a time, so
no [N, N] matrix is built; the row maxima of d and the [block, G] distances are computed from
the features block by block.

With queries_together=False each query is re-ranked with the gallery alone (N = G + 1 rows, one
encoding per query): the inductive setting graph ranking works in, where no query's ranking
depends on the other queries. The gallery's kNN and row maxima are found once; each query is
merged into them (it enters a gallery row's list where its distance places it), and the
squared distances of gallery pairs are kept from one query to the next. The reference's way
(True, the default) lets the other queries, often views of the same identity from other
cameras, into every query's neighbourhoods.

    for rows, order in k_reciprocal_order(query, gallery):   # as engine.distance_order
        ...
    evaluate_orders(k_reciprocal_order(query, gallery), q_pids, g_pids, q_camids, g_camids)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import require_int, require_query_gallery
from ..graph import build_fgraphs, exact_knn
from .jaccard import BLOCK_ENTRIES, min_sums, query_blocks

__all__ = ["k_reciprocal_distances", "k_reciprocal_order"]

#: The paper's k-reciprocal settings (Zhong et al. 2017): k1, k2 and lambda.
K1, K2, LAMBDA_VALUE = 20, 6, 0.3


def _check_arguments(query: Tensor, gallery: Tensor, k1: int, k2: int, lambda_value: float,
                     queries_together: bool) -> None:
    require_query_gallery(query, gallery)
    if query.device != gallery.device:
        raise ValueError(
            f"query and gallery should be on one device, got {query.device} and {gallery.device}"
        )
    if not (query.is_floating_point() and gallery.is_floating_point()):
        raise TypeError(f"query and gallery should be floating point, got {query.dtype} and {gallery.dtype}")
    if not isinstance(queries_together, bool):
        raise TypeError(f"queries_together should be a bool, got {type(queries_together).__name__}")
    if queries_together:
        num_rows, rows = query.shape[0] + gallery.shape[0], "Q + G"
    else:
        num_rows, rows = gallery.shape[0] + 1, "G + 1"
    require_int("k1", k1, minimum=1)
    require_int("k2", k2, minimum=1)
    if k1 > num_rows - 1:
        raise ValueError(f"k1 should be at most {rows} - 1 = {num_rows - 1}, got k1={k1}")
    if k2 > num_rows:
        raise ValueError(f"k2 should be at most {rows} = {num_rows}, got k2={k2}")
    if isinstance(lambda_value, bool) or not isinstance(lambda_value, (int, float)):
        raise TypeError(f"lambda_value should be a real number, got {type(lambda_value).__name__}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value should be in [0, 1], got {lambda_value}")


class _Encoding(NamedTuple):
    """The k-reciprocal encoding of the stacked [query; gallery] rows.

    row_max: [N] float64, the largest squared distance of each row to any row (1 where that is
    0). query_v: CSR [Q, N] and gallery_v: CSC [G, N], the rows of V.
    """

    row_max: np.ndarray
    query_v: sp.csr_matrix
    gallery_v: sp.csc_matrix


def _row_max_squared(features: Tensor) -> np.ndarray:
    """[N] float64: max_j |x_i - x_j|^2, computed a block of rows at a time."""
    rows = max(1, BLOCK_ENTRIES // features.shape[0])
    blocks = [
        torch.cdist(features[start : start + rows], features).square_().amax(1)
        for start in range(0, features.shape[0], rows)
    ]
    return torch.cat(blocks).double().cpu().numpy()


def _pair_squared(features: Tensor, rows: np.ndarray, cols: np.ndarray, others: Tensor | None = None
                  ) -> np.ndarray:  # fmt: skip
    """|features[rows] - others[cols]|^2 [len(rows)] float64 (others: features itself by
    default), a chunk of pairs at a time."""
    others = features if others is None else others
    chunk = max(1, BLOCK_ENTRIES // features.shape[1])
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start in range(0, rows.shape[0], chunk):
        r = torch.from_numpy(rows[start : start + chunk]).to(features.device)
        c = torch.from_numpy(cols[start : start + chunk]).to(features.device)
        diff = features[r] - others[c]
        out[start : start + chunk] = (diff * diff).sum(1).double().cpu().numpy()
    return out


def _mutual(rank: np.ndarray, k: int) -> sp.csr_matrix:
    """R(i, k) as a boolean [N, N] CSR: j among rank[i, :k+1] and i among rank[j, :k+1]."""
    num_rows = rank.shape[0]
    forward = sp.csr_matrix(
        (np.ones(num_rows * (k + 1), dtype=bool), rank[:, : k + 1].reshape(-1),
         np.arange(0, num_rows * (k + 1) + 1, k + 1)),
        shape=(num_rows, num_rows),
    )
    return forward.multiply(forward.T).tocsr()


def _encode(features: Tensor, num_query: int, k1: int, k2: int) -> _Encoding:
    """The encoding of the stacked rows `features` ([N, D], the first num_query are queries)."""
    num_rows = features.shape[0]
    graphs = build_fgraphs(features, max(k1, k2 - 1), backend="exact")
    rank = np.concatenate([np.arange(num_rows)[:, None], graphs.knn_idx.cpu().numpy()], axis=1)
    row_max = _row_max_squared(features)
    return _encode_ranked(num_query, rank, row_max, k1, k2, partial(_pair_squared, features))


def _encode_ranked(num_query: int, rank: np.ndarray, row_max: np.ndarray, k1: int, k2: int,
                   pair_squared: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> _Encoding:
    """The encoding of N stacked rows from rank [N, >= max(k1, k2 - 1) + 1] int64 (each row
    itself, then its nearest rows), row_max [N] float64 (the largest squared distance of each
    row to any row) and pair_squared(rows, cols), the squared distances of pairs of rows."""
    num_rows = rank.shape[0]
    reciprocal = _mutual(rank, k1).astype(np.int64)
    half = _mutual(rank, round(k1 / 2)).astype(np.int64)
    # overlap[i, c] = |R(i, k1) ∩ R(c, k1/2)| for c in R(i, k1); keep c where it is > 2/3 |R(c, k1/2)|.
    overlap = (reciprocal @ half.T).multiply(reciprocal).tocoo()
    half_size = np.asarray(half.sum(axis=1)).ravel()
    keep = 3 * overlap.data > 2 * half_size[overlap.col]
    selected = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.int64), (overlap.row[keep], overlap.col[keep])),
        shape=(num_rows, num_rows),
    )
    expansion = ((reciprocal + selected @ half) > 0).tocoo()
    row_max = np.where(row_max == 0, 1.0, row_max)  # every row equal to row i: all its distances are 0
    weight = np.exp(-pair_squared(expansion.row, expansion.col) / row_max[expansion.row])
    weight /= np.bincount(expansion.row, weights=weight, minlength=num_rows)[expansion.row]
    v = sp.csr_matrix((weight, (expansion.row, expansion.col)), shape=(num_rows, num_rows))
    if k2 > 1:
        mean_of_neighbours = sp.csr_matrix(
            (np.full(num_rows * k2, 1.0 / k2), rank[:, :k2].reshape(-1), np.arange(0, num_rows * k2 + 1, k2)),
            shape=(num_rows, num_rows),
        )
        v = (mean_of_neighbours @ v).tocsr()
    return _Encoding(row_max, v[:num_query].tocsr(), v[num_query:].tocsc())


def k_reciprocal_distances(
    query: Tensor,
    gallery: Tensor,
    *,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA_VALUE,
    block: int | None = None,
    queries_together: bool = True,
    progress: bool = False,
) -> Iterator[tuple[slice, Tensor]]:
    """Re-ranked query-gallery distances (module docstring), a block of queries at a time.

    Args:
        query: [Q, D], gallery: [G, D] floating-point embeddings on one device.
        k1: size of the k-reciprocal neighbourhoods, 1 <= k1 <= N - 1 (paper: 20), N the rows
            encoded together: Q + G, or G + 1 when queries_together is False.
        k2: rows averaged by the local query expansion, 1 <= k2 <= N; 1 turns it off
            (paper: 6).
        lambda_value: weight of the original distance against the Jaccard distance, in [0, 1]
            (paper: 0.3).
        block: queries per block; None sizes the blocks to about BLOCK_ENTRIES entries.
        queries_together: True (the paper's and the reference's way) encodes the [query;
            gallery] rows at once, so every query's neighbourhoods hold the other queries too;
            False re-ranks each query with the gallery alone (one encoding of G + 1 rows per
            query, the gallery's kNN and row maxima found once and each query merged into
            them; per query its distances to the gallery and a sparse encoding of G + 1 rows;
            `block` is then ignored), as graph ranking sees each query
            (`hdml_ext.graph.query_fgraphs`): nothing of one query changes another's ranking.
        progress: show a progress bar over the queries.

    Returns an iterator of (rows, dist): `rows` a slice of the queries, dist float64
    [len(rows), G] on the CPU, lower = more similar; the reference's `re_ranking(...)[rows]` to
    float rounding. The arguments are checked (TypeError/ValueError naming the argument) at the
    call; the encoding is built when the iterator is first advanced.
    """
    _check_arguments(query, gallery, k1, k2, lambda_value, queries_together)
    if block is not None:
        require_int("block", block, minimum=1)
    if queries_together:
        blocks = _distance_blocks(query, gallery, k1, k2, lambda_value, block)
    else:
        blocks = _one_query_at_a_time(query, gallery, k1, k2, lambda_value)
    return _counted(blocks, query.shape[0], progress)


def _counted(blocks: Iterator[tuple[slice, Tensor]], num_query: int, progress: bool
             ) -> Iterator[tuple[slice, Tensor]]:  # fmt: skip
    """`blocks`, with a progress bar over the queries when `progress` is True."""
    with tqdm(total=num_query, desc="k-reciprocal re-ranking", unit="query", disable=not progress,
              leave=False) as bar:
        for rows, dist in blocks:
            bar.update(rows.stop - rows.start)
            yield rows, dist


@torch.no_grad()
def _distance_blocks(
    query: Tensor, gallery: Tensor, k1: int, k2: int, lambda_value: float, block: int | None
) -> Iterator[tuple[slice, Tensor]]:
    query, gallery = query.detach(), gallery.detach()
    encoding = _encode(torch.cat([query, gallery]), query.shape[0], k1, k2)
    for rows in query_blocks(encoding.query_v, encoding.gallery_v, block):
        shared = min_sums(encoding.query_v[rows], encoding.gallery_v)
        jaccard = 1.0 - shared / (2.0 - shared)
        original = torch.cdist(query[rows], gallery).square_()
        original = original.double().cpu().numpy() / encoding.row_max[rows, None]
        yield rows, torch.from_numpy((1.0 - lambda_value) * jaccard + lambda_value * original)


class _GalleryTable(NamedTuple):
    """What every query's encoding shares: the gallery's own kNN and row maxima.

    knn_dist, knn_idx: [G, min(width, G - 1)] Euclidean distances (ascending) and gallery ids
    of each gallery row's nearest other gallery rows (`hdml_ext.ops.knn`). row_max: [G]
    float64, the largest squared distance of each gallery row to any gallery row. width: the
    neighbours each stacked row needs, max(k1, k2 - 1).
    """

    knn_dist: np.ndarray
    knn_idx: np.ndarray
    row_max: np.ndarray
    width: int


def _gallery_table(gallery: Tensor, width: int) -> _GalleryTable:
    num_gallery = gallery.shape[0]
    searched = min(width, num_gallery - 1)  # the query takes the place of the G-th neighbour
    if searched == 0:
        dist, idx = np.empty((num_gallery, 0)), np.empty((num_gallery, 0), dtype=np.int64)
    else:
        found = exact_knn(gallery, searched)
        dist, idx = found[0].double().cpu().numpy(), found[1].cpu().numpy()
    return _GalleryTable(dist, idx, _row_max_squared(gallery), width)


class _GalleryPairs:
    """Squared distances of pairs of stacked rows [query; gallery] for one query after another:
    pairs of two gallery rows are computed once and kept (sorted by key a * G + b), since the
    k-reciprocal sets of most gallery rows are the same whichever query joins them; pairs with
    the query are computed each time."""

    def __init__(self, gallery: Tensor) -> None:
        self.gallery = gallery
        self.keys = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64)

    def squared(self, query: Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """|x_rows - x_cols|^2 [len(rows)] float64 of the stacked rows [query [1, D]; gallery]
        (row 0 the query, row j + 1 gallery row j)."""
        out = np.empty(rows.shape[0], dtype=np.float64)
        with_query = (rows == 0) | (cols == 0)
        if with_query.any():
            # One end is the query, row 0: the other is gallery row rows + cols - 1 (the pair of
            # the query with itself, -1, is 0).
            other = rows[with_query] + cols[with_query] - 1
            squared = _pair_squared(query, np.zeros_like(other), np.maximum(other, 0), self.gallery)
            out[with_query] = np.where(other < 0, 0.0, squared)
        keys = (rows[~with_query] - 1) * self.gallery.shape[0] + (cols[~with_query] - 1)
        place = np.searchsorted(self.keys, keys).clip(max=max(self.keys.size - 1, 0))
        known = (self.keys[place] == keys) if self.keys.size else np.zeros(keys.size, dtype=bool)
        values = np.empty(keys.size, dtype=np.float64)
        values[known] = self.values[place[known]]
        if not known.all():
            new_keys = np.unique(keys[~known])
            new_values = _pair_squared(self.gallery, new_keys // self.gallery.shape[0],
                                       new_keys % self.gallery.shape[0])
            values[~known] = new_values[np.searchsorted(new_keys, keys[~known])]
            places = np.searchsorted(self.keys, new_keys)
            self.keys = np.insert(self.keys, places, new_keys)
            self.values = np.insert(self.values, places, new_values)
        out[~with_query] = values
        return out


def _rank_with_query(table: _GalleryTable, query_dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank [G + 1, width + 1], row_max [G + 1]) of the stacked rows [query; gallery], as
    `_encode` would find them, from the gallery's table and the query's Euclidean distances
    query_dist [G] to the gallery: the query leads its own row, then its nearest gallery rows;
    it enters a gallery row's list before the first neighbour farther away (before equal ones
    too, as its index 0 is the smallest), and the list keeps its first `width`."""
    num_gallery, searched = table.knn_idx.shape
    stacked_idx = table.knn_idx + 1
    position = (table.knn_dist < query_dist[:, None]).sum(axis=1, keepdims=True)  # [G, 1] the query's place
    column = np.arange(searched + 1)[None, :]
    before = np.concatenate([stacked_idx, np.zeros((num_gallery, 1), dtype=np.int64)], axis=1)
    after = np.concatenate([np.zeros((num_gallery, 1), dtype=np.int64), stacked_idx], axis=1)
    merged = np.where(column < position, before, np.where(column == position, 0, after))[:, : table.width]
    own = np.argsort(query_dist, kind="stable")[: table.width] + 1
    rank = np.concatenate([
        np.concatenate([[0], own])[None, :],
        np.concatenate([np.arange(1, num_gallery + 1)[:, None], merged], axis=1),
    ])  # fmt: skip
    squared = query_dist * query_dist
    row_max = np.concatenate([[squared.max()], np.maximum(table.row_max, squared)])
    return rank, row_max


@torch.no_grad()
def _one_query_at_a_time(
    query: Tensor, gallery: Tensor, k1: int, k2: int, lambda_value: float
) -> Iterator[tuple[slice, Tensor]]:
    """Each query encoded with the gallery alone. The gallery's kNN and row maxima are found
    once; each query only merges itself into them (`_rank_with_query`), so the cost per query
    is its distances to the gallery and the sparse encoding, not a search over G + 1 rows."""
    query, gallery = query.detach(), gallery.detach()
    table = _gallery_table(gallery, max(k1, k2 - 1))
    pairs = _GalleryPairs(gallery)
    rows = max(1, BLOCK_ENTRIES // gallery.shape[0])
    for start in range(0, query.shape[0], rows):
        query_dist = torch.cdist(query[start : start + rows], gallery).double().cpu().numpy()
        for offset, distances in enumerate(query_dist):
            q = start + offset
            rank, row_max = _rank_with_query(table, distances)
            encoding = _encode_ranked(1, rank, row_max, k1, k2, partial(pairs.squared, query[q : q + 1]))
            shared = min_sums(encoding.query_v, encoding.gallery_v)
            jaccard = 1.0 - shared / (2.0 - shared)
            original = distances * distances / encoding.row_max[0]
            yield slice(q, q + 1), torch.from_numpy((1.0 - lambda_value) * jaccard + lambda_value * original)


def k_reciprocal_order(
    query: Tensor,
    gallery: Tensor,
    *,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA_VALUE,
    block: int | None = None,
    queries_together: bool = True,
    progress: bool = False,
) -> Iterator[tuple[slice, Tensor]]:
    """The gallery sorted by the re-ranked distance to each query, best first.

    Arguments as `k_reciprocal_distances` (checked at the call). Returns an iterator of
    (rows, order int64 [len(rows), G]) per block of queries, as `hdml_ext.engine.distance_order`
    yields them (equal distances keep gallery order), for `hdml_ext.engine.evaluate_orders`.
    """
    blocks = k_reciprocal_distances(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value, block=block,
                                    queries_together=queries_together, progress=progress)
    return ((rows, torch.sort(dist, dim=1, stable=True).indices) for rows, dist in blocks)
