"""F-Graphs (paper III-B): `FGraphs`, the one handle every caller holds, built by
`build_fgraphs` (any kNN backend) or, for Re-ID queries over a gallery, `query_fgraphs`.
Only this package calls the knn and fgraph_adjacency ops (docs/graph.md)."""

from .build import KNN_BACKENDS, build_fgraphs, largest_k, require_knn_backend, require_target_recall
from .exact import exact_knn, exact_knn_rows
from .faiss_backends import DEFAULT_TARGET_RECALL
from .fgraphs import FGraphs, fgraph_nodes, require_k
from .negatives import cap_positive_neighbours
from .query import QueryFGraphs, query_fgraphs

__all__ = [
    "DEFAULT_TARGET_RECALL",
    "KNN_BACKENDS",
    "FGraphs",
    "QueryFGraphs",
    "build_fgraphs",
    "cap_positive_neighbours",
    "exact_knn",
    "exact_knn_rows",
    "fgraph_nodes",
    "largest_k",
    "query_fgraphs",
    "require_k",
    "require_knn_backend",
    "require_target_recall",
]
