"""Normalised GCN aggregation: `hdml_ext.ops.gcn_aggregate` over `torch.ops.hdml.gcn_aggregate`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._validate import require_dim, require_floating, require_tensor


def gcn_aggregate(adj: Tensor, z: Tensor) -> Tensor:
    """out = D^-1/2 A D^-1/2 z for each graph of a batch (the Â Z of paper eq. 12).

    Args:
        adj: [B, n, n] bool, or float with non-negative weights (0/1 or weighted edges).
        z: [B, n, F] node features, float16/bfloat16/float32/float64, same device as adj.

    Returns:
        out: [B, n, F], z's dtype. D is the diagonal of A's row sums; a node of zero degree
        gets a zero row and contributes nothing to the others.

    The normalisation is computed on the fly (no normalised [B, n, n] matrix is formed).
    Differentiable in z; adj is structure and gets no gradient.
    """
    require_tensor("adj", adj)
    require_tensor("z", z)
    require_dim("adj", adj, 3)
    require_dim("z", z, 3)
    require_floating("z", z)
    if adj.dtype != torch.bool and not adj.is_floating_point():
        raise TypeError(f"adj should be a bool or floating-point tensor, got dtype {adj.dtype}")
    if adj.shape[1] != adj.shape[2]:
        raise ValueError(f"adj should be square per graph, [B, n, n], got shape {tuple(adj.shape)}")
    if tuple(adj.shape[:2]) != tuple(z.shape[:2]):
        raise ValueError(f"z should have shape [B, n, F] = [{adj.shape[0]}, {adj.shape[1]}, F] to match adj, "
                         f"got {tuple(z.shape)}")
    return torch.ops.hdml.gcn_aggregate.default(adj, z)


@torch.library.register_fake("hdml::gcn_aggregate")
def _gcn_aggregate_fake(adj: Tensor, z: Tensor) -> Tensor:
    torch._check(adj.dim() == 3 and z.dim() == 3, lambda: "adj and z should be 3-D")
    torch._check(adj.shape[0] == z.shape[0] and adj.shape[1] == z.shape[1],
                 lambda: f"z should be [B, n, F] matching adj {tuple(adj.shape)}, got {tuple(z.shape)}")
    return z.new_empty(z.shape)


@torch.library.register_fake("hdml::gcn_aggregate_backward")
def _gcn_aggregate_backward_fake(grad_out: Tensor, adj: Tensor) -> Tensor:
    torch._check(grad_out.dim() == 3, lambda: f"grad_out should be 3-D, got {grad_out.dim()}-D")
    return grad_out.new_empty(grad_out.shape)


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    adj, _ = inputs
    ctx.save_for_backward(adj)


def _backward(ctx: Any, grad_out: Tensor) -> tuple:
    (adj,) = ctx.saved_tensors
    grad_z = torch.ops.hdml.gcn_aggregate_backward.default(grad_out, adj) if ctx.needs_input_grad[1] else None
    return None, grad_z


torch.library.register_autograd("hdml::gcn_aggregate", _backward, setup_context=_setup_context)
