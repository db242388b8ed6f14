"""The kernels as torch ops: thin typed wrappers over torch.ops.hdml.*, with autograd and
fake (meta) registrations so they work under torch.compile. `reference` holds pure-torch
versions of each, used by the tests."""

from . import reference
from .fgraph_adjacency import fgraph_adjacency
from .fgraph_scores import ScoringWeights, fgraph_scores
from .gcn_aggregate import gcn_aggregate
from .knn import knn
from .knn_ivf import knn_ivf
from .nfa_gate import nfa_gate

__all__ = ["ScoringWeights", "fgraph_adjacency", "fgraph_scores", "gcn_aggregate", "knn", "knn_ivf",
           "nfa_gate", "reference"]
