"""Person re-identification: rankings of a gallery for each query (distance, the paper's graph
rule, k-reciprocal re-ranking, re-ranking with learned edges), the validation search of the
latter's settings, and evaluation with the Market-1501 protocol."""

from .evaluate import RANKINGS, evaluate_orders, evaluate_reid
from .link_rerank import LinkRerankSettings, link_rerank_distances, link_rerank_order
from .ranking import distance_order, graph_order, query_link_scores
from .rerank import k_reciprocal_distances, k_reciprocal_order
from .selection import choose_link_rerank

__all__ = [
    "RANKINGS",
    "LinkRerankSettings",
    "choose_link_rerank",
    "distance_order",
    "evaluate_orders",
    "evaluate_reid",
    "graph_order",
    "k_reciprocal_distances",
    "k_reciprocal_order",
    "link_rerank_distances",
    "link_rerank_order",
    "query_link_scores",
]
