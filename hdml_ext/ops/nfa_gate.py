"""NFA clamped channel gate (paper eq. 6-8): `hdml_ext.ops.nfa_gate` over `torch.ops.hdml.nfa_gate`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import require_float, require_floating, require_same_device, require_tensor


def require_gate_bounds(lo: object, hi: object) -> tuple[float, float]:
    """Check the gate's floor and saturation threshold, 0 <= lo < hi <= 1, and return them as
    floats (the one check of `nfa_gate`, `hdml_ext.nn.NFA` and `hdml_ext.nn.HANet`)."""
    lo, hi = require_float("lo", lo), require_float("hi", hi)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"lo and hi should satisfy 0 <= lo < hi <= 1, got lo={lo}, hi={hi}")
    return lo, hi


def nfa_gate(x: Tensor, logits: Tensor, lo: float = 0.3, hi: float = 0.9) -> Tensor:
    """Scale each channel of `x` by the clamped sigmoid of its logit.

    g = sigmoid(logits); g' = lo where g < lo, 1 where g > hi, g otherwise (the paper's
    epsilon = 0.3 floor and 0.9 -> 1 rule); y = x * g' broadcast over the spatial dims.

    Args:
        x: [B, C, *spatial] float16/bfloat16/float32/float64 (spatial may be empty);
            contiguous or channels_last.
        logits: [B, C] pre-sigmoid channel scores (the NFA's FC output), on x's device; any
            floating dtype (the gate is computed in float32, float64 for float64 x).
        lo, hi: the floor and the saturation threshold, 0 <= lo < hi <= 1.

    Returns:
        y: x's shape and dtype; x's memory format when x is contiguous or channels_last
            (channels-last-like in general), contiguous for any other strides.

    Differentiable in x and logits: dx = dy * g'; dlogits = sum_spatial(dy * x) * g(1 - g)
    where lo <= g <= hi, else 0 (one fused pass over dy and x).
    """
    require_tensor("x", x)
    require_tensor("logits", logits)
    require_floating("x", x)
    require_floating("logits", logits)
    require_same_device("logits", logits, "x", x)
    lo, hi = require_gate_bounds(lo, hi)
    if x.dim() < 2:
        raise ValueError(f"x should be [B, C, *spatial] (at least 2-D), got shape {tuple(x.shape)}")
    if tuple(logits.shape) != tuple(x.shape[:2]):
        raise ValueError(f"logits should have shape [B, C] = {tuple(x.shape[:2])} to match x, "
                         f"got {tuple(logits.shape)}")
    return torch.ops.hdml.nfa_gate.default(x, logits, lo, hi)


def _empty_like_kernel_output(x: Tensor) -> Tensor:
    """An empty tensor laid out as the kernels lay out y and grad_x: like x when x is contiguous
    or channels-last-like (dense [B, *spatial, C] memory order, e.g. channels_last), else
    contiguous (the kernels read a contiguous copy of such x)."""
    channels_last_like = x.dim() >= 3 and x.permute(0, *range(2, x.dim()), 1).is_contiguous()
    if x.is_contiguous() or channels_last_like:
        return torch.empty_like(x)
    return x.new_empty(x.shape)


@torch.library.register_fake("hdml::nfa_gate")
def _nfa_gate_fake(x: Tensor, logits: Tensor, lo: float, hi: float) -> Tensor:
    torch._check(x.dim() >= 2, lambda: f"x should be at least 2-D, got {x.dim()}-D")
    torch._check(logits.shape == x.shape[:2],
                 lambda: f"logits should have shape {tuple(x.shape[:2])}, got {tuple(logits.shape)}")
    require_same_device("logits", logits, "x", x)
    return _empty_like_kernel_output(x)


@torch.library.register_fake("hdml::nfa_gate_backward")
def _nfa_gate_backward_fake(grad_y: Tensor, x: Tensor, logits: Tensor, lo: float,
                            hi: float) -> tuple[Tensor, Tensor]:
    torch._check(grad_y.shape == x.shape,
                 lambda: f"grad_y should have x's shape {tuple(x.shape)}, got {tuple(grad_y.shape)}")
    require_same_device("grad_y", grad_y, "x", x)
    require_same_device("logits", logits, "x", x)
    return _empty_like_kernel_output(x), logits.new_empty(logits.shape)


def _setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, logits, lo, hi = inputs
    ctx.save_for_backward(x, logits)
    ctx.lo, ctx.hi = lo, hi


def _backward(ctx: Any, grad_y: Tensor) -> tuple:
    x, logits = ctx.saved_tensors
    grad_x, grad_logits = torch.ops.hdml.nfa_gate_backward.default(grad_y, x, logits, ctx.lo, ctx.hi)
    return (
        grad_x if ctx.needs_input_grad[0] else None,
        grad_logits if ctx.needs_input_grad[1] else None,
        None,
        None,
    )


torch.library.register_autograd("hdml::nfa_gate", _backward, setup_context=_setup_context)


def onnx_translation() -> dict:
    """The ONNX translation of `hdml::nfa_gate`, for torch.onnx's dynamo exporter:
    `torch.onnx.export(..., dynamo=True, custom_translation_table=onnx_translation())`.

    The gate is written in standard ONNX ops (opset 18), the same arithmetic as the kernels:
    g = Sigmoid(logits) in float32 (float64 for float64 x), g' = Where(g < lo, lo, Where(g > hi,
    1, g)), y = x * g' with g' unsqueezed over x's spatial axes, rounded to x's dtype. The
    exported graph therefore holds Sigmoid, Less, Greater and two Where per gate; ONNX Runtime
    and every other ONNX consumer run it without a custom-op library. Needs `onnxscript`
    (the `export` extra); raises ImportError naming it otherwise.
    """
    try:
        from onnxscript import ir
        from onnxscript import opset18 as op
    except ImportError as error:
        raise ImportError("ONNX export needs the onnxscript package: "
                          "pip install 'hdml_ext[export]'") from error

    def nfa_gate_onnx(x: Any, logits: Any, lo: float, hi: float) -> Any:
        acc_type = ir.DataType.DOUBLE if x.dtype == ir.DataType.DOUBLE else ir.DataType.FLOAT
        g = op.Sigmoid(op.Cast(logits, to=acc_type))
        lo_value, hi_value, one = op.CastLike(lo, g), op.CastLike(hi, g), op.CastLike(1.0, g)
        gate = op.Where(op.Less(g, lo_value), lo_value, op.Where(op.Greater(g, hi_value), one, g))
        spatial_axes = list(range(2, len(x.shape)))
        if spatial_axes:
            gate = op.Unsqueeze(gate, op.Constant(value_ints=spatial_axes))
        if x.dtype == acc_type:
            return op.Mul(x, gate)
        return op.Cast(op.Mul(op.Cast(x, to=acc_type), gate), to=x.dtype)

    return {torch.ops.hdml.nfa_gate.default: nfa_gate_onnx}
