"""Training, inference and clustering engines."""

from .propagation import connected_components, propagate_edges, propagate_knn

__all__ = ["connected_components", "propagate_edges", "propagate_knn"]
