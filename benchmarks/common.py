"""Timing, table and process helpers shared by the benchmark scripts.

Every benchmark times our op and the reference a user would otherwise write in the same run,
with the same threads, both allocating their outputs, and reports the ratio. Scale benchmarks
run each measurement in a fresh child process (`ChildProcess`), so that its peak RSS is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import queue
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
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
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
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


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss; Linux: kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ChildProcess:
    """`target(queue, *args)` started in a fresh (spawned) process; the parent reads the dicts
    it puts on `queue` one by one, each within a time limit."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        context = mp.get_context("spawn")
        self.queue = context.Queue()
        self.process = context.Process(target=target, args=(self.queue, *args))
        self.process.start()

    def get(self, timeout: float) -> dict:
        """The child's next message, or {"error": "timeout"} when none came within `timeout`
        seconds, or {"error": "exit code N"} when the child ended without sending one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.queue.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if not self.process.is_alive():
                    try:  # a message sent just before exiting
                        return self.queue.get(timeout=1.0)
                    except queue.Empty:
                        return {"error": f"exit code {self.process.exitcode}"}
                if time.monotonic() >= deadline:
                    return {"error": "timeout"}

    def peak_rss_bytes(self) -> int:
        """The running child's peak RSS so far in bytes (VmHWM of /proc/<pid>/status); 0 when
        unavailable."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
        return 0

    def close(self, grace: float = 5.0) -> None:
        """Wait up to `grace` seconds for the child to end, then kill it."""
        self.process.join(timeout=grace)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def sampled_recall(features: object, knn_idx: np.ndarray, k: int, num_queries: int, seed: int = 7) -> float:
    """Recall@k of the neighbour table `knn_idx` [N, >= k] on `num_queries` seeded sampled rows
    (at most N) against their exact neighbours among all N rows of `features` [N, D]
    (`hdml_ext.graph.exact_knn_rows`: blocked brute force, self excluded); in [0, 1]."""
    from hdml_ext.graph import exact_knn_rows

    num_rows = features.shape[0]
    ids = np.sort(np.random.default_rng(seed).choice(num_rows, min(num_queries, num_rows), replace=False))
    truth = exact_knn_rows(features, ids, k)[1]
    found = np.asarray(knn_idx)[ids, :k]
    return sum(np.intersect1d(f, t).size for f, t in zip(found, truth)) / truth.size


def save_loglog_figure(fig: object, axes: tuple, path: Path) -> None:
    """Grid lines and a legend on each of `axes`, then `fig` saved to `path` (120 dpi) and closed."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
