"""Jaccard distances between sparse neighbourhood encodings (rows of V over a common set of
columns), the second-order term of k-reciprocal re-ranking (`hdml_ext.reid.rerank`) and of
re-ranking with learned edges (`hdml_ext.reid.link_rerank`).

    J(q, g) = 1 - sum_j min(V[q, j], V[g, j]) / sum_j max(V[q, j], V[g, j])

computed a block of queries at a time by joining the query rows (CSR) with the gallery rows
stored by column (CSC), so no [Q, G] product of the dense rows is formed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

from ..metrics.ranking import BLOCK_ENTRIES  # the per-block temporaries: distances, Jaccard join


def min_sums(query_v: sp.csr_matrix, gallery_v: sp.csc_matrix) -> np.ndarray:
    """[B, G] float64: sum_j min(query_v[b, j], gallery_v[g, j]), joining on the columns j.

    query_v: CSR [B, C], gallery_v: CSC [G, C] with non-negative entries."""
    entries = query_v.tocoo()
    starts = gallery_v.indptr[entries.col]
    counts = gallery_v.indptr[entries.col + 1] - starts
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    position = np.repeat(starts, counts) + offsets
    num_gallery = gallery_v.shape[0]
    key = np.repeat(entries.row.astype(np.int64), counts) * num_gallery + gallery_v.indices[position]
    mins = np.minimum(np.repeat(entries.data, counts), gallery_v.data[position])
    return np.bincount(key, weights=mins, minlength=query_v.shape[0] * num_gallery).reshape(-1, num_gallery)


def jaccard_distances(query_v: sp.csr_matrix, gallery_v: sp.csc_matrix) -> np.ndarray:
    """[B, G] float64 Jaccard distances of non-negative rows (module docstring); 0 between two
    empty rows. sum max = sum q + sum g - sum min, so only the min sums are joined."""
    shared = min_sums(query_v, gallery_v).astype(np.float64, copy=False)
    query_sums = np.asarray(query_v.sum(axis=1)).reshape(-1, 1)
    gallery_sums = np.asarray(gallery_v.sum(axis=1)).reshape(1, -1)
    union = query_sums + gallery_sums - shared
    return 1.0 - np.divide(shared, union, out=np.ones_like(shared), where=union > 0)


def query_blocks(query_v: sp.csr_matrix, gallery_v: sp.csc_matrix, block: int | None) -> Iterator[slice]:
    """Blocks of query rows whose [block, G] distances and Jaccard join stay near BLOCK_ENTRIES
    (`block` queries each when given)."""
    num_query, num_gallery = query_v.shape[0], gallery_v.shape[0]
    if block is not None:
        yield from (slice(start, min(start + block, num_query)) for start in range(0, num_query, block))
        return
    column_counts = np.diff(gallery_v.indptr)
    cost = (query_v != 0).astype(np.int64) @ column_counts + num_gallery
    start, total = 0, 0
    for q in range(num_query):
        if q > start and total + cost[q] > BLOCK_ENTRIES:
            yield slice(start, q)
            start, total = q, 0
        total += int(cost[q])
    yield slice(start, num_query)
