"""Choosing the settings of re-ranking with learned edges on labelled validation identities:
every candidate of a stated search space re-ranks the validation queries against the validation
gallery (one F-Graph scoring shared by all candidates), and the one with the best mean of mAP
and rank-1 (Market-1501 protocol) is kept. The test identities choose nothing."""

from __future__ import annotations

import itertools
from dataclasses import replace

import torch
from torch import Tensor, nn

from .evaluate import evaluate_orders
from .link_rerank import LinkRerankSettings, rerank_blocks, score_query_gallery

#: The search space: weights, power, normalise, k2 and lambda_value of `LinkRerankSettings`.
SEARCH_SPACE: dict[str, tuple] = {
    "weights": ("link",),
    "power": (1.0, 2.0),
    "normalise": (False, True),
    "k2": (1, 3, 6),
    "lambda_value": (0.0, 0.1, 0.3, 0.5, 0.7, 0.9),
}


def candidates(queries_together: bool, space: dict[str, tuple] | None = None) -> list[LinkRerankSettings]:
    """Every combination of `space` (default SEARCH_SPACE) with the given queries_together,
    in the space's order."""
    space = SEARCH_SPACE if space is None else space
    keys = list(space)
    return [LinkRerankSettings(**dict(zip(keys, values)), queries_together=queries_together)
            for values in itertools.product(*(space[key] for key in keys))]


def selection_score(metrics: dict) -> float:
    """What the search maximises: the mean of mAP and rank-1."""
    return (float(metrics["mAP"]) + float(metrics["rank1"])) / 2.0


def choose_link_rerank(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    *,
    queries_together: bool = False,
    space: dict[str, tuple] | None = None,
    batch_size: int = 256,
) -> tuple[LinkRerankSettings, dict, list[dict]]:
    """The `LinkRerankSettings` among `candidates(queries_together, space)` (those with k2 at
    most the model's k + 1) with the best `selection_score` on labelled validation query
    [Q, D] and gallery [G, D] embeddings (ties keep the first). Returns (settings, its
    validation metrics {"mAP", "rank1"}, every candidate's {"settings", "mAP", "rank1"} in
    search order)."""
    scored = score_query_gallery(model, query, gallery, queries_together=queries_together,
                                 batch_size=batch_size)
    pids = (q_pids, g_pids, q_camids, g_camids)
    table = []
    best: tuple[float, LinkRerankSettings, dict] | None = None
    graph_rows = scored.query_graphs.neighbours.shape[1] + 1
    for settings in candidates(queries_together, space):
        if settings.k2 > graph_rows:
            continue  # the expansion averages at most an F-Graph's k + 1 rows
        orders = ((rows, torch.sort(dist, dim=1, stable=True).indices)
                  for rows, dist in rerank_blocks(scored, settings))
        result = evaluate_orders(orders, *pids)
        metrics = {"mAP": float(result["mAP"]), "rank1": float(result["rank1"])}
        table.append({"settings": settings.to_dict(), **metrics})
        if best is None or selection_score(metrics) > best[0]:
            best = (selection_score(metrics), settings, metrics)
    if best is None:
        raise ValueError("the search space should hold at least one candidate, got none")
    return replace(best[1]), best[2], table
