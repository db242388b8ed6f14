"""Face clustering: F-Graph edge scoring, pseudo-label propagation, the validation search of
its threshold, and edge diagnostics."""

from .config import ClusterConfig
from .diagnostics import edge_diagnostics, within_focus_auc
from .propagation import connected_components, propagate_edges, propagate_knn
from .run import cluster, clustering_metrics
from .scoring import link_edges, node_fgraphs, similarity_edges
from .selection import choose_clustering, selection_score

__all__ = [
    "ClusterConfig",
    "choose_clustering",
    "cluster",
    "clustering_metrics",
    "connected_components",
    "edge_diagnostics",
    "link_edges",
    "node_fgraphs",
    "propagate_edges",
    "propagate_knn",
    "selection_score",
    "similarity_edges",
    "within_focus_auc",
]
