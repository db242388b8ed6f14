"""The link head's priors (focus-aware options the paper lacks): the cosine prior's and the
overlap prior's starting values, the neighbour overlap o_i the overlap prior reads, and the
check that it reads the directed F-Graph adjacency."""

from __future__ import annotations

import torch
from torch import Tensor

#: The cosine prior's starting (scale, bias): S_f starts as sigmoid(10 cos - 5) plus what the
#: untrained edge head adds, an even chance at cosine 0.5.
COSINE_PRIOR_INIT = (10.0, -5.0)

#: The overlap prior's starting weight c: the logit gains c * o_i, o_i the share of node i's k
#: nearest neighbours inside its focus's F-Graph. Unlearned, cos + 0.5 o_i separated held-out
#: edges best of the mixtures tried (benchmarks/bench_context.py); beside the cosine prior's
#: scale 10 that is c = 5.
OVERLAP_PRIOR_INIT = 5.0


def neighbour_overlap(adj: Tensor) -> Tensor:
    """o [B, k] float32: for the non-focus nodes i = 1..k of F-Graphs with adjacency [B, k+1,
    k+1], the share of row i's entries set, divided by k. With the directed adjacency that
    `FGraphs.batch` gives (row i: node i's k nearest neighbours, those inside the graph), this
    is the share of i's neighbours that are the focus or its neighbours: the shared-neighbour
    count that k-reciprocal methods build on. With a symmetric adjacency it is i's degree / k:
    `require_directed` refuses that where the models read it."""
    k = adj.shape[1] - 1
    return adj[:, 1:].to(torch.float32).sum(dim=-1) / k


def require_directed(adj: Tensor) -> None:
    """Raise ValueError when the F-Graph adjacency [B, n, n] looks symmetrised: every graph of
    the batch equals its transpose and at least one is not complete.

    The directed adjacency (`FGraphs.batch`, `FGraphs.adjacency(symmetric=False)`) has row 0 all
    set (the focus's neighbours are the graph), and column 0 all set only when every member
    lists the focus among its own k nearest; it is symmetric in a graph only when every kNN
    relation inside it is mutual. A whole batch of such graphs that are not complete (where
    both forms give the same overlap, 1) does not occur at the k and batch sizes the models
    see, while `FGraphs.adjacency()`'s default (symmetric=True) gives one every time, so the
    overlap prior would silently read each node's degree. Skipped while torch.compile traces
    (the test reads the values)."""
    if torch.compiler.is_compiling() or adj.shape[0] == 0:
        return
    if not bool((adj == adj.transpose(1, 2)).all()):
        return
    n = adj.shape[1]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=adj.device)
    if bool((adj != 0)[:, off_diagonal].all()):
        return
    raise ValueError(
        "adj should be the directed F-Graph adjacency (FGraphs.batch, or FGraphs.adjacency(focus, "
        "symmetric=False)) when overlap_prior is on, got a symmetric one in every graph of the batch "
        f"[{adj.shape[0]}, {n}, {n}] (FGraphs.adjacency's default symmetric=True): the overlap prior "
        "reads row i as node i's own k nearest neighbours and would read its degree instead; the "
        "models derive the undirected graph themselves"
    )
