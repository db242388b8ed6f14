"""k-reciprocal re-ranking of each query with the gallery alone: merging each query into the
gallery's kNN table found once, against encoding the G + 1 rows of every query from scratch.

    python benchmarks/bench_rerank.py [--gallery 15913] [--dim 2048] [--queries 40]
                                      [--reference-queries 3] [--out benchmarks/results/rerank]

Both compute the same distances (`hdml_ext.reid.rerank.k_reciprocal_distances` with
queries_together=False; the reference is the same function called with one query at a time
and queries_together=True, which encodes [query; gallery] from scratch, as the inductive
setting did before the merge). Data: Gaussian blobs (10 rows per centre) at Market-1501's
gallery size by default. The reference runs on the first --reference-queries queries only (it
searches all G + 1 rows per query); ours runs on --queries queries, its first query paying for
the gallery's kNN and row maxima. Writes table.md and rows.json to --out and checks that the
two agree on the queries both ran.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdml_ext.reid.rerank import k_reciprocal_distances


def blobs(num_gallery: int, num_query: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(query [num_query, dim], gallery [num_gallery, dim]) float32 around num_gallery // 10 centres."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(max(1, num_gallery // 10), dim, generator=gen)

    def around(num_rows: int) -> torch.Tensor:
        noise = 0.7 * torch.randn(num_rows, dim, generator=gen)
        return centres[torch.arange(num_rows) % centres.shape[0]] + noise

    gallery = around(num_gallery)
    return around(num_query), gallery


def measure(num_gallery: int, dim: int, num_query: int, reference_queries: int) -> dict:
    """Seconds of both ways and the largest difference of their distances."""
    query, gallery = blobs(num_gallery, num_query, dim)
    started = time.perf_counter()
    blocks = k_reciprocal_distances(query, gallery, queries_together=False)
    ours = [next(blocks)[1]]
    first = time.perf_counter() - started
    started = time.perf_counter()
    ours += [dist for _, dist in blocks]
    per_query = (time.perf_counter() - started) / max(1, num_query - 1)
    started = time.perf_counter()
    reference = [next(k_reciprocal_distances(query[i : i + 1], gallery))[1] for i in range(reference_queries)]
    reference_per_query = (time.perf_counter() - started) / reference_queries
    difference = max(float((a - b).abs().max()) for a, b in zip(ours, reference))
    return {"gallery": num_gallery, "dim": dim, "queries": num_query, "reference_queries": reference_queries,
            "first_query_s": first, "per_query_s": per_query, "reference_per_query_s": reference_per_query,
            "speedup_per_query": reference_per_query / per_query, "max_abs_difference": difference,
            "threads": torch.get_num_threads()}


def markdown(row: dict, command: str) -> str:
    market = 3368  # Market-1501's query count
    ours = row["first_query_s"] + (market - 1) * row["per_query_s"]
    return "\n".join([
        f"`{command}` ({row['threads']} threads). Gallery {row['gallery']} x {row['dim']} float32.", "",
        "| | seconds |", "|---|---:|",
        f"| ours: first query (the gallery's kNN and row maxima included) | {row['first_query_s']:.1f} |",
        f"| ours: each further query (mean of {row['queries'] - 1}) | {row['per_query_s']:.3f} |",
        f"| reference: each query, G + 1 rows encoded from scratch (mean of {row['reference_queries']}) "
        f"| {row['reference_per_query_s']:.1f} |",
        f"| ratio per query | {row['speedup_per_query']:.0f}x |", "",
        f"At Market-1501's {market} queries that is about {ours / 60:.0f} minutes for ours against "
        f"{market * row['reference_per_query_s'] / 3600:.1f} hours. Largest difference of the two "
        f"ways' distances on the queries both ran: {row['max_abs_difference']:.2e}.",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=15913, help="gallery rows (15913, Market-1501's)")
    parser.add_argument("--dim", type=int, default=2048, help="embedding width (2048)")
    parser.add_argument("--queries", type=int, default=40, help="queries re-ranked our way (40)")
    parser.add_argument("--reference-queries", type=int, default=3,
                        help="queries re-ranked the reference way, from the first (3)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rerank"), help="output folder")
    args = parser.parse_args(argv)
    if args.gallery < 2 or args.dim < 1 or args.queries < 2:
        parser.error(f"--gallery should be >= 2, --dim >= 1 and --queries >= 2, got {args.gallery}, "
                     f"{args.dim} and {args.queries}")
    if not 1 <= args.reference_queries <= args.queries:
        parser.error(f"--reference-queries should be in [1, --queries], got {args.reference_queries}")
    row = measure(args.gallery, args.dim, args.queries, args.reference_queries)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "benchmarks/bench_rerank.py", *given])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
    text = markdown(row, command)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    return 0 if np.isfinite(row["max_abs_difference"]) and row["max_abs_difference"] < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
