"""Person re-identification: rankings of a gallery for each query (distance, the paper's graph
rule, k-reciprocal re-ranking) and their evaluation with the Market-1501 protocol."""

from .ranking import RANKINGS, distance_order, evaluate_orders, evaluate_reid, graph_order, query_link_scores
from .rerank import k_reciprocal_distances, k_reciprocal_order

__all__ = [
    "RANKINGS",
    "distance_order",
    "evaluate_orders",
    "evaluate_reid",
    "graph_order",
    "k_reciprocal_distances",
    "k_reciprocal_order",
    "query_link_scores",
]
