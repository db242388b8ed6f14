"""Seeded random streams of training: reproducible, independent of the global RNG, of the
process that draws them and of resuming."""

from __future__ import annotations

import torch


def stream_generator(seed: int, epoch: int, batch: int | None = None) -> torch.Generator:
    """A CPU generator that is a function of (seed, epoch) alone (an epoch's batch order), or of
    (seed, epoch, batch) with `batch` a global batch index (that batch's augmentation, e.g. the
    trainer's flips), so a batch draws alike whichever rank runs it."""
    value = seed * 1_000_003 + (epoch if batch is None else epoch * 1_000_033 + batch + 1)
    return torch.Generator().manual_seed(value % (2**63 - 1))
