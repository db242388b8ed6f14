"""Link scores of F-Graphs at inference: `hdml_ext.ops.fgraph_scores` over `torch.ops.hdml.fgraph_scores`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import require_dim, require_int, require_same_device, require_tensor

EDGE_INPUTS = ("node", "relative", "pair", "relative_cosine")

#: Graphs per tile on the CPU: each GEMM of the stack has graphs_per_tile * (k + 1) rows. At
#: k = 20, gcn_dims (256, 128) and one thread, 16, 32 and 64 graphs per tile spent 69%, 70% and
#: 69% of the kernel's time in MKL's GEMM micro-kernel (perf record; the rest: the weights'
#: packing per call, which shrinks with the tile, and the fused passes, which slow down as the
#: tile's activations, about 2 MB at 32, leave the L2 cache).
GRAPHS_PER_TILE = 32


class ScoringWeights(NamedTuple):
    """What `fgraph_scores` reads of a model: its RE-GCN after the first projection, in
    inference form, and its edge head (`hdml_ext.nn.scoring_weights` makes them from a model).

    weights: layers 1..L-1's projections [2 d_l, d_{l-1}] (rows [:d_l] give Z W_self).
    biases: every layer's bias [d_l].
    attention: () for the plain GCN, else per layer the channel attention's FC with its eval
        BatchNorm folded in, weight [d_l, d_l] then bias [d_l]: cw = sigmoid(ReLU(z W^T + b)).
    head: (W1 [h, w_in], b1 [h], PReLU slope [h] or [1], w2 [h], b2 [1]): (w2, b2) is fc2's
        "same" row minus its "different" row, so S = sigmoid(w2 . PReLU(e W1^T + b1) + b2).
    edge_input: what the head reads for node i of a graph with focus f, of the final features h:
        "node" (h_i), "relative" (h_i - h_f), "pair" ([h_i, h_f, |h_i - h_f|]) or
        "relative_cosine" ([h_i - h_f, cos(z_i, z_f)], z the table rows).
    relative_input: the first layer's projections are taken relative to the focus's.
    cosine_prior: None or (a, b): a cos(z_i, z_f) + b is added to the logit.
    overlap_prior: None or c: c * (row i's adjacency sum) / k is added to the logit.
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    attention: tuple[Tensor, ...]
    head: tuple[Tensor, Tensor, Tensor, Tensor, Tensor]
    edge_input: str = "node"
    relative_input: bool = False
    cosine_prior: tuple[float, float] | None = None
    overlap_prior: float | None = None

    def reads_table(self) -> bool:
        """Whether the scores read the RE-GCN inputs (the cosine input or prior)."""
        return self.edge_input == "relative_cosine" or self.cosine_prior is not None


def fgraph_scores(projected: Tensor, nodes: Tensor, adj: Tensor, weights: ScoringWeights, *,
                  table: Tensor | None = None, graphs_per_tile: int = GRAPHS_PER_TILE) -> Tensor:
    """S_f (paper eq. 14) of F-Graphs whose nodes are rows of one table, in inference mode.

    The RE-GCN stack after its first projection, then the edge head, run per tile of
    `graphs_per_tile` graphs: on the CPU every tile's activations stay in cache from step to
    step, the per-node passes between the GEMMs are fused (aggregation + bias + ReLU; attention
    gate; PReLU + fc2 + priors + sigmoid), and no [B, n, n] normalised matrix is formed.

    Args:
        projected: [N, 2 * d0] float32/float64, the first layer's projection of every table row
            (`REGCN.project`, no bias).
        nodes: int64 [B, k+1], rows of the table, each graph's focus first (ids in [0, N)).
        adj: [B, k+1, k+1] bool or floating, directed or symmetric (`FGraphs.batch`); the RE-GCN
            runs on its undirected form, the overlap prior reads it as given.
        weights: `ScoringWeights` in projected's dtype and device.
        table: [N, D] the RE-GCN inputs, needed when `weights.reads_table()`.
        graphs_per_tile: graphs per tile (>= 1).

    Returns:
        [B, k] in projected's dtype: the probability that node i shares the focus's identity.

    Inference only: no gradient flows (inputs that require grad are refused while grad mode is
    on). Equals `reference.fgraph_scores` up to float rounding.
    """
    require_tensor("projected", projected)
    require_tensor("nodes", nodes)
    require_tensor("adj", adj)
    require_dim("projected", projected, 2)
    require_dim("nodes", nodes, 2)
    require_dim("adj", adj, 3)
    if not isinstance(weights, ScoringWeights):
        raise TypeError(f"weights should be a ScoringWeights, got {type(weights).__name__}")
    if weights.edge_input not in EDGE_INPUTS:
        raise ValueError(f"edge_input should be one of {', '.join(EDGE_INPUTS)}, got {weights.edge_input!r}")
    require_int("graphs_per_tile", graphs_per_tile, minimum=1)
    require_same_device("nodes", nodes, "projected", projected)
    require_same_device("adj", adj, "projected", projected)
    if weights.reads_table():
        if table is None:
            raise ValueError("table should be given: the relative_cosine input and the cosine prior read it")
        require_tensor("table", table)
        require_same_device("table", table, "projected", projected)
    tensors = (projected, table, *weights.weights, *weights.biases, *weights.attention, *weights.head)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError("fgraph_scores is inference only: call it under torch.no_grad() "
                           "(an input requires grad)")
    cosine = list(weights.cosine_prior) if weights.cosine_prior is not None else []
    overlap = float(weights.overlap_prior) if weights.overlap_prior is not None else None
    return torch.ops.hdml.fgraph_scores.default(
        projected, nodes, adj, list(weights.weights), list(weights.biases), list(weights.attention),
        list(weights.head), table if weights.reads_table() else None, weights.edge_input,
        bool(weights.relative_input), cosine, overlap, graphs_per_tile)


@torch.library.register_fake("hdml::fgraph_scores")
def _fgraph_scores_fake(projected: Tensor, nodes: Tensor, adj: Tensor, weights: list[Tensor],
                        biases: list[Tensor], attention: list[Tensor], head: list[Tensor],
                        table: Tensor | None, edge_input: str,
                        relative_input: bool, cosine_prior: list[float], overlap_prior: float | None,
                        graphs_per_tile: int) -> Tensor:
    torch._check(projected.dim() == 2, lambda: f"projected should be 2-D, got shape {tuple(projected.shape)}")
    torch._check(nodes.dim() == 2 and nodes.shape[1] >= 2,
                 lambda: f"nodes should be [B, k + 1], got shape {tuple(nodes.shape)}")
    torch._check(adj.dim() == 3 and tuple(adj.shape) == (nodes.shape[0], nodes.shape[1], nodes.shape[1]),
                 lambda: f"adj should be [B, n, n] matching nodes, got shape {tuple(adj.shape)}")
    return projected.new_empty((nodes.shape[0], nodes.shape[1] - 1))
