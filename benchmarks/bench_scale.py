"""Does F-Graph building and clustering scale to a million faces on a 2-core machine?

    python benchmarks/bench_scale.py            # full run (headline 1M + sweeps), ~20-30 min here
    python benchmarks/bench_scale.py --quick    # smoke run, about a minute

(a) Headline: N x 64 float32 synthetic clustered features (Gaussian blobs of ~50 rows, like
    face identities) written to a memmap in a temporary folder; build_fgraphs(backend="auto")
    with k = 20: wall time (goal < 4 min at N = 1M), peak RSS (goal < 6 GiB), recall@k against
    exact neighbours of 1000 sampled rows (blocked brute force; goal >= 0.9).
(b) Each backend's time and peak RSS against N (log-log plot and fitted growth exponent, the
    slope of log time against log N). The O(N^2) backends (exact, faiss-flat) and HNSW stop at
    the sizes given by --max-quadratic-n and --max-hnsw-n; the table says where they were skipped.
(c) The same for pseudo-label propagation (hdml_ext.cluster.propagation.propagate_knn) over
    synthetic scored kNN edges.

Every measurement runs in a fresh child process, so peak RSS (ru_maxrss) is that build's own
peak, not mixed with earlier ones; "baseline" is a child that only imports torch, faiss and
hdml_ext. Writes scale.md and scale.png to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ChildProcess, peak_rss_bytes, sampled_recall, save_loglog_figure

BACKENDS = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")
PER_CLUSTER = 50


def write_blobs(path: Path, num_rows: int, dim: int, seed: int = 0, block: int = 1 << 16,
                spread: float = 0.3) -> Path:
    """Gaussian blobs [num_rows, dim] float32 (~PER_CLUSTER rows per blob), written to a .npy
    memmap block by block: centres ~ N(0, 1), each row its centre plus N(0, spread^2) noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, num_rows // PER_CLUSTER), dim), dtype=np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(num_rows, dim))
    for start in range(0, num_rows, block):
        stop = min(start + block, num_rows)
        labels = rng.integers(0, centers.shape[0], stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        out[start:stop] = centers[labels] + spread * noise
    out.flush()
    del out
    return path


def _child_baseline(queue: mp.Queue) -> None:
    import faiss  # noqa: F401
    import torch  # noqa: F401

    import hdml_ext  # noqa: F401

    queue.put({"rss": peak_rss_bytes()})


def _child_build(
    queue: mp.Queue, path: str, k: int, backend: str, recall_queries: int, progress: bool
) -> None:
    import torch

    from hdml_ext.graph import build_fgraphs

    torch.set_num_threads(torch.get_num_threads())
    features = np.load(path, mmap_mode="r")
    start = time.perf_counter()
    graphs = build_fgraphs(features, k, backend=backend, progress=progress)
    seconds = time.perf_counter() - start
    rss = peak_rss_bytes()
    result = {"seconds": seconds, "rss": rss, "backend": graphs.backend, "reason": graphs.reason,
              "params": graphs.params}
    if recall_queries:
        result["recall"] = sampled_recall(features, graphs.knn_idx.numpy(), k, recall_queries)
    queue.put(result)


def _child_propagation(queue: mp.Queue, num_nodes: int, k: int) -> None:
    from hdml_ext.cluster.propagation import propagate_knn

    rng = np.random.default_rng(3)
    cluster = rng.permutation(num_nodes) // PER_CLUSTER  # blobs of PER_CLUSTER nodes
    members = np.argsort(cluster, kind="stable")
    first = np.searchsorted(cluster[members], cluster)
    same = rng.random((num_nodes, k)) < 0.8  # 80% of the neighbours share the node's blob
    offset = rng.integers(0, PER_CLUSTER, (num_nodes, k))
    within = members[np.minimum(first[:, None] + offset, num_nodes - 1)]
    nbr = np.where(same, within, rng.integers(0, num_nodes, (num_nodes, k)))
    true_link = cluster[nbr] == cluster[:, None]
    score = np.clip(np.where(true_link, 0.75, 0.3) + 0.2 * rng.standard_normal((num_nodes, k)), 0, 1)
    score = score.astype(np.float32)
    del members, first, same, offset, within, true_link
    start = time.perf_counter()
    _, info = propagate_knn(nbr, score, threshold=0.5, max_size=300)
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "rss": peak_rss_bytes(), "clusters": int(info["num_clusters"]),
               "iterations": int(info["iterations"])})


def run_child(target, *args, timeout: float) -> dict:
    """Run target(queue, *args) in a fresh (spawned) process; its result dict or an error."""
    child = ChildProcess(target, *args)
    result = child.get(timeout)
    child.close()
    return result


def slope(sizes: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size); nan with fewer than 2 points."""
    pairs = [(n, v) for n, v in zip(sizes, values) if v and v > 0]
    if len(pairs) < 2:
        return math.nan
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="rows of the headline run (default 1e6)")
    parser.add_argument("--dim", type=int, default=64, help="feature width D (default 64)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per node (default 20)")
    parser.add_argument("--sizes", default="1e4,3e4,1e5,3e5,1e6", help="N of the sweeps, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="backends of the sweep")
    parser.add_argument("--max-quadratic-n", type=float, default=1e5,
                        help="largest N for exact and faiss-flat, O(N^2) (default 1e5)")
    parser.add_argument("--max-hnsw-n", type=float, default=3e5,
                        help="largest N for faiss-hnsw (default 3e5)")
    parser.add_argument("--recall-queries", type=int, default=1000,
                        help="sampled rows for recall (default 1000)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement (default 900)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1e5 headline, sizes 1e4,3e4")
    parser.add_argument("--verbose", action="store_true", help="show the builds' own progress bars")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="folder for scale.md and scale.png (default benchmarks/results)")
    parser.add_argument("--workdir", default=None, help="folder for the memmaps (default: a temporary one)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.sizes = min(args.n, 100_000), "1e4,3e4"
    sizes = sorted({int(float(s)) for s in args.sizes.split(",")})
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"--backends: unknown backend {b!r}; choose from {', '.join(BACKENDS)}")

    import torch
    from common import machine
    from tqdm.auto import tqdm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory(dir=args.workdir, prefix="hdml_scale_")
    work = Path(tmp.name)
    limits = {"exact": args.max_quadratic_n, "faiss-flat": args.max_quadratic_n,
              "faiss-hnsw": args.max_hnsw_n}
    plan = [("baseline", 0, ""), ("headline", args.n, "auto")]
    plan += [("build", n, b) for b in backends for n in sizes if n <= limits.get(b, math.inf)]
    plan += [("propagation", n, "") for n in sizes]
    started = time.perf_counter()
    results: dict = {}
    bar = tqdm(plan, desc="measurements", unit="run")
    for kind, n, backend in bar:
        bar.set_postfix_str(f"{kind} {backend} N={n:,}")
        headline = results.get(("headline", args.n, "auto"), {})
        if kind == "build" and n == args.n and headline.get("backend") == backend:
            results[(kind, n, backend)] = headline  # the same build: reuse it
            tqdm.write(f"{kind:11s} {backend:10s} N={n:>9,}  (the headline run)")
            continue
        if kind == "baseline":
            res = run_child(_child_baseline, timeout=args.timeout)
        elif kind == "propagation":
            res = run_child(_child_propagation, n, args.k, timeout=args.timeout)
        else:
            path = work / f"blobs_{n}_{args.dim}.npy"
            if not path.exists():
                write_blobs(path, n, args.dim)
            res = run_child(_child_build, str(path), args.k, backend, args.recall_queries, args.verbose,
                            timeout=args.timeout)
        results[(kind, n, backend)] = res
        shown = {key: val for key, val in res.items() if key not in ("reason",)}
        tqdm.write(f"{kind:11s} {backend:10s} N={n:>9,}  {shown}")
    bar.close()
    elapsed = time.perf_counter() - started
    tmp.cleanup()

    baseline = results[("baseline", 0, "")].get("rss", 0)
    head = results[("headline", args.n, "auto")]

    lines = [
        "# Scale benchmark (benchmarks/bench_scale.py)",
        "",
        f"Measured on {machine()}. Command: `python benchmarks/bench_scale.py"
        + (" --quick" if args.quick else "") + "`. "
        f"Total run time {elapsed / 60:.1f} min.",
        "",
        f"## (a) Headline: build_fgraphs(auto), N = {args.n:,}, D = {args.dim}, k = {args.k}, memmap input",
        "",
    ]
    if "error" in head:
        lines.append(f"Failed: {head['error']}")
    else:
        ok = lambda cond: "met" if cond else "NOT met"  # noqa: E731
        lines += [
            "| metric | value | goal |",
            "|---|---:|---|",
            f"| backend chosen | {head['backend']} | |",
            f"| wall time | {head['seconds']:.1f} s | < 240 s ({ok(head['seconds'] < 240)}) |",
            f"| peak RSS | {_gib(head['rss'])} GiB (baseline {_gib(baseline)} GiB) | "
            f"< 6 GiB ({ok(head['rss'] < 6 * 2**30)}) |",
            f"| recall@{args.k} ({args.recall_queries} sampled rows vs exact) | "
            f"{head.get('recall', math.nan):.4f} | "
            f">= 0.9 ({ok(head.get('recall', 0) >= 0.9)}) |",
            "",
            f"Reason: {head['reason']}. Index settings: `{head['params']}`.",
            "",
        ]
    lines += [
        f"## (b) build_fgraphs per backend against N (D = {args.dim}, k = {args.k})",
        "",
        "| backend | " + " | ".join(f"N = {n:,}" for n in sizes) + " | time exponent | memory exponent |",
        "|---|" + "---:|" * len(sizes) + "---:|---:|",
    ]
    series = {}
    for b in backends:
        cells, times, mems, ns = [], [], [], []
        for n in sizes:
            res = results.get(("build", n, b))
            if res is None:
                too_big = n > limits.get(b, math.inf)
                cells.append(f"skipped (N > {limits[b]:,.0f}: too slow here)" if too_big else "—")
            elif "error" in res:
                cells.append(res["error"])
            else:
                rec = f", recall {res['recall']:.3f}" if "recall" in res else ""
                cells.append(f"{res['seconds']:.1f} s, {_gib(res['rss'])} GiB{rec}")
                ns.append(n)
                times.append(res["seconds"])
                mems.append(res["rss"] - baseline)
        series[b] = (ns, times, mems)
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {slope(ns, times):.2f} | {slope(ns, mems):.2f} |")
    lines += [
        "",
        "Cells: wall time, peak RSS of the child process, recall@k on sampled rows. Exponents: slope of",
        "log(time) and log(peak RSS above the import baseline) against log N over the measured sizes.",
        "",
        "## (c) Pseudo-label propagation (propagate_knn, threshold 0.5, max_size 300) against N",
        "",
        "| N | edges | time | peak RSS | clusters | passes |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    ns, times, mems = [], [], []
    for n in sizes:
        res = results[("propagation", n, "")]
        if "error" in res:
            lines.append(f"| {n:,} | {n * args.k:,} | {res['error']} | | | |")
            continue
        lines.append(f"| {n:,} | {n * args.k:,} | {res['seconds']:.2f} s | {_gib(res['rss'])} GiB | "
                     f"{res['clusters']:,} | {res['iterations']} |")
        ns.append(n)
        times.append(res["seconds"])
        mems.append(res["rss"] - baseline)
    series["propagation"] = (ns, times, mems)
    lines += ["", f"Time exponent {slope(ns, times):.2f}, memory exponent {slope(ns, mems):.2f} "
              "(peak RSS above baseline; the child also holds the synthetic edges, O(N k)).", ""]
    table = "\n".join(lines)
    suffix = "_quick" if args.quick else ""
    (out / f"scale{suffix}.md").write_text(table)
    _plot(series, out / f"scale{suffix}.png", args, torch.get_num_threads())
    print("\n" + table)
    print(f"wrote {out / f'scale{suffix}.md'} and {out / f'scale{suffix}.png'}")


def _plot(series: dict, path: Path, args: argparse.Namespace, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, (ns, times, mems) in series.items():
        if not ns:
            continue
        label = f"{name} (slope {slope(ns, times):.2f})"
        ax_t.loglog(ns, times, marker="o", label=label)
        ax_m.loglog(ns, [max(m, 1) / 2**20 for m in mems], marker="o",
                    label=f"{name} (slope {slope(ns, mems):.2f})")
    ax_t.set(xlabel="N", ylabel="wall time (s)", title=f"time, D={args.dim}, k={args.k}, {threads} threads")
    ax_m.set(xlabel="N", ylabel="peak RSS above baseline (MiB)", title="peak memory")
    save_loglog_figure(fig, (ax_t, ax_m), path)


if __name__ == "__main__":
    main()
