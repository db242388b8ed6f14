"""The two task heads: node classification (paper eq. 11) and edge classification (eq. 14)."""

from __future__ import annotations

from torch import Tensor, nn

from .._checks import require_int


class NodeHead(nn.Module):
    """Node classification (the auxiliary task): one FC from the embedding to class logits.

    Shapes:
        forward(m [..., in_dim]) -> [..., num_classes].
    """

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.in_dim = require_int("in_dim", in_dim, minimum=1)
        self.num_classes = require_int("num_classes", num_classes, minimum=1)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, m: Tensor) -> Tensor:
        return self.fc(m)


class EdgeHead(nn.Module):
    """Edge classification (the main task): FC(in_dim -> d) -> PReLU -> FC(d -> 2) on an edge's
    input (the paper: a node's final RE-GCN feature, in_dim = d); logit 1 says "same identity as
    the focus". softmax(...)[..., 1] is S_f (eq. 14).

    Args:
        dim: d, the hidden width (the RE-GCN output width).
        in_dim: the input width (None: dim; 3 * dim for the [h_i, h_f, |h_i - h_f|] input).

    Shapes:
        forward(e [..., in_dim]) -> [..., 2].
    """

    def __init__(self, dim: int, in_dim: int | None = None) -> None:
        super().__init__()
        self.dim = require_int("dim", dim, minimum=1)
        self.in_dim = dim if in_dim is None else require_int("in_dim", in_dim, minimum=1)
        self.fc1 = nn.Linear(self.in_dim, dim)
        self.act = nn.PReLU(dim)
        self.fc2 = nn.Linear(dim, 2)

    def forward(self, e: Tensor) -> Tensor:
        h = self.fc1(e)
        # PReLU's per-channel slope indexes dim 1: put the channel there, then back.
        return self.fc2(self.act(h.reshape(-1, self.dim)).view(h.shape))
