"""NFA: node feature embedding with attention (paper III-C1, eq. 5-8)."""

from __future__ import annotations

from torch import Tensor, nn

from .. import ops
from .._checks import require_int
from ..ops.nfa_gate import require_gate_bounds


class NFA(nn.Module):
    """Clamped channel attention on a stage's feature map: GAP -> BN1d -> FC(C -> C) -> gate.

    The gate is g = sigmoid(FC(BN(GAP(x)))) clamped by the paper's rule (g < lo -> lo,
    g > hi -> 1, eq. 7) and multiplies each channel of x (eq. 8), through the fused
    `hdml_ext.ops.nfa_gate`.

    Args:
        channels: C, the feature map's channel count.
        lo: the gate's floor (the paper's epsilon, 0.3).
        hi: gates above this become 1 (the paper's 0.9).

    Shapes:
        forward(x [N, C, H, W]) -> [N, C, H, W], x's dtype and memory format.
    """

    def __init__(self, channels: int, lo: float = 0.3, hi: float = 0.9) -> None:
        super().__init__()
        self.channels = require_int("channels", channels, minimum=1)
        self.lo, self.hi = require_gate_bounds(lo, hi)
        self.bn = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels, channels)

    def logits(self, x: Tensor) -> Tensor:
        """The gate's pre-sigmoid scores FC(BN(GAP(x))): [N, C]."""
        return self.fc(self.bn(x.mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x should be [N, {self.channels}, H, W], got shape {tuple(x.shape)}")
        logits = self.logits(x)
        if logits.dtype != x.dtype:  # autocast may leave the FC output in another precision
            logits = logits.to(x.dtype)
        return ops.nfa_gate(x, logits, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, lo={self.lo}, hi={self.hi}"

