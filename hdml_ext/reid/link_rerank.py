"""Re-ranking with learned edges: the second-order idea of k-reciprocal re-ranking (two images
match when their neighbourhoods match), with the neighbourhoods and their weights taken from
HDML's F-Graphs and link scores instead of from distances.

Every row i (a query or a gallery item) is the focus of its own F-Graph: its k nearest rows
(`hdml_ext.graph`), each scored by the link head, p(i, j) = the probability that j shows i's
identity (`hdml_ext.cluster.link_edges`, `hdml_ext.reid.query_link_scores`). Its encoding is
the soft set of rows believed to show its identity:

    V[i, i] = 1,  V[i, j] = p(i, j) ** power  for j among i's k F-Graph neighbours
                  (with weights="distance": exp(-d(i, j)^2 / max_j' d(i, j')^2) instead, the
                  k-reciprocal encoding's kernel, for comparison)

optionally scaled to sum 1 (normalise), and with k2 > 1 replaced by the mean of the rows of i
and its k2 - 1 nearest F-Graph neighbours (the local query expansion of Zhong et al. 2017).
The re-ranked distance is

    d*(q, g) = (1 - lambda) J(V[q], V[g]) + lambda d(q, g)^2 / max_g' d(q, g')^2

with J the Jaccard distance of the two soft sets (`hdml_ext.reid.jaccard`). With
queries_together=False (the default, inductive, as the paper's graph ranking sees a query) each
query's F-Graph is built over the gallery alone and the gallery's F-Graphs over the gallery, so
nothing of one query changes another's ranking; with True the F-Graphs are built over all
[query; gallery] rows at once, as k-reciprocal re-ranking of all queries does.

    for rows, order in link_rerank_order(model, query, gallery):
        ...
    evaluate_orders(link_rerank_order(model, query, gallery), q_pids, g_pids, q_camids, g_camids)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import require_int, require_query_gallery
from ..cluster import link_edges
from ..graph import build_fgraphs
from .jaccard import jaccard_distances, query_blocks
from .ranking import query_link_scores

#: What a row's encoding weighs its F-Graph neighbours by (`LinkRerankSettings.weights`).
WEIGHTS = ("link", "distance")


@dataclass(frozen=True)
class LinkRerankSettings:
    """The settings of re-ranking with learned edges (module docstring).

    weights: "link" (link probabilities) or "distance" (the distance kernel, no model needed
        for the weights). power: p ** power sharpens (> 1) or flattens (< 1) the link weights.
    normalise: scale each encoding to sum 1 before the expansion (the k-reciprocal way).
    k2: rows averaged by the local query expansion (1: none), at most k + 1.
    lambda_value: weight of the original distance, in [0, 1].
    queries_together: F-Graphs over all rows at once (True) or each query over the gallery
        alone (False, inductive).

    The defaults are the inductive candidate of `hdml_ext.reid.selection.SEARCH_SPACE` with the
    best mean validation score (mean of mAP and rank-1 on the validation identities) over the
    demo's three training seeds (benchmarks/results/reid/, docs/reid.md).
    """

    weights: str = "link"
    power: float = 2.0
    normalise: bool = True
    k2: int = 1
    lambda_value: float = 0.5
    queries_together: bool = False

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            names = ", ".join(map(repr, WEIGHTS))
            raise ValueError(f"weights should be one of {names}, got {self.weights!r}")
        if isinstance(self.power, bool) or not isinstance(self.power, (int, float)) or not self.power > 0:
            raise ValueError(f"power should be a number > 0, got {self.power!r}")
        if not isinstance(self.normalise, bool):
            raise TypeError(f"normalise should be a bool, got {type(self.normalise).__name__}")
        require_int("k2", self.k2, minimum=1)
        if isinstance(self.lambda_value, bool) or not isinstance(self.lambda_value, (int, float)):
            raise TypeError(f"lambda_value should be a real number, got {type(self.lambda_value).__name__}")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise ValueError(f"lambda_value should be in [0, 1], got {self.lambda_value}")
        if not isinstance(self.queries_together, bool):
            raise TypeError(f"queries_together should be a bool, got {type(self.queries_together).__name__}")

    def to_dict(self) -> dict:
        """The settings as a plain dict (for results files and checkpoints)."""
        return asdict(self)


@dataclass(frozen=True)
class ScoredFGraphs:
    """Every row's F-Graph over a common set of columns and its link scores.

    neighbours: int64 [R, k] column ids of each row's F-Graph neighbours, nearest first.
    scores: float [R, k] their link probabilities. squared: float64 [R, k] their squared
    Euclidean distances. own_column: int64 [R] each row's own column id.
    """

    neighbours: np.ndarray
    scores: np.ndarray
    squared: np.ndarray
    own_column: np.ndarray


def _squared(rows: Tensor, others: Tensor, neighbours: np.ndarray) -> np.ndarray:
    """float64 [R, k]: |rows[r] - others[neighbours[r, j]]|^2."""
    index = torch.from_numpy(neighbours).to(others.device)
    diff = rows[:, None, :].double() - others.double()[index]
    return (diff * diff).sum(-1).cpu().numpy()


def score_gallery(model: nn.Module, gallery: Tensor, k: int, *, batch_size: int = 256,
                  progress: bool = False) -> ScoredFGraphs:  # fmt: skip
    """The gallery's own F-Graphs (each item over the other gallery items) and their link
    scores; columns are gallery ids (`ScoredFGraphs`)."""
    graphs = build_fgraphs(gallery, k, backend="exact")
    _, dst, score = link_edges(model, gallery, k, batch_size=batch_size, knn_idx=graphs, progress=progress)
    neighbours = dst.numpy().reshape(-1, k)
    return ScoredFGraphs(neighbours, score.numpy().reshape(-1, k), _squared(gallery, gallery, neighbours),
                         np.arange(gallery.shape[0]))


def score_queries(model: nn.Module, query: Tensor, gallery: Tensor, k: int, *,
                  gallery_knn: Tensor | None = None, batch_size: int = 256,
                  progress: bool = False) -> ScoredFGraphs:  # fmt: skip
    """Each query's F-Graph over the gallery alone and its link scores; columns are gallery ids,
    query q's own column is G + q (`ScoredFGraphs`)."""
    neighbours, scores = query_link_scores(model, query, gallery, k, batch_size=batch_size,
                                           gallery_knn=gallery_knn, progress=progress)
    neighbours = neighbours.cpu().numpy()
    return ScoredFGraphs(neighbours, scores.cpu().numpy(), _squared(query, gallery, neighbours),
                         gallery.shape[0] + np.arange(query.shape[0]))


def score_together(model: nn.Module, query: Tensor, gallery: Tensor, k: int, *, batch_size: int = 256,
                   progress: bool = False) -> ScoredFGraphs:  # fmt: skip
    """The F-Graphs of all [query; gallery] rows over one another; column Q + g is gallery item
    g and column q is query q (`ScoredFGraphs` of the Q + G rows, queries first)."""
    rows = torch.cat([query, gallery])
    graphs = build_fgraphs(rows, k, backend="exact")
    _, dst, score = link_edges(model, rows, k, batch_size=batch_size, knn_idx=graphs, progress=progress)
    neighbours = dst.numpy().reshape(-1, k)
    return ScoredFGraphs(neighbours, score.numpy().reshape(-1, k), _squared(rows, rows, neighbours),
                         np.arange(rows.shape[0]))


def encode(graphs: ScoredFGraphs, settings: LinkRerankSettings, num_columns: int) -> sp.csr_matrix:
    """CSR [R, num_columns]: each row's own column 1, its F-Graph neighbours weighted as
    `settings` says (module docstring), before the local query expansion."""
    num_rows, k = graphs.neighbours.shape
    if settings.weights == "link":
        weight = np.clip(graphs.scores.astype(np.float64), 0.0, 1.0) ** settings.power
    else:
        row_max = graphs.squared.max(axis=1, keepdims=True)
        weight = np.exp(-graphs.squared / np.where(row_max > 0, row_max, 1.0))
    values = np.concatenate([np.ones((num_rows, 1)), weight], axis=1)
    if settings.normalise:
        values = values / values.sum(axis=1, keepdims=True)
    columns = np.concatenate([graphs.own_column[:, None], graphs.neighbours], axis=1)
    indptr = np.arange(0, num_rows * (k + 1) + 1, k + 1)
    return sp.csr_matrix((values.reshape(-1), columns.reshape(-1), indptr), shape=(num_rows, num_columns))


def expand(own: sp.csr_matrix, neighbours: np.ndarray, row_of_column: np.ndarray, k2: int) -> sp.csr_matrix:
    """The local query expansion: each row r of `own` ([R, C], the encodings before expansion)
    replaced by the mean of itself and the rows of its k2 - 1 nearest F-Graph neighbours
    (neighbours int64 [R, >= k2 - 1] column ids; row_of_column int64 [C], the row of `own`
    that encodes each column)."""
    if k2 == 1:
        return own
    num_rows = own.shape[0]
    rows_of = row_of_column[neighbours[:, : k2 - 1]]
    indptr = np.arange(0, num_rows * (k2 - 1) + 1, k2 - 1)
    mean = sp.csr_matrix((np.full(num_rows * (k2 - 1), 1.0 / k2), rows_of.reshape(-1), indptr),
                         shape=(num_rows, num_rows))
    return (own / k2 + mean @ own).tocsr()


@dataclass(frozen=True)
class LinkScoredSets:
    """A query set and a gallery with every row's F-Graph scored, ready to re-rank with any
    `LinkRerankSettings` of the same queries_together (`score_query_gallery`).

    query [Q, D], gallery [G, D]: the embeddings (detached). query_graphs, gallery_graphs:
    their `ScoredFGraphs`, whose columns are [gallery; queries] (inductive: gallery g is
    column g, query q column G + q) or [queries; gallery] (together: query q is column q,
    gallery g column Q + g).
    """

    query: Tensor
    gallery: Tensor
    queries_together: bool
    query_graphs: ScoredFGraphs
    gallery_graphs: ScoredFGraphs

    def row_of_column(self) -> np.ndarray:
        """int64 [Q + G]: the row of the stacked [queries; gallery] encodings of each column."""
        num_query, num_gallery = self.query.shape[0], self.gallery.shape[0]
        if self.queries_together:
            return np.arange(num_query + num_gallery)
        return np.concatenate([num_query + np.arange(num_gallery), np.arange(num_query)])


def score_query_gallery(model: nn.Module, query: Tensor, gallery: Tensor, *, k: int | None = None,
                        queries_together: bool = False, batch_size: int = 256,
                        progress: bool = False) -> LinkScoredSets:  # fmt: skip
    """Every query's and gallery item's F-Graph and its link scores (`LinkScoredSets`): each
    query over the gallery alone and the gallery over itself, or (queries_together) all rows
    over one another. k: the model's own k by default (it must equal it)."""
    model_k = int(model.to_config()["k"])
    k = model_k if k is None else k
    _check(query, gallery, k, model_k)
    query, gallery = query.detach(), gallery.detach()
    num_query = query.shape[0]
    if queries_together:
        everything = score_together(model, query, gallery, k, batch_size=batch_size, progress=progress)
        parts = [ScoredFGraphs(*(array[rows] for array in (everything.neighbours, everything.scores,
                                                           everything.squared, everything.own_column)))
                 for rows in (slice(0, num_query), slice(num_query, None))]  # fmt: skip
        return LinkScoredSets(query, gallery, True, *parts)
    gallery_graphs = score_gallery(model, gallery, k, batch_size=batch_size, progress=progress)
    gallery_knn = torch.from_numpy(gallery_graphs.neighbours).to(gallery.device)
    query_graphs = score_queries(model, query, gallery, k, gallery_knn=gallery_knn, batch_size=batch_size,
                                 progress=progress)
    return LinkScoredSets(query, gallery, False, query_graphs, gallery_graphs)


def encodings(scored: LinkScoredSets, settings: LinkRerankSettings) -> tuple[sp.csr_matrix, sp.csc_matrix]:
    """(query_v CSR [Q, Q + G], gallery_v CSC [G, Q + G]): the expanded encodings of the
    queries and the gallery (module docstring)."""
    if settings.queries_together != scored.queries_together:
        raise ValueError(f"settings.queries_together is {settings.queries_together}, but the sets were "
                         f"scored with queries_together={scored.queries_together}")
    num_query, num_gallery = scored.query.shape[0], scored.gallery.shape[0]
    num_columns = num_query + num_gallery
    own = sp.vstack([encode(scored.query_graphs, settings, num_columns),
                     encode(scored.gallery_graphs, settings, num_columns)]).tocsr()
    neighbours = np.concatenate([scored.query_graphs.neighbours, scored.gallery_graphs.neighbours])
    expanded = expand(own, neighbours, scored.row_of_column(), settings.k2)
    return expanded[:num_query], expanded[num_query:].tocsc()


def rerank_blocks(scored: LinkScoredSets, settings: LinkRerankSettings, *, block: int | None = None,
                  progress: bool = False) -> Iterator[tuple[slice, Tensor]]:  # fmt: skip
    """Re-ranked distances (module docstring) of scored sets, a block of queries at a time:
    (rows, dist float64 [len(rows), G] on the CPU, lower = more similar)."""
    _require_k2(settings.k2, scored.query_graphs.neighbours.shape[1])
    if block is not None:
        require_int("block", block, minimum=1)
    query_v, gallery_v = encodings(scored, settings)
    query, gallery = scored.query, scored.gallery
    bar = tqdm(total=query.shape[0], desc="re-ranking with link scores", unit="query", disable=not progress,
               leave=False)
    with bar:
        for rows in query_blocks(query_v, gallery_v, block):
            jaccard = jaccard_distances(query_v[rows], gallery_v)
            original = torch.cdist(query[rows].double(), gallery.double()).square_().cpu().numpy()
            row_max = original.max(axis=1, keepdims=True)
            original = original / np.where(row_max > 0, row_max, 1.0)
            bar.update(rows.stop - rows.start)
            value = settings.lambda_value
            yield rows, torch.from_numpy((1.0 - value) * jaccard + value * original)


def _require_k2(k2: int, k: int) -> None:
    """k2 averages at most the k + 1 rows of an F-Graph."""
    if k2 > k + 1:
        raise ValueError(f"k2 should be at most k + 1 = {k + 1} (the rows of an F-Graph), got k2={k2}")


def _check(query: Tensor, gallery: Tensor, k: int, model_k: int) -> None:
    require_query_gallery(query, gallery)
    require_int("k", k, minimum=1)
    if k != model_k:
        raise ValueError(f"k should be the model's k = {model_k} (its link head scores F-Graphs of that "
                         f"size), got {k}")
    if k > gallery.shape[0] - 1:
        raise ValueError(f"k should be at most G - 1 = {gallery.shape[0] - 1}, got k={k}")


def link_rerank_distances(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    settings: LinkRerankSettings | None = None,
    *,
    k: int | None = None,
    batch_size: int = 256,
    block: int | None = None,
    progress: bool = False,
) -> Iterator[tuple[slice, Tensor]]:
    """Re-ranked query-gallery distances (module docstring), a block of queries at a time.

    model: anything with `link_scores_of_nodes` and `to_config()["k"]` (HDML, HDMLOnFeatures).
    query [Q, D], gallery [G, D]: embeddings on the model's device. settings: None for the
    defaults. k: F-Graph size, the model's own k by default (it must equal it). batch_size:
    F-Graphs scored per forward pass. block: queries per distance block (None: about
    `hdml_ext.reid.jaccard.BLOCK_ENTRIES` entries). Returns an iterator of (rows, dist
    float64 [len(rows), G] on the CPU, lower = more similar). `score_query_gallery` then
    `rerank_blocks` do the same in two steps, so that several settings share one scoring.
    """
    settings = settings or LinkRerankSettings()
    _require_k2(settings.k2, int(model.to_config()["k"]))
    scored = score_query_gallery(model, query, gallery, k=k, queries_together=settings.queries_together,
                                 batch_size=batch_size, progress=progress)
    return rerank_blocks(scored, settings, block=block, progress=progress)


def link_rerank_order(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    settings: LinkRerankSettings | None = None,
    **kwargs: object,
) -> Iterator[tuple[slice, Tensor]]:
    """The gallery sorted by `link_rerank_distances` for each query, best first (equal
    distances keep gallery order): (rows, order int64 [len(rows), G]) per block of queries, for
    `hdml_ext.reid.evaluate_orders`. Keyword arguments as `link_rerank_distances`."""
    blocks = link_rerank_distances(model, query, gallery, settings, **kwargs)
    return ((rows, torch.sort(dist, dim=1, stable=True).indices) for rows, dist in blocks)
