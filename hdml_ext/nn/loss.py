"""The link loss L2 (paper eq. 15) over the edge logits of F-Graphs' non-focus nodes."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional


def link_loss(link_logits: Tensor, same: Tensor, balanced: bool = False) -> Tensor:
    """L2 (eq. 15): cross entropy of [B, k, 2] logits against bool [B, k] "same identity" targets.

    balanced=False: the mean over all B * k edges (the paper). balanced=True: the mean over
    the positive edges and the mean over the negative ones, averaged, so both classes weigh
    the same in the batch (a class absent from the batch is left out of the average).
    """
    per_edge = functional.cross_entropy(link_logits.reshape(-1, 2).float(), same.reshape(-1).long(),
                                        reduction="none" if balanced else "mean")
    if not balanced:
        return per_edge
    positive = same.reshape(-1).to(per_edge.dtype)
    masks = torch.stack([1.0 - positive, positive])
    counts = masks.sum(dim=1)
    class_means = (masks * per_edge).sum(dim=1) / counts.clamp(min=1.0)
    return class_means.sum() / (counts > 0).sum()
