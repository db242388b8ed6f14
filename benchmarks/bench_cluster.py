"""How long does `hdml cluster` take, stage by stage, from 10^4 to 10^6 rows, against faiss?

    python benchmarks/bench_cluster.py                     # N = 1e4, 1e5, 1e6 (the 1M runs take minutes)
    python benchmarks/bench_cluster.py --sizes 1e4,3e4     # other sizes
    python benchmarks/bench_cluster.py --quick             # smoke run at N = 2,000, under a minute
    python benchmarks/bench_cluster.py --device cuda       # features and model on the GPU

The setting of issue 11: N x 64 float32 clustered features (N / 50 Gaussian identities, centres
N(0, 1), noise 0.5; bench_scale.write_blobs), k = 20, an HDMLOnFeatures(64, k=20,
gcn_dims=(256, 128)) model (seeded random weights: the work does not depend on their values,
but the propagation's passes do, see the table's clusters column). For each N, `hdml cluster`'s
stages are timed separately, calling the engine's own functions as `hdml cluster` does:

kNN graph    hdml_ext.graph.build_fgraphs(backend=--backend, default "auto" as `hdml cluster`:
             exact, or our "ivf" join (ops.knn_ivf) where it is estimated cheaper)
scoring      hdml_ext.engine.link_edges (every node's F-Graph scored by the link head)
propagation  hdml_ext.engine.propagate_edges with ClusterConfig's settings

and the graph's recall@k is measured on --recall-queries seeded sampled rows against their
exact neighbours (blocked brute force, common.sampled_recall). In the same run, the kNN stage of
the alternatives a user would pick: build_fgraphs(backend="faiss-ivf") (IVF-Flat, nprobe
doubled from 1 until recall@k on build_fgraphs' own 256-row sample reaches the target) and
build_fgraphs(backend="faiss-hnsw") (efSearch raised the same way), with the target = the recall
our graph reached (or --target-recall); their recall is then measured on the same sampled rows
as ours.

Every run is a fresh child process, so its peak RSS (ru_maxrss) is its own; a stage that does not
finish within --stage-limit seconds is stopped and reported as "not finished in X s" (with the
peak RSS up to then), and the run's later stages as not run. Progress lines are printed as the
stages finish. Writes cluster.md (tables and the command that made them) and cluster.png (time
per stage and peak RSS against N, log-log) to --out; --quick writes cluster_quick.md and .png.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scale import write_blobs
from common import ChildProcess, machine, peak_rss_bytes, sampled_recall, save_loglog_figure

GCN_DIMS = (256, 128)
NOISE = 0.5
PIPELINE_STAGES = ("knn", "scoring", "propagation")
#: What a pipeline run and an alternative's run report, in order (after "setup").
PIPELINE_EVENTS = ("setup", "knn", "recall", "scoring", "propagation")
KNN_EVENTS = ("setup", "knn", "recall")
ALTERNATIVES = ("faiss-ivf", "faiss-hnsw")
#: Seconds allowed for a child's imports, loading the features and building the model.
SETUP_LIMIT_S = 600.0
STAGE_NAMES = {"knn": "kNN graph", "recall": "recall", "scoring": "F-Graph scoring",
               "propagation": "propagation", "setup": "setup"}


def run_stages(features: np.ndarray, k: int, backend: str, report: Callable[[dict], None], *,
               whole_pipeline: bool, target_recall: float, recall_queries: int, progress: bool = False,
               device: str = "cpu") -> None:
    """Time `hdml cluster`'s stages on `features` [N, D] float32, calling `report` with one dict
    per event of PIPELINE_EVENTS (whole_pipeline) or KNN_EVENTS: {"event", "seconds", "rss"
    (peak bytes so far), ...}; "knn" adds backend, reason, params; "recall" adds recall (in
    [0, 1]); "propagation" adds clusters, passes and kept_edges (score >= threshold). device:
    where the features and the model live for the kNN graph and the scoring (the stages end with
    their results on the CPU, so the GPU's work is inside each stage's time)."""
    import torch

    from hdml_ext.cluster import ClusterConfig, link_edges, propagate_edges
    from hdml_ext.graph import build_fgraphs
    from hdml_ext.nn import HDMLOnFeatures

    def done(event: str, start: float, **extra: object) -> None:
        report({"event": event, "seconds": time.perf_counter() - start, "rss": peak_rss_bytes(), **extra})

    start = time.perf_counter()
    embeddings = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    on_device = embeddings.to(device)
    num_nodes = embeddings.shape[0]
    config = ClusterConfig(k=k)
    torch.manual_seed(0)
    model = HDMLOnFeatures(embeddings.shape[1], k=k, gcn_dims=GCN_DIMS).eval().to(device)
    done("setup", start)
    start = time.perf_counter()
    graphs = build_fgraphs(on_device, k, backend=backend, target_recall=target_recall, progress=progress)
    done("knn", start, backend=graphs.backend, reason=graphs.reason, params=graphs.params)
    start = time.perf_counter()
    recall = sampled_recall(embeddings, graphs.knn_idx.numpy(), k, recall_queries)
    done("recall", start, recall=recall)
    if not whole_pipeline:
        return
    start = time.perf_counter()
    src, dst, score = link_edges(model, on_device, k, batch_size=config.batch_size, knn_idx=graphs,
                                 progress=progress)
    done("scoring", start)
    start = time.perf_counter()
    _, info = propagate_edges(num_nodes, src, dst, score, **config.propagation_settings())
    done("propagation", start, clusters=int(info["num_clusters"]), passes=int(info["iterations"]),
         kept_edges=int((score >= config.threshold).sum()))


def _child(queue: object, path: str, k: int, backend: str, whole_pipeline: bool, target_recall: float,
           recall_queries: int, progress: bool, device: str) -> None:
    """A fresh process's run: `run_stages` on the .npy at `path`, its events put on `queue`."""
    try:
        run_stages(np.load(path), k, backend, queue.put, whole_pipeline=whole_pipeline,
                   target_recall=target_recall, recall_queries=recall_queries, progress=progress,
                   device=device)
    except Exception as error:  # reported as the run's failure, in the table
        queue.put({"error": f"{type(error).__name__}: {error}"})


def measure(target: Callable[..., None], args: tuple, events: tuple[str, ...], stage_limit: float,
            label: str, setup_limit: float = SETUP_LIMIT_S) -> dict:
    """Run `target(queue, *args)` in a fresh process and collect its `events`, each awaited for
    at most `stage_limit` seconds (`setup_limit` for "setup"). Returns {event: its dict, ...};
    when one does not come, "failed" (that event) and "failure" ("not finished in X s", or the
    child's error), and "rss" (the child's peak RSS when it was stopped), later events absent."""
    child = ChildProcess(target, *args)
    run: dict = {}
    for event in events:
        limit = setup_limit if event == "setup" else stage_limit
        message = child.get(limit)
        if "error" in message:
            failure = f"not finished in {limit:g} s" if message["error"] == "timeout" else message["error"]
            run.update(failed=event, failure=failure, rss=child.peak_rss_bytes())
            child.close(grace=0.0)
            print(f"{label}: {STAGE_NAMES[event]} {run['failure']} (peak RSS {_gib(run['rss'])} GiB)",
                  flush=True)
            return run
        run[event] = message
        print(f"{label}: {_event_line(message)}", flush=True)
    child.close()
    return run


def _event_line(message: dict) -> str:
    line = f"{STAGE_NAMES[message['event']]} {message['seconds']:.2f} s, peak RSS {_gib(message['rss'])} GiB"
    if message["event"] == "knn":
        line += f", {message['backend']} {message['params']}"
    if message["event"] == "recall":
        line += f", recall {message['recall']:.4f}"
    if message["event"] == "propagation":
        line += f", {message['clusters']:,} clusters in {message['passes']} passes"
    return line


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f}"


def _cell(run: dict, event: str, text: Callable[[dict], str]) -> str:
    """`text(run[event])`, or why the event is missing (its failure, or not run after one)."""
    if event in run:
        return text(run[event])
    if run.get("failed") == event:
        return f"{run['failure']} (peak RSS {_gib(run['rss'])} GiB)"
    return "not run"


def total_seconds(run: dict) -> float | None:
    """The pipeline's wall seconds, the sum of its stages; None unless every stage finished."""
    if any(stage not in run for stage in PIPELINE_STAGES):
        return None
    return sum(run[stage]["seconds"] for stage in PIPELINE_STAGES)


def _settings(knn: dict) -> str:
    params = knn["params"]
    if knn["backend"] in ("ivf", "faiss-ivf"):
        return f"nlist {params['nlist']}, nprobe {params['nprobe']} (sample recall {params['sample_recall']})"
    if knn["backend"] == "faiss-hnsw":
        return (f"M {params['M']}, efConstruction {params['efConstruction']}, efSearch {params['efSearch']} "
                f"(sample recall {params['sample_recall']})")
    return ", ".join(f"{key} {value}" for key, value in params.items()) or "—"


def markdown(results: dict, args: argparse.Namespace, command: str, where: str, minutes: float) -> str:
    """cluster.md: `results` {N: {"ours": run, "targets": recall, alternative: run}} as tables."""
    sizes = sorted(results)
    lines = [
        "# Whole-pipeline benchmark (benchmarks/bench_cluster.py)",
        "",
        f"Measured on {where}. Command: `{command}`. Total run time {minutes:.1f} min.",
        "",
        f"N x {args.dim} float32 clustered features (N / 50 Gaussian identities, centres N(0, 1), noise "
        f"{NOISE}), k = {args.k}, HDMLOnFeatures({args.dim}, k={args.k}, gcn_dims={GCN_DIMS}) with seeded "
        f"random weights; each run a fresh process, each stage stopped after {args.stage_limit:g} s.",
        "",
        f"## `hdml cluster` stages (kNN backend {args.backend!r}, features and model on {args.device})",
        "",
        "| N | kNN graph | F-Graph scoring | propagation | total | peak RSS after kNN | peak RSS | "
        f"recall@{args.k} | clusters (passes) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        run = results[n]["ours"]
        total = total_seconds(run)
        scoring = _cell(run, "scoring",
                        lambda e, n=n: f"{e['seconds']:.2f} s ({n / e['seconds']:,.0f} graphs/s)")
        lines.append(" | ".join([
            f"| {n:,}",
            _cell(run, "knn", lambda e: f"{e['seconds']:.2f} s ({e['backend']})"),
            scoring,
            _cell(run, "propagation", lambda e: f"{e['seconds']:.2f} s"),
            "—" if total is None else f"{total:.2f} s",
            _cell(run, "knn", lambda e: f"{_gib(e['rss'])} GiB"),
            _cell(run, "propagation", lambda e: f"{_gib(e['rss'])} GiB"),
            _cell(run, "recall", lambda e: f"{e['recall']:.4f}"),
            _cell(run, "propagation", lambda e: f"{e['clusters']:,} ({e['passes']})"),
        ]) + " |")
    lines += [
        "",
        "Total: the three stages' sum (imports, loading the features and measuring recall excluded). "
        "Peak RSS: the child's ru_maxrss after the stage (imports and the features included).",
        f"recall@{args.k}: on {args.recall_queries} seeded sampled rows (at most N) against their exact "
        "neighbours, measured after the kNN stage, outside every stage's time.",
        "",
        f"## The kNN graph against faiss, recall@{args.k} tuned to ours",
        "",
        f"| N | method | settings | time | peak RSS | recall@{args.k} | time / ours |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for n in sizes:
        ours = results[n]["ours"].get("knn")
        for method in ("ours", *args.alternatives):
            run = results[n][method]
            name = f"ours ({ours['backend']})" if method == "ours" and ours else method
            ratio = "—"
            if ours and "knn" in run:
                ratio = f"{run['knn']['seconds'] / ours['seconds']:.2f}x"
            lines.append(" | ".join([
                f"| {n:,}", name, _cell(run, "knn", _settings),
                _cell(run, "knn", lambda e: f"{e['seconds']:.2f} s"),
                _cell(run, "knn", lambda e: f"{_gib(e['rss'])} GiB"),
                _cell(run, "recall", lambda e: f"{e['recall']:.4f}"), ratio,
            ]) + " |")
    lines += [
        "",
        "Tuning: faiss-ivf is `build_fgraphs(backend=\"faiss-ivf\", target_recall=r)`: IVF-Flat with "
        "nlist = min(4 sqrt(N), N / 20) lists trained by 10 k-means rounds, nprobe = 1, 2, 4, ... until "
        "recall@k on its own 256 seeded sampled rows reaches r; faiss-hnsw likewise raises efSearch "
        "from 2 (k + 1) up to 16 (k + 1). "
        + ("r was set by --target-recall." if args.target_recall is not None else
           "r = the recall our graph reached at that N (the default target where it did not finish).")
        + " Their recall in the table is then measured on the same sampled rows as ours.",
        "",
        "Targets and why `auto` chose what it did:",
        "",
    ]
    for n in sizes:
        why = results[n]["ours"].get("knn", {}).get("reason", results[n]["ours"].get("failure", ""))
        lines.append(f"- N = {n:,}: target recall {results[n]['target']:.4f}; {why}")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path, args: argparse.Namespace) -> None:
    """cluster.png: seconds per stage (and the faiss kNN stages) and peak RSS against N, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    times = {f"ours: {STAGE_NAMES[stage]}": ("ours", stage) for stage in PIPELINE_STAGES}
    times.update({f"{method}: kNN graph": (method, "knn") for method in args.alternatives})
    for label, (method, stage) in times.items():
        points = [(n, results[n][method][stage]["seconds"]) for n in sizes if stage in results[n][method]]
        if points:
            ax_t.loglog(*zip(*points), marker="o", label=label)
    totals = [(n, total_seconds(results[n]["ours"])) for n in sizes]
    if any(t is not None for _, t in totals):
        ax_t.loglog(*zip(*[(n, t) for n, t in totals if t is not None]), marker="s", color="black",
                    label="ours: total")
    mems = {"ours: whole pipeline": ("ours", "propagation"), "ours: kNN graph": ("ours", "knn")}
    mems.update({f"{method}: kNN graph": (method, "knn") for method in args.alternatives})
    for label, (method, stage) in mems.items():
        points = [(n, results[n][method][stage]["rss"] / 2**20) for n in sizes if stage in results[n][method]]
        if points:
            ax_m.loglog(*zip(*points), marker="o", label=label)
    ax_t.set(xlabel="N", ylabel="wall time (s)", title=f"hdml cluster stages, D={args.dim}, k={args.k}")
    ax_m.set(xlabel="N", ylabel="peak RSS of the run (MiB)", title="peak memory")
    save_loglog_figure(fig, (ax_t, ax_m), path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e4,1e5,1e6", help="N, comma-separated (default 1e4,1e5,1e6)")
    parser.add_argument("--dim", type=int, default=64, help="feature width D (default 64)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per F-Graph (default 20)")
    parser.add_argument("--backend", default="auto",
                        help="build_fgraphs backend of our kNN stage (default auto, as `hdml cluster`)")
    parser.add_argument("--alternatives", default=",".join(ALTERNATIVES),
                        help="faiss backends timed against ours, comma-separated; empty for none "
                             "(default faiss-ivf,faiss-hnsw)")
    parser.add_argument("--target-recall", type=float, default=None,
                        help="recall@k the alternatives are tuned to (default: the recall our graph reached)")
    parser.add_argument("--recall-queries", type=int, default=1000,
                        help="sampled rows recall@k is measured on (default 1000)")
    parser.add_argument("--stage-limit", type=float, default=900,
                        help="seconds a stage (kNN graph, recall, scoring, propagation) may take before its "
                             "run is stopped and reported as not finished (default 900)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --sizes 2e3, writes cluster_quick.md and .png")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where our pipeline's features and model live (default cpu; the faiss "
                             "alternatives always run on the CPU)")
    parser.add_argument("--verbose", action="store_true", help="show the stages' own progress bars")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cluster"),
                        help="folder for cluster.md and cluster.png (default benchmarks/results/cluster)")
    parser.add_argument("--workdir", default=None, help="folder for the features (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "2e3"
    args.sizes = sorted({int(float(size)) for size in args.sizes.split(",")})
    args.alternatives = [name for name in args.alternatives.split(",") if name]
    if any(name not in ALTERNATIVES for name in args.alternatives):
        parser.error(f"--alternatives: choose from {', '.join(ALTERNATIVES)}, got {args.alternatives}")
    if args.sizes[0] <= args.k:
        parser.error(f"--sizes: every N should exceed --k = {args.k}, got {args.sizes[0]}")
    if args.target_recall is not None and not 0 < args.target_recall <= 1:
        parser.error(f"--target-recall should be in (0, 1], got {args.target_recall}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from hdml_ext.graph import DEFAULT_TARGET_RECALL, require_knn_backend

    try:
        require_knn_backend(args.backend)
    except ValueError as error:
        sys.exit(f"--backend: {error}")
    command = "python benchmarks/bench_cluster.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="hdml_cluster_") as work:
        for n in args.sizes:
            path = str(write_blobs(Path(work) / f"blobs_{n}_{args.dim}.npy", n, args.dim, spread=NOISE))
            shared = (args.recall_queries, args.verbose, args.device)
            ours = measure(_child, (path, args.k, args.backend, True, DEFAULT_TARGET_RECALL, *shared),
                           PIPELINE_EVENTS, args.stage_limit, f"N={n:,} ours")
            target = args.target_recall
            if target is None:
                target = max(0.01, ours["recall"]["recall"]) if "recall" in ours else DEFAULT_TARGET_RECALL
            results[n] = {"ours": ours, "target": target}
            for method in args.alternatives:
                results[n][method] = measure(_child, (path, args.k, method, False, target, *shared),
                                             KNN_EVENTS, args.stage_limit, f"N={n:,} {method}")
    table, figure = write_outputs(results, args, command, (time.perf_counter() - started) / 60)
    print("\n" + table.read_text())
    print(f"wrote {table} and {figure}")


def write_outputs(results: dict, args: argparse.Namespace, command: str, minutes: float) -> tuple[Path, Path]:
    """Write cluster.md (`markdown`) and cluster.png (`plot`) to args.out (cluster_quick.* with
    --quick, cluster_cuda.* with --device cuda); returns their paths."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + ("_cuda" if args.device == "cuda" else "")
    table, figure = out / f"cluster{suffix}.md", out / f"cluster{suffix}.png"
    table.write_text(markdown(results, args, command, machine(), minutes))
    plot(results, figure, args)
    return table, figure


if __name__ == "__main__":
    main()
