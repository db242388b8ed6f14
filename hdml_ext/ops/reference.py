"""Pure-torch references of every op, written for clarity, not speed.

The tests compare the kernels against these; the benchmarks time the fast vectorised
compositions a user would otherwise write (benchmarks/), not these.
"""

from __future__ import annotations

import torch
from torch import Tensor


def knn(x: Tensor, k: int, *, queries: Tensor | None = None, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Exact kNN by direct differences in float64; ties go to the smaller index.

    x: [N, D]; queries: [M, D] or None (then the queries are x and each row excludes itself).
    Returns dist [M, k] (Euclidean, ascending, x's dtype) and idx [M, k] int64.
    """
    exclude_self = queries is None
    q = x if queries is None else queries
    base = x.double()
    dists, idxs = [], []
    for start in range(0, q.shape[0], chunk):
        block = q[start:start + chunk].double()
        d2 = (block[:, None, :] - base[None, :, :]).pow(2).sum(-1)
        if exclude_self:
            rows = torch.arange(block.shape[0], device=x.device)
            d2[rows, rows + start] = float("inf")
        # A stable sort keeps equal distances in index order: ties to the smaller index.
        order = torch.sort(d2, dim=1, stable=True).indices[:, :k]
        dists.append(d2.gather(1, order).sqrt())
        idxs.append(order)
    dist = torch.cat(dists).to(x.dtype) if dists else x.new_empty((0, k))
    idx = torch.cat(idxs) if idxs else torch.empty((0, k), dtype=torch.int64, device=x.device)
    return dist, idx


def knn_ivf(x: Tensor, list_ptr: Tensor, list_ids: Tensor, probe: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """kNN of every row among the rows of the lists it probes, by direct differences in float64.

    Same arguments and results as `hdml_ext.ops.knn_ivf`: self excluded, ties to the smaller
    index, rows with fewer than k candidates padded with inf / -1.
    """
    n = x.shape[0]
    home = torch.empty(n, dtype=torch.int64, device=x.device)
    lists = torch.arange(list_ptr.numel() - 1, device=x.device)
    home[list_ids] = torch.repeat_interleave(lists, list_ptr.diff())
    d2 = (x.double()[:, None, :] - x.double()[None, :, :]).pow(2).sum(-1)
    probed = (home[None, :, None] == probe[:, None, :]).any(-1)  # [N, N]: j in a list row i probes
    probed.fill_diagonal_(False)
    d2 = d2.masked_fill(~probed, float("inf"))
    order = torch.sort(d2, dim=1, stable=True).indices[:, :k]
    dist = d2.gather(1, order)
    idx = order.masked_fill(dist.isinf(), -1)
    return dist.sqrt().to(x.dtype), idx


def fgraph_nodes(knn_idx: Tensor, focus: Tensor | None = None) -> Tensor:
    """Node ids of each F-Graph: [B, k+1], row b = [f, knn_idx[f, 0], ..., knn_idx[f, k-1]]."""
    if focus is None:
        focus = torch.arange(knn_idx.shape[0], device=knn_idx.device)
    return torch.cat([focus[:, None], knn_idx[focus]], dim=1)


def fgraph_adjacency(knn_idx: Tensor, focus: Tensor | None = None, *, symmetric: bool = True) -> Tensor:
    """F-Graph adjacency, bool [B, k+1, k+1].

    adj[b, a, c] is True iff nodes[b, c] is among knn_idx[nodes[b, a]] and a != c; with
    symmetric=True OR-ed with its transpose. Builds the [B, k+1, k, k+1] comparison: a
    reference, not a kernel.
    """
    nodes = fgraph_nodes(knn_idx, focus)
    member_lists = knn_idx[nodes]  # [B, n, k]: the neighbour list of every member
    adj = (member_lists[:, :, :, None] == nodes[:, None, None, :]).any(dim=2)
    if symmetric:
        adj = adj | adj.transpose(1, 2)
    n = nodes.shape[1]
    adj &= ~torch.eye(n, dtype=torch.bool, device=adj.device)
    return adj


def nfa_gate_weights(logits: Tensor, lo: float = 0.3, hi: float = 0.9) -> Tensor:
    """The clamped gate of paper eq. 6-7: g = sigmoid(logits); lo where g < lo, 1 where g > hi.

    Computed in float32, or float64 for float64 logits."""
    g = torch.sigmoid(logits.to(torch.promote_types(logits.dtype, torch.float32)))
    return torch.where(g < lo, torch.full_like(g, lo), torch.where(g > hi, torch.ones_like(g), g))


def nfa_gate(x: Tensor, logits: Tensor, lo: float = 0.3, hi: float = 0.9) -> Tensor:
    """y = x * g' (paper eq. 8), g' from `nfa_gate_weights`, broadcast over x's spatial dims.

    x: [B, C, *spatial], logits: [B, C]. Differentiable through autograd: d g'/d logits is
    g(1-g) where lo <= g <= hi and 0 elsewhere.
    """
    gate = nfa_gate_weights(logits, lo, hi).to(x.dtype)
    return x * gate.reshape(*gate.shape, *([1] * (x.dim() - 2)))


def gcn_aggregate(adj: Tensor, z: Tensor) -> Tensor:
    """out = D^-1/2 A D^-1/2 z per graph; adj: [B, n, n] (bool or non-negative weights),
    z: [B, n, F]. D = row sums of A; rows and columns of zero degree contribute zero."""
    a = adj.to(z.dtype)
    deg = a.sum(dim=-1)
    inv_sqrt = torch.where(deg > 0, deg.clamp_min(torch.finfo(z.dtype).tiny).rsqrt(), torch.zeros_like(deg))
    return inv_sqrt[..., None] * torch.bmm(a, inv_sqrt[..., None] * z)


def fgraph_scores(projected: Tensor, nodes: Tensor, adj: Tensor, weights, *,
                  table: Tensor | None = None) -> Tensor:
    """S_f of F-Graphs by plain torch ops, step by step: `hdml_ext.ops.fgraph_scores`'s
    arguments (weights: an `ops.fgraph_scores.ScoringWeights`) and result [B, k]."""
    und = adj | adj.transpose(1, 2) if adj.dtype == torch.bool else torch.maximum(adj, adj.transpose(1, 2))
    p = projected[nodes]
    x = None
    for layer, bias in enumerate(weights.biases):
        if layer > 0:
            p = x @ weights.weights[layer - 1].T
        if layer == 0 and weights.relative_input:
            p = p - p[:, :1]
        own, nbr = p.split(bias.shape[0], dim=-1)
        x = torch.relu(own + gcn_aggregate(und, nbr) + bias)
        if weights.attention:
            fc_weight, fc_bias = weights.attention[2 * layer], weights.attention[2 * layer + 1]
            x = x * torch.sigmoid(torch.relu(x @ fc_weight.T + fc_bias))
    h_nodes, h_focus = x[:, 1:], x[:, :1]
    cosine = None
    if weights.edge_input == "relative_cosine" or weights.cosine_prior is not None:
        unit = torch.nn.functional.normalize(table[nodes], dim=-1)
        cosine = (unit[:, 1:] * unit[:, :1]).sum(-1)
    if weights.edge_input == "node":
        e = h_nodes
    elif weights.edge_input == "relative":
        e = h_nodes - h_focus
    elif weights.edge_input == "pair":
        e = torch.cat([h_nodes, h_focus.expand_as(h_nodes), (h_nodes - h_focus).abs()], dim=-1)
    else:
        e = torch.cat([h_nodes - h_focus, cosine[..., None]], dim=-1)
    w1, b1, slope, w2, b2 = weights.head
    hidden = e @ w1.T + b1
    logit = torch.where(hidden > 0, hidden, slope * hidden) @ w2 + b2
    if weights.cosine_prior is not None:
        logit = logit + weights.cosine_prior[0] * cosine + weights.cosine_prior[1]
    if weights.overlap_prior is not None:
        k = nodes.shape[1] - 1
        logit = logit + weights.overlap_prior * adj[:, 1:].to(logit.dtype).sum(-1) / k
    return torch.sigmoid(logit)
