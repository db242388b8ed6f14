"""Timing and table helpers shared by the benchmark scripts.

Every benchmark times our op and the reference a user would otherwise write in the same run,
with the same threads, both allocating their outputs, and reports the ratio.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.utils.benchmark as benchmark


@dataclass
class Row:
    """One benchmark comparison: `ours` against `reference` on `case`."""

    op: str
    case: str
    ours: str
    ours_ms: float
    reference: str
    reference_ms: float
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.reference_ms / self.ours_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


def time_ms(fn: Callable[[], object], *, min_run_time: float = 1.0, device: str = "cpu") -> float:
    """Median milliseconds of `fn()` over repeated blocks (torch.utils.benchmark; syncs CUDA)."""
    fn()  # warm-up: first-call allocations, lazy initialisation, autotuning
    if device == "cuda":
        torch.cuda.synchronize()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def machine() -> str:
    """A one-line description of where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    text = f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (the README's performance table)."""
    lines = [
        "| op | case | ours (ms) | reference | reference (ms) | speedup | note |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.op} | {r.case} | {r.ours_ms:.2f} | {r.reference} | {r.reference_ms:.2f} | "
                     f"{r.speedup:.2f}x | {r.note} |")
    return "\n".join(lines)
