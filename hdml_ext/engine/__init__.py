"""Training, inference and clustering engines."""

from .checkpoint import atomic_save, load_model, read_checkpoint, seed_everything
from .clustering import ClusterConfig, cluster, clustering_metrics, link_edges
from .inference import embed_rows
from .models import new_model
from .propagation import connected_components, propagate_edges, propagate_knn
from .reid import distance_order, evaluate_orders, evaluate_reid, graph_order, query_link_scores
from .rerank import k_reciprocal_distances, k_reciprocal_order
from .settings import (
    ClusterSettings,
    EvalSettings,
    ModelSettings,
    Settings,
    SettingsError,
    TrainConfig,
    dump_settings,
    load_settings,
)
from .trainer import Trainer

__all__ = [
    "ClusterConfig",
    "ClusterSettings",
    "EvalSettings",
    "ModelSettings",
    "Settings",
    "SettingsError",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "cluster",
    "clustering_metrics",
    "connected_components",
    "distance_order",
    "dump_settings",
    "embed_rows",
    "evaluate_orders",
    "evaluate_reid",
    "graph_order",
    "k_reciprocal_distances",
    "k_reciprocal_order",
    "link_edges",
    "load_model",
    "load_settings",
    "new_model",
    "propagate_edges",
    "propagate_knn",
    "query_link_scores",
    "read_checkpoint",
    "seed_everything",
]
