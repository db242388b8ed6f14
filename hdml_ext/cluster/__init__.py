"""Face clustering: F-Graph edge scoring, pseudo-label propagation, Infomap and approximate
rank-order clustering, the validation search of their parameters, the validated choice a model
carries, and edge diagnostics."""

from .aro import aro, aro_cluster, aro_distances
from .choice import (
    ClusteringRun,
    calibrate,
    cluster_by,
    cluster_edges,
    resolve_choice,
    run_clustering,
    store_choice,
    stored_choice,
)
from .config import ClusterConfig
from .diagnostics import edge_diagnostics, within_focus_auc
from .infomap import cosine_knn_edges, infomap_edges, infomap_knn
from .propagation import connected_components, propagate_edges, propagate_knn
from .run import cluster, clustering_fgraphs, clustering_metrics
from .scoring import link_edges, node_fgraphs, similarity_edges
from .selection import choose_clustering, choose_infomap, selection_score

__all__ = [
    "ClusterConfig",
    "ClusteringRun",
    "aro",
    "aro_cluster",
    "aro_distances",
    "calibrate",
    "choose_clustering",
    "choose_infomap",
    "cluster",
    "cluster_by",
    "cluster_edges",
    "clustering_fgraphs",
    "clustering_metrics",
    "connected_components",
    "cosine_knn_edges",
    "edge_diagnostics",
    "infomap_edges",
    "infomap_knn",
    "link_edges",
    "node_fgraphs",
    "propagate_edges",
    "propagate_knn",
    "resolve_choice",
    "run_clustering",
    "selection_score",
    "similarity_edges",
    "store_choice",
    "stored_choice",
    "within_focus_auc",
]
