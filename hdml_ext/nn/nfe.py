"""NFE: node feature enhancer (paper III-C2, eq. 9)."""

from __future__ import annotations

from torch import Tensor, nn

from .._checks import require_int


class NFE(nn.Module):
    """m = FC(GAP(x) + GMP(x)): a stage's feature map pooled two ways, summed, projected.

    Args:
        channels: C, the feature map's channel count.
        out_dim: the FC's width (the paper's 512).

    Shapes:
        forward(x [N, C, H, W]) -> [N, out_dim].
    """

    def __init__(self, channels: int, out_dim: int = 512) -> None:
        super().__init__()
        self.channels = require_int("channels", channels, minimum=1)
        self.out_dim = require_int("out_dim", out_dim, minimum=1)
        self.fc = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x should be [N, {self.channels}, H, W], got shape {tuple(x.shape)}")
        return self.fc(x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_dim={self.out_dim}"
