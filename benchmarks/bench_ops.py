"""How fast are the four kernels against what a user would otherwise write?

    python benchmarks/bench_ops.py [--device cpu|cuda] [--only knn,nfa_gate] [--out results/bench_ops]

Each module in benchmarks/ops/ contributes rows (ours vs a reference, timed in this run);
the table is printed and written as Markdown and JSON under --out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, machine, markdown_table

OPS = ("knn", "fgraph_adjacency", "nfa_gate", "gcn_aggregate")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default: cpu)"
    )
    parser.add_argument("--only", default=",".join(OPS), help="comma-separated ops to run (default: all)")
    parser.add_argument("--out", default="results/bench_ops", help="folder for table.md and rows.json")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is present")
    import hdml_ext  # noqa: F401

    rows: list[Row] = []
    for op in args.only.split(","):
        if op not in OPS:
            parser.error(f"--only: unknown op {op!r}; choose from {', '.join(OPS)}")
        module = importlib.import_module(f"ops.{op}")
        for row in module.rows(args.device):
            print(f"{row.op:18s} {row.case:40s} ours {row.ours_ms:9.2f} ms   {row.reference:28s} "
                  f"{row.reference_ms:9.2f} ms   {row.speedup:6.2f}x  {row.note}", flush=True)
            rows.append(row)
    table = markdown_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"table_{args.device}.md").write_text(f"Measured on {machine()}\n\n{table}\n")
    (out / f"rows_{args.device}.json").write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    print(f"\nMeasured on {machine()}\n\n{table}")


if __name__ == "__main__":
    main()
