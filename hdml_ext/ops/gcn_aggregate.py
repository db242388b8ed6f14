"""Normalised GCN aggregation: `hdml_ext.ops.gcn_aggregate` over `torch.ops.hdml.gcn_aggregate`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import require_dim, require_same_device, require_tensor

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def gcn_aggregate(adj: Tensor, z: Tensor) -> Tensor:
    """out = D^-1/2 A D^-1/2 z for each graph of a batch (the Â Z of paper eq. 12).

    out[b, i, :] = d_i * sum_j A[b, i, j] * d_j * z[b, j, :], with deg_i = sum_j A[b, i, j] (row
    sums) and d_i = deg_i^-1/2 where deg_i > 0, else 0.

    Args:
        adj: [B, n, n] bool, or float16/bfloat16/float32/float64 edge weights (0 = no edge).
            The weights are used as given: a negative weight is not rejected, and a node whose
            row sum is <= 0 counts as having zero degree (d = 0), as in
            `reference.gcn_aggregate`. Weights must be finite: NaN or +-inf is rejected (a
            RuntimeError naming adj): a degree summed over it is not a number, and the kernels
            would give zeros where `reference.gcn_aggregate` gives NaN. The check is one extra
            pass over a weighted adj (on CUDA, a synchronisation too); a bool adj needs none.
            A need not be symmetric. Its float dtype may differ from z's (the weights are
            converted to z's accumulation type).
        z: [B, n, F] node features, float16/bfloat16/float32/float64, on adj's device. Any
            strides.

    Returns:
        out: [B, n, F], contiguous, z's dtype (sums accumulated in float32 for float16 and
        bfloat16). A node of zero degree gets a zero row and contributes nothing to the others;
        entries of A that are zero are skipped, not multiplied.

    The normalisation is computed on the fly (no normalised [B, n, n] matrix is formed).
    Differentiable in z (the gradient is the transpose aggregation, `gcn_aggregate_backward`,
    itself differentiable); adj is structure and gets no gradient.
    """
    require_tensor("adj", adj)
    require_tensor("z", z)
    require_dim("adj", adj, 3)
    require_dim("z", z, 3)
    if adj.dtype != torch.bool and adj.dtype not in _FLOATS:
        raise TypeError("adj should be a bool or floating-point (float16, bfloat16, float32, float64) "
                        f"tensor, got dtype {adj.dtype}")
    if z.dtype not in _FLOATS:
        raise TypeError(f"z should be a floating-point (float16, bfloat16, float32, float64) tensor, "
                        f"got dtype {z.dtype}")
    if adj.shape[1] != adj.shape[2]:
        raise ValueError(f"adj should be square per graph, [B, n, n], got shape {tuple(adj.shape)}")
    if tuple(adj.shape[:2]) != tuple(z.shape[:2]):
        raise ValueError(f"z should have shape [B, n, F] = [{adj.shape[0]}, {adj.shape[1]}, F] to match adj, "
                         f"got {tuple(z.shape)}")
    require_same_device("z", z, "adj", adj)
    return torch.ops.hdml.gcn_aggregate.default(adj, z)


def _check_shapes(adj: Tensor, src: Tensor, name: str) -> None:
    torch._check(adj.dim() == 3 and adj.shape[1] == adj.shape[2],
                 lambda: f"adj should be [B, n, n], got shape {tuple(adj.shape)}")
    torch._check(src.dim() == 3 and src.shape[0] == adj.shape[0] and src.shape[1] == adj.shape[1],
                 lambda: f"{name} should be [B, n, F] matching adj {tuple(adj.shape)}, "
                         f"got {tuple(src.shape)}")
    require_same_device(name, src, "adj", adj)


@torch.library.register_fake("hdml::gcn_aggregate")
def _gcn_aggregate_fake(adj: Tensor, z: Tensor) -> Tensor:
    _check_shapes(adj, z, "z")
    return z.new_empty(z.shape)


@torch.library.register_fake("hdml::gcn_aggregate_backward")
def _gcn_aggregate_backward_fake(grad_out: Tensor, adj: Tensor) -> Tensor:
    _check_shapes(adj, grad_out, "grad_out")
    return grad_out.new_empty(grad_out.shape)


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    adj, _ = inputs
    ctx.save_for_backward(adj)


def _backward(ctx: Any, grad_out: Tensor) -> tuple:
    (adj,) = ctx.saved_tensors
    grad_z = torch.ops.hdml.gcn_aggregate_backward.default(grad_out, adj) if ctx.needs_input_grad[1] else None
    return None, grad_z


def _setup_context_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
    _, adj = inputs
    ctx.save_for_backward(adj)


def _backward_backward(ctx: Any, grad_grad_z: Tensor) -> tuple:
    # gcn_aggregate_backward is linear in grad_out with the transposed matrix, so its own
    # gradient is the forward aggregation.
    (adj,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None
    return torch.ops.hdml.gcn_aggregate.default(adj, grad_grad_z), None


torch.library.register_autograd("hdml::gcn_aggregate", _backward, setup_context=_setup_context)
torch.library.register_autograd("hdml::gcn_aggregate_backward", _backward_backward,
                                setup_context=_setup_context_backward)
