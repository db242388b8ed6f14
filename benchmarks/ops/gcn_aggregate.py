"""gcn_aggregate (out = D^-1/2 A D^-1/2 z) against the normalised-bmm composition a user would write.

The reference materialises the normalised adjacency and multiplies:

    a = adj.float(); deg = a.sum(-1); d = deg.pow(-0.5).masked_fill(deg == 0, 0)
    ahat = d[:, :, None] * a * d[:, None, :]; out = torch.bmm(ahat, z)

and is differentiated by autograd. Both sides start from the same inputs (z requiring grad),
take their gradient with torch.autograd.grad (no accumulation into .grad), and allocate all
their outputs. The adjacency is a batch of real F-Graphs: k = 50 nearest neighbours (so
n = 51 nodes) of random focus nodes among 4,000 clustered points, symmetric, focus row full.
"""

from __future__ import annotations

import torch
from common import Row, time_ms
from torch import Tensor

from hdml_ext.ops import gcn_aggregate, reference

B, K, F = 256, 50, 256


def _fgraph_adjacency(device: str) -> Tensor:
    """bool [B, K+1, K+1] F-Graphs of k = K nearest neighbours among 4,000 points in 200 clusters."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(200, 16, generator=gen)
    labels = torch.randint(0, 200, (4000,), generator=gen)
    points = centers[labels] + 0.6 * torch.randn(4000, 16, generator=gen)
    _, knn_idx = reference.knn(points, K)
    focus = torch.randperm(points.shape[0], generator=gen)[:B]
    return reference.fgraph_adjacency(knn_idx, focus).to(device)


def _eager_forward(adj: Tensor, z: Tensor) -> Tensor:
    a = adj.float()
    deg = a.sum(-1)
    d = deg.pow(-0.5).masked_fill(deg == 0, 0)
    ahat = d[:, :, None] * a * d[:, None, :]
    return torch.bmm(ahat, z)


def rows(device: str) -> list[Row]:
    """Forward + backward and forward only, B = 256 F-Graphs of n = 51 nodes, F = 256, float32."""
    adj = _fgraph_adjacency(device)
    gen = torch.Generator(device=device).manual_seed(1)
    z = torch.randn(B, K + 1, F, device=device, generator=gen).requires_grad_(True)
    g = torch.randn(B, K + 1, F, device=device, generator=gen)
    z_const = z.detach()
    density = adj.float().mean().item()
    case = f"B={B} n={K + 1} F={F} f32, bool F-Graphs {100 * density:.0f}% dense"
    note = "ours skips the zero entries of A and never forms the normalised matrix"
    return [
        Row(op="gcn_aggregate", case=f"fwd+bwd {case}", ours="hdml gcn_aggregate",
            ours_ms=time_ms(lambda: torch.autograd.grad(gcn_aggregate(adj, z), z, g), device=device),
            reference="normalised adj + bmm, autograd",
            reference_ms=time_ms(lambda: torch.autograd.grad(_eager_forward(adj, z), z, g), device=device),
            note=note),
        Row(op="gcn_aggregate", case=f"fwd {case}", ours="hdml gcn_aggregate",
            ours_ms=time_ms(lambda: gcn_aggregate(adj, z_const), device=device),
            reference="normalised adj + bmm",
            reference_ms=time_ms(lambda: _eager_forward(adj, z_const), device=device),
            note=note),
    ]
