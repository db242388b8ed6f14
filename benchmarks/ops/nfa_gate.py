"""nfa_gate forward + backward against the eager torch composition a user would write.

The reference is the NFA gate written with torch ops (sigmoid, two wheres, a broadcast
multiply) and differentiated by autograd. Both sides run forward + backward from the same
inputs (x and logits requiring grad), take their gradients with torch.autograd.grad (no
accumulation into .grad), and allocate all their outputs.

The note gives the share of this machine's copy bandwidth the op reaches: the op moves 5 x
nbytes(x) (forward: read x, write y; backward: read dy and x, write dx), a copy moves
2 x nbytes, both measured in this run. Two copies: dst.copy_(src) into an existing buffer,
and src.clone(), which like the op allocates its output. On the CPU a fresh 67 MB tensor costs
page faults on first touch (the op allocates y and dx on every call), so the op is bounded
by the clone figure there; CUDA's caching allocator makes the two the same.
"""

from __future__ import annotations

import torch
from common import Row, time_ms
from torch import Tensor

from hdml_ext.ops import nfa_gate

LO, HI = 0.3, 0.9
SHAPE = (32, 256, 64, 32)


def _eager(x: Tensor, logits: Tensor, dy: Tensor) -> tuple[Tensor, ...]:
    g = torch.sigmoid(logits)
    gp = torch.where(g < LO, LO, torch.where(g > HI, 1.0, g))
    y = x * gp[:, :, None, None]
    return torch.autograd.grad(y, (x, logits), dy)


def _ours(x: Tensor, logits: Tensor, dy: Tensor) -> tuple[Tensor, ...]:
    y = nfa_gate(x, logits, LO, HI)
    return torch.autograd.grad(y, (x, logits), dy)


def _copy_gbps(src: Tensor, device: str) -> tuple[float, float]:
    """Copy bandwidth in GB/s (bytes read + written per second): into an existing buffer, and
    into a freshly allocated one (clone)."""
    dst = torch.empty_like(src)
    nbytes = 2 * src.numel() * src.element_size()
    into_ms = time_ms(lambda: dst.copy_(src), device=device)
    clone_ms = time_ms(src.clone, device=device)
    return nbytes / into_ms / 1e6, nbytes / clone_ms / 1e6


def _case(device: str, memory_format: torch.memory_format, label: str,
          copy_gbps: tuple[float, float]) -> Row:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(SHAPE, device=device, generator=gen).to(memory_format=memory_format)
    x.requires_grad_(True)
    logits = (2 * torch.randn(SHAPE[:2], device=device, generator=gen)).requires_grad_(True)
    dy = torch.randn(SHAPE, device=device, generator=gen).to(memory_format=memory_format)
    ours_ms = time_ms(lambda: _ours(x, logits, dy), device=device)
    ref_ms = time_ms(lambda: _eager(x, logits, dy), device=device)
    nbytes = x.numel() * x.element_size()
    ours_gbps = 5 * nbytes / ours_ms / 1e6
    into, fresh = copy_gbps
    note = (f"{ours_gbps:.1f} GB/s = {100 * ours_gbps / into:.0f}% of copy into a buffer "
            f"({into:.1f} GB/s), {100 * ours_gbps / fresh:.0f}% of clone ({fresh:.1f} GB/s)")
    return Row(op="nfa_gate", case=f"fwd+bwd x{list(SHAPE)} f32 {label}", ours="hdml nfa_gate",
               ours_ms=ours_ms, reference="torch sigmoid/where/mul + autograd", reference_ms=ref_ms,
               note=note)


def rows(device: str) -> list[Row]:
    """Forward + backward, contiguous and channels_last x, on `device`."""
    src = torch.randn(SHAPE, device=device)
    copy_gbps = _copy_gbps(src, device)
    del src
    return [
        _case(device, torch.contiguous_format, "contiguous", copy_gbps),
        _case(device, torch.channels_last, "channels_last", copy_gbps),
    ]
