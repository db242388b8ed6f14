"""F-Graph construction: node sets and adjacency from a kNN table."""

from .fgraph import fgraph_nodes

__all__ = ["fgraph_nodes"]
