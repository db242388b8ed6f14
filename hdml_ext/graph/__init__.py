"""F-Graph construction: kNN tables at any scale (`build_fgraphs`), node sets and adjacency."""

from .build import BACKENDS, FGraphs, build_fgraphs, exact_knn_rows
from .fgraph import fgraph_nodes

__all__ = ["BACKENDS", "FGraphs", "build_fgraphs", "exact_knn_rows", "fgraph_nodes"]
