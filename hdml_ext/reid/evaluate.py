"""Re-ID evaluation: any ranking of the gallery for every query scored with the Market-1501
protocol (`evaluate_orders`), and `evaluate_reid`, which ranks trained-model embeddings by the
ranking asked for and scores it.

    result = evaluate_reid(model, query, gallery, q_pids, g_pids, q_camids, g_camids,
                           ranking="link_rerank")
    result["mAP"], result["rank1"]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from torch import Tensor, nn

from .. import metrics
from .._checks import require_model_k
from .link_rerank import LinkRerankSettings, link_rerank_order
from .ranking import distance_order, graph_order, query_link_scores
from .rerank import k_reciprocal_order

#: What `evaluate_reid` ranks by (`EvalSettings.ranking`).
RANKINGS = ("graph", "distance", "k_reciprocal", "k_reciprocal_per_query", "link_rerank",
            "link_rerank_together")

#: The CMC ranks `evaluate_orders` reports as "rank1", "rank5", "rank10" (those <= max_rank).
REPORTED_RANKS = (1, 5, 10)


def evaluate_orders(
    orders: Iterable[tuple[slice, Tensor]],
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    *,
    max_rank: int = 50,
) -> dict:
    """mAP and CMC (Market-1501 protocol, `hdml_ext.metrics.rank_metrics_from_blocks`) of a
    ranking given block by block, as `distance_order` and `graph_order` yield it.

    Returns {"mAP", "mINP", "rank1", "rank5", "rank10": float, "cmc": float64 ndarray
    [max_rank], "num_valid_queries": int}; "rankR" only for the ranks R in `REPORTED_RANKS` that
    the CMC curve reaches (R <= max_rank).
    """
    result = metrics.rank_metrics_from_blocks(
        ((rows, order.cpu().numpy()) for rows, order in orders),
        q_pids, g_pids, q_camids, g_camids, max_rank=max_rank,
    )
    for r in REPORTED_RANKS:
        if r <= len(result["cmc"]):
            result[f"rank{r}"] = float(result["cmc"][r - 1])
    return result


def evaluate_reid(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    *,
    k: int | None = None,
    ranking: str = "graph",
    link_rerank: LinkRerankSettings | None = None,
    batch_size: int = 256,
    max_rank: int = 50,
    progress: bool = False,
) -> dict:
    """Re-ID metrics of a trained model from query and gallery embeddings.

    query [Q, D], gallery [G, D]: embeddings (`hdml_ext.engine.embed_rows` of the images, on
    the model's device). ranking: "graph" (link scores on the query F-Graphs, then distance),
    "distance" (plain Euclidean distance, no graph), "k_reciprocal" (k-reciprocal re-ranking of
    the same embeddings, all queries at once, `hdml_ext.reid.rerank`),
    "k_reciprocal_per_query" (each query re-ranked with the gallery alone, as graph ranking sees
    it), "link_rerank" (re-ranking with the learned edges of every F-Graph, each query with the
    gallery alone, `hdml_ext.reid.link_rerank`, with `link_rerank`'s settings, their defaults
    when None) or "link_rerank_together" (the same over all queries at once). k: F-Graph size:
    None or the model's own k (another raises ValueError before any work). Returns
    `evaluate_orders`' dict.
    """
    k = require_model_k("k", k, int(model.to_config()["k"]))
    pids = (q_pids, g_pids, q_camids, g_camids)
    if ranking == "distance":
        return evaluate_orders(distance_order(query, gallery), *pids, max_rank=max_rank)
    if ranking in ("k_reciprocal", "k_reciprocal_per_query"):
        together = ranking == "k_reciprocal"
        orders = k_reciprocal_order(query, gallery, queries_together=together, progress=progress)
        return evaluate_orders(orders, *pids, max_rank=max_rank)
    if ranking in ("link_rerank", "link_rerank_together"):
        together = ranking == "link_rerank_together"
        settings = replace(link_rerank or LinkRerankSettings(), queries_together=together)
        orders = link_rerank_order(model, query, gallery, settings, k=k, batch_size=batch_size,
                                   progress=progress)
        return evaluate_orders(orders, *pids, max_rank=max_rank)
    if ranking != "graph":
        raise ValueError(f"ranking should be one of {', '.join(map(repr, RANKINGS))}, got {ranking!r}")
    neighbours, scores = query_link_scores(model, query, gallery, k, batch_size=batch_size, progress=progress)
    return evaluate_orders(graph_order(query, gallery, neighbours, scores), *pids, max_rank=max_rank)
