"""How fast are the four kernels against what a user would otherwise write?

    python benchmarks/bench_ops.py [--device cpu|cuda] [--only knn,nfa_gate] [--processes 5]
                                   [--malloc steady|default] [--out results/bench_ops]

Each module in benchmarks/ops/ contributes rows (ours vs a reference, timed in the same
process). Every row is measured in --processes fresh processes, one after the other, and the
table reports the median over them and the range (min-max) of the speedup, so one process's
luck does not make the figure.

--malloc steady (the default) starts the processes with glibc's malloc thresholds fixed
(MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=256 MiB). Left to itself (--malloc
default), glibc moves its mmap and trim thresholds as a process frees large blocks; in some
processes the freed output buffers of a step are then handed back to the kernel, and the next
step's outputs fault in every page again: gcn_aggregate's fwd+bwd (two 13 MB outputs) took
3,248 page faults and twice the time per call in such processes, ours and the reference alike
when they allocate alike (docs/build.md, "Allocator: steady timings"). Writes table_<device>.md
and rows_<device>.json to --out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row

OPS = ("knn", "fgraph_adjacency", "nfa_gate", "gcn_aggregate")

#: glibc malloc settings of --malloc steady: large blocks come from the heap and stay there.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def measure(device: str, ops: list[str], out: Path) -> None:
    """One process's rows of `ops` on `device`, written to `out` as JSON (with the machine line)."""
    from common import machine

    import hdml_ext  # noqa: F401

    rows: list[Row] = []
    for op in ops:
        rows.extend(importlib.import_module(f"ops.{op}").rows(device))
    out.write_text(json.dumps({"machine": machine(), "rows": [row.as_dict() for row in rows]}))


def summarise(runs: list[list[dict]]) -> list[dict]:
    """Rows of several processes (the same rows in the same order) -> one row per case: median
    ms of ours and the reference, and the speedup's min, median and max over the processes."""
    summary = []
    for same_case in zip(*runs):
        first = same_case[0]
        speedups = [row["speedup"] for row in same_case]
        summary.append({
            **{key: first[key] for key in ("op", "case", "ours", "reference", "note")},
            "ours_ms": statistics.median(row["ours_ms"] for row in same_case),
            "reference_ms": statistics.median(row["reference_ms"] for row in same_case),
            "speedup_min": min(speedups), "speedup_median": statistics.median(speedups),
            "speedup_max": max(speedups), "processes": len(same_case),
        })  # fmt: skip
    return summary


def markdown(summary: list[dict]) -> str:
    """The summary as a Markdown table (the README's performance table)."""
    lines = ["| op | case | ours (ms) | reference | reference (ms) | speedup, median (min-max) | note |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in summary:
        ours, ref = r["ours_ms"], r["reference_ms"]
        speedup = f"{r['speedup_median']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
        lines.append(f"| {r['op']} | {r['case']} | {ours:.3g} | {r['reference']} | {ref:.3g} | "
                     f"{speedup} | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where to run (default: cpu)")
    parser.add_argument("--only", default=",".join(OPS), help="comma-separated ops to run (default: all)")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes per row (default: 5)")
    parser.add_argument("--malloc", default="steady", choices=("steady", "default"),
                        help="glibc malloc thresholds of the processes: fixed (steady) or glibc's own")
    parser.add_argument("--out", default="results/bench_ops", help="folder for table.md and rows.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ops = args.only.split(",")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        parser.error(f"--only: unknown op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    if args.processes < 1:
        parser.error(f"--processes should be >= 1, got {args.processes}")
    if args.child is not None:
        measure(args.device, ops, args.child)
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is present")
    env = {**os.environ, **(STEADY_MALLOC if args.malloc == "steady" else {})}
    if args.malloc == "default":
        env = {key: value for key, value in env.items() if key not in STEADY_MALLOC}
    runs, machine_line = [], ""
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.processes):
            result = Path(scratch) / f"rows_{index}.json"
            command = [sys.executable, __file__, "--child", str(result), "--device", args.device,
                       "--only", ",".join(ops)]
            subprocess.run(command, env=env, check=True)
            measured = json.loads(result.read_text())
            machine_line = measured["machine"]
            runs.append(measured["rows"])
            for row in measured["rows"]:
                print(f"process {index + 1}/{args.processes}  {row['op']:16s} {row['case']:44s} "
                      f"ours {row['ours_ms']:9.3f} ms  reference {row['reference_ms']:9.3f} ms  "
                      f"{row['speedup']:6.2f}x", flush=True)
    summary = summarise(runs)
    header = (f"Measured on {machine_line}; median over {args.processes} fresh processes, "
              f"malloc {args.malloc}.")
    table = markdown(summary)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"table_{args.device}.md").write_text(f"{header}\n\n{table}\n")
    (out / f"rows_{args.device}.json").write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    print(f"\n{header}\n\n{table}")


if __name__ == "__main__":
    main()
