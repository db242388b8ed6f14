"""How many F-Graphs per second does `hdml cluster` score, graph by graph or by shared projection?

    python benchmarks/bench_scoring.py                      # N = 100,000, 5 fresh processes
    python benchmarks/bench_scoring.py --nodes 2000 --processes 2 --out /tmp/scoring   # smoke run

The setting of issue 11: N x 64 float32 features (N / 50 Gaussian identities, centres N(0, 1),
noise 0.5), every node's F-Graph of k = 20 exact neighbours, an HDMLOnFeatures(64, k=20,
gcn_dims=(256, 128)) model (attention on, as the paper's RE-GCN; random weights: the work does
not depend on their values). Two paths score all N F-Graphs, batch_size at a time:

old  graph by graph, as `link_edges` did before: gather each batch's k+1 node rows, then
     `link_scores` projects every graph member through the first RE-GCN layer.
new  `link_edges` as it is: `link_scores_of_nodes` projects the N rows once and each graph
     gathers its members' projections.

Both include building each batch's node sets and adjacency (`FGraphs.batch`) and copying the
scores to the CPU, as `link_edges` does. The features and kNN tables are made once (untimed)
and every measurement runs in a fresh child process, which times both paths (the order
alternating between processes) after a one-batch warm-up of each, `--passes` full passes per
path, the median kept; the table gives min / median / max graphs/s over the processes and the
median of the per-process new/old ratios. Writes scoring_<device>.md and .json to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine

PATHS = ("old", "new")
PER_IDENTITY = 50


def write_inputs(folder: Path, num_nodes: int, dim: int, k: int, seed: int = 0) -> None:
    """features.npy [num_nodes, dim] float32 and fgraphs.npz (exact kNN tables, k columns)."""
    from hdml_ext.graph import build_fgraphs

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, num_nodes // PER_IDENTITY), dim), dtype=np.float32)
    labels = rng.integers(0, centres.shape[0], num_nodes)
    features = centres[labels] + 0.5 * rng.standard_normal((num_nodes, dim), dtype=np.float32)
    np.save(folder / "features.npy", features)
    build_fgraphs(torch.from_numpy(features), k, backend="exact").save(folder / "fgraphs.npz")


def score_graph_by_graph(model: torch.nn.Module, embeddings: torch.Tensor, graphs, batch_size: int,
                         stop: int | None = None) -> torch.Tensor:
    """The old `link_edges` loop: S [N, k] of the first `stop` (None: all N) nodes' F-Graphs."""
    stop = embeddings.shape[0] if stop is None else stop
    scores = torch.empty(stop, graphs.k)
    for start in range(0, stop, batch_size):
        focus = torch.arange(start, min(start + batch_size, stop), device=embeddings.device)
        nodes, adj = graphs.batch(focus)
        scores[start : start + focus.numel()] = model.link_scores(embeddings[nodes], adj).float().cpu()
    return scores


def child(args: argparse.Namespace) -> dict:
    """One fresh process: time both paths over all N F-Graphs; graphs/s per path."""
    from hdml_ext.cluster import link_edges
    from hdml_ext.graph import FGraphs
    from hdml_ext.nn import HDMLOnFeatures

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.child)
    device = torch.device(args.device)
    embeddings = torch.from_numpy(np.load(folder / "features.npy")).to(device)
    graphs = FGraphs.load(folder / "fgraphs.npz").to(device)
    num_nodes, k = graphs.num_nodes, graphs.k
    torch.manual_seed(0)
    model = HDMLOnFeatures(embeddings.shape[1], k=k, gcn_dims=tuple(args.gcn_dims)).to(device).eval()
    with torch.no_grad():  # warm-up: one batch of each path
        score_graph_by_graph(model, embeddings, graphs, args.batch_size, stop=args.batch_size)
        first = graphs.batch(torch.arange(min(args.batch_size, num_nodes), device=device))
        list(model.link_scores_of_nodes(embeddings, [first]))

    def run(path: str) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if path == "old":
            with torch.no_grad():
                scores = score_graph_by_graph(model, embeddings, graphs, args.batch_size)
        else:
            _, _, flat = link_edges(model, embeddings, k, batch_size=args.batch_size, knn_idx=graphs)
            scores = flat.view(-1, k)
        return time.perf_counter() - start, scores

    order = PATHS if args.order == "old,new" else PATHS[::-1]
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    scores: dict[str, torch.Tensor] = {}
    for _ in range(args.passes):
        for path in order:
            elapsed, scores[path] = run(path)
            seconds[path].append(elapsed)
    torch.testing.assert_close(scores["new"], scores["old"], rtol=1e-4, atol=1e-5)
    return {path: num_nodes / statistics.median(seconds[path]) for path in PATHS}


def summary(rates: list[dict], args: argparse.Namespace) -> dict:
    ratios = [r["new"] / r["old"] for r in rates]
    out = {"nodes": args.nodes, "dim": args.dim, "k": args.k, "gcn_dims": list(args.gcn_dims),
           "batch_size": args.batch_size, "device": args.device, "processes": len(rates),
           "passes": args.passes, "per_process": rates, "speedup_median": statistics.median(ratios)}
    for path in PATHS:
        values = [r[path] for r in rates]
        out[path] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return out


def markdown(result: dict, where: str) -> str:
    projection_mib = result["nodes"] * 2 * result["gcn_dims"][0] * 4 / 2**20
    lines = [
        f"F-Graph scoring, HDMLOnFeatures({result['dim']}, k={result['k']}, gcn_dims="
        f"{tuple(result['gcn_dims'])}), N = {result['nodes']:,}, batch_size {result['batch_size']}, "
        f"{result['device']}; {result['processes']} fresh processes x {result['passes']} passes. "
        f"Measured on {where}.",
        "",
        "| path | graphs/s min | median | max |",
        "|---|---:|---:|---:|",
    ]
    names = {"old": "graph by graph (`link_scores`)",
             "new": f"shared projection (`link_scores_of_nodes`, holds {projection_mib:.0f} MiB)"}
    for path in PATHS:
        r = result[path]
        lines.append(f"| {names[path]} | {r['min']:,.0f} | {r['median']:,.0f} | {r['max']:,.0f} |")
    lines += ["", f"new / old, median of the per-process ratios: {result['speedup_median']:.2f}x"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000, help="N, F-Graphs scored (default: 100000)")
    parser.add_argument("--dim", type=int, default=64, help="feature width (default: 64)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per F-Graph (default: 20)")
    parser.add_argument("--gcn-dims", type=int, nargs="+", default=[256, 128], help="RE-GCN widths")
    parser.add_argument("--batch-size", type=int, default=256, help="F-Graphs per batch (default: 256)")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes (default: 5)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per path and process")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"),
                        help="folder for scoring_<device>.md and .json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--order", default="old,new", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is present")
    if args.nodes <= args.k or args.processes < 1 or args.passes < 1:
        parser.error("need --nodes > --k and at least one process and pass")
    if args.threads:
        torch.set_num_threads(args.threads)  # the children's count, for `machine()`'s line
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as folder:
        write_inputs(Path(folder), args.nodes, args.dim, args.k)
        rates = []
        for index in range(args.processes):
            order = ",".join(PATHS if index % 2 == 0 else PATHS[::-1])
            command = [sys.executable, __file__, "--child", folder, "--order", order,
                       *(f"--{name}={getattr(args, name.replace('-', '_'))}"
                         for name in ("batch-size", "passes", "threads", "device")),
                       "--gcn-dims", *map(str, args.gcn_dims)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rates.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"process {index + 1}: old {rates[-1]['old']:,.0f} graphs/s, new {rates[-1]['new']:,.0f} "
                  f"graphs/s ({order})", flush=True)
    result = summary(rates, args)
    text = markdown(result, machine())
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scoring_{args.device}.md").write_text(text)
    (out / f"scoring_{args.device}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
