"""How close does `hdml cluster`'s F-Graph scoring run to the machine's fp32 GEMM bound?

    python benchmarks/bench_scoring.py                        # N = 50,000, 5 fresh processes
    python benchmarks/bench_scoring.py --nodes 1000000 --paths link_edges --passes 1
    python benchmarks/bench_scoring.py --device cuda --nodes 200000 --batch-size 4096
    python benchmarks/bench_scoring.py --nodes 3000 --processes 2 --passes 1 --out /tmp/scoring  # smoke run

The setting of issues 11 and 25: N x 64 float32 features (N / 50 Gaussian identities, centres
N(0, 1), noise 0.5), every node's F-Graph of k = 20 neighbours (exact below 200,000 rows, else
`build_fgraphs`' "auto" index), an HDMLOnFeatures(64, k=20, gcn_dims=(256, 128)) model
(attention on, the paper's edge head; random weights and BatchNorm statistics: the work does not
depend on their values). Each pass times, in this order and in one process:

link_edges  as `hdml cluster` runs it: the shared first projection of the N rows, then batch
            by batch `FGraphs.batch` and, on the CPU, the fused `fgraph_scores` kernel (on CUDA
            the torch modules); scores copied into the [N, k] table on the CPU.
module      the same `link_edges` inside `link_inference.module_path()`: RE-GCN and edge head
            as torch modules on each batch (the CPU path before the fused kernel).
bound       the fp32 GEMM bound: torch.mm into preallocated outputs on the GEMM shapes scoring
            runs, at `--bound-batch` graphs per GEMM with all the process's threads: per graph
            n = k + 1 rows through each later RE-GCN projection [d_{l-1} -> 2 d_l] and each
            attention FC [d_l -> d_l], k rows through the edge head's first FC, and per row of
            the table the first projection [D -> 2 d_0]. (The head's [h -> 2] output is left
            out: it is a dot product, not a GEMM.) Its graphs/s is the rate scoring would reach
            if it did nothing but these GEMMs at torch's rate.

The bound is measured beside scoring, not after it: during each link_edges pass the bound's
GEMMs (`--bound-batch` graphs a set) run between every two scoring batches, timed apart from
scoring, so both rates are taken over the same minutes. (Measured after each pass instead, the
bound ranged 14.8-21.6K graphs/s over 20 passes at 50K rows, within processes too: a virtual
machine's arithmetic rate drifts from minute to minute, docs/performance.md.) Each gap runs two
sets: the first finds its operands pushed out of cache by scoring, and the second, warm, is the
bound; the first is reported beside it (a lower bound would flatter the fraction).
Every pass runs each path over all N F-Graphs (after a one-batch warm-up); the process reports
each path's graphs/s, the bound and link_edges' fraction of it as medians over its passes (each
pass's figures are in the JSON file, under per_process[i]["passes"]). The table gives min /
median / max over the fresh processes. Writes scoring_<device>_<N>.md and .json to --out.

On a CPU shared with other work the bound, whose GEMMs use all threads together, drops when one
thread is descheduled while link_edges' threads work on tiles of their own: measure on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine

PATHS = ("link_edges", "module")
PER_IDENTITY = 50
CHILD_OPTIONS = ("batch-size", "bound-batch", "passes", "threads", "paths", "device")
EXACT_BELOW = 200_000


def write_inputs(folder: Path, num_nodes: int, dim: int, k: int, seed: int = 0) -> None:
    """features.npy [num_nodes, dim] float32 and fgraphs.npz (k neighbours per row)."""
    from hdml_ext.graph import build_fgraphs

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, num_nodes // PER_IDENTITY), dim), dtype=np.float32)
    labels = rng.integers(0, centres.shape[0], num_nodes)
    features = centres[labels] + 0.5 * rng.standard_normal((num_nodes, dim), dtype=np.float32)
    np.save(folder / "features.npy", features)
    backend = "exact" if num_nodes < EXACT_BELOW else "auto"
    build_fgraphs(torch.from_numpy(features), k, backend=backend).save(folder / "fgraphs.npz")


def make_model(dim: int, k: int, gcn_dims: tuple[int, ...]) -> torch.nn.Module:
    """The benchmark's model in eval mode, with random BatchNorm statistics."""
    from hdml_ext.nn import HDMLOnFeatures

    torch.manual_seed(0)
    model = HDMLOnFeatures(dim, k=k, gcn_dims=gcn_dims)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def gemm_shapes(model: torch.nn.Module) -> list[tuple[int, torch.Tensor]]:
    """(rows per F-Graph, weight [out, in]) of every GEMM scoring runs per graph after the
    shared first projection: later RE-GCN projections, attention FCs, the head's first FC."""
    n, k = model.k + 1, model.k
    shapes: list[tuple[int, torch.Tensor]] = []
    for index, layer in enumerate(model.regcn.layers):
        if index > 0:
            shapes.append((n, layer.weight))
        if layer.attention is not None:
            shapes.append((n, layer.attention.fc.weight))
    shapes.append((k, model.edge_head.fc1.weight))
    return shapes


class GemmBound:
    """Times torch.mm on scoring's GEMM shapes at `graphs` F-Graphs per GEMM, into outputs
    allocated once; the first projection at `graphs` rows per GEMM, counted once per row."""

    def __init__(self, model: torch.nn.Module, graphs: int, device: torch.device) -> None:
        with torch.no_grad():
            first = model.regcn.layers[0].weight.detach()
            self.graphs = graphs
            self.device = device
            self.operands = [(torch.randn(rows * graphs, w.shape[1], device=device), w.detach().t(),
                              torch.empty(rows * graphs, w.shape[0], device=device))
                             for rows, w in gemm_shapes(model)]
            self.operands.append((torch.randn(graphs, first.shape[1], device=device), first.t(),
                                  torch.empty(graphs, first.shape[0], device=device)))
            macs = sum(a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in self.operands)
            self.macs_per_graph = macs / graphs

    def seconds(self) -> float:
        """Seconds of one set of the GEMMs (`self.graphs` F-Graphs)."""
        synchronize(self.device)
        start = time.perf_counter()
        for a, b, out in self.operands:
            torch.mm(a, b, out=out)
        synchronize(self.device)
        return time.perf_counter() - start


class BoundBetweenBatches:
    """Runs `bound`'s GEMMs between every two batches that `model` scores inside the `around`
    block, timed apart from scoring: two sets per gap, the first of which meets operands that
    scoring has pushed out of cache (`cold_seconds`) and the second warm ones (`seconds`, the
    bound)."""

    def __init__(self, bound: GemmBound) -> None:
        self.bound = bound
        self.sets = 0
        self.seconds = 0.0
        self.cold_seconds = 0.0

    @contextmanager
    def around(self, model: torch.nn.Module) -> Iterator[None]:
        original = model.link_scores_of_nodes

        def scores_then_bound(table: torch.Tensor, batches: Iterable,
                              **options: object) -> Iterator[torch.Tensor]:
            for index, scored in enumerate(original(table, batches, **options)):
                if index:
                    self.cold_seconds += self.bound.seconds()
                    self.seconds += self.bound.seconds()
                    self.sets += 1
                yield scored

        model.link_scores_of_nodes = scores_then_bound
        try:
            yield
        finally:
            del model.link_scores_of_nodes

    def graphs_per_second(self, cold: bool = False) -> float:
        """The bound's graphs/s over the gaps so far: of the warm sets, or of the cold ones."""
        return self.sets * self.bound.graphs / (self.cold_seconds if cold else self.seconds)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child(args: argparse.Namespace) -> dict:
    """One fresh process: per pass, each path over all N F-Graphs, link_edges with the GEMM bound
    between its batches (`BoundBetweenBatches`)."""
    from hdml_ext.cluster import link_edges
    from hdml_ext.cluster.scoring import scoring_batch_size
    from hdml_ext.graph import FGraphs
    from hdml_ext.nn.link_inference import module_path

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.child)
    device = torch.device(args.device)
    embeddings = torch.from_numpy(np.load(folder / "features.npy")).to(device)
    graphs = FGraphs.load(folder / "fgraphs.npz").to(device)
    num_nodes, k = graphs.num_nodes, graphs.k
    model = make_model(embeddings.shape[1], k, tuple(args.gcn_dims)).to(device)
    bound = GemmBound(model, args.bound_batch, device)
    batch_size = args.batch_size or scoring_batch_size(model, device, k)
    paths = args.paths.split(",")

    def score(path: str) -> tuple[float, torch.Tensor, BoundBetweenBatches]:
        """(graphs/s, scores, the bound's sets run between its batches) of one pass."""
        beside = BoundBetweenBatches(bound)
        synchronize(device)
        start = time.perf_counter()
        if path == "link_edges":
            with beside.around(model):
                _, _, flat = link_edges(model, embeddings, k, batch_size=batch_size, knn_idx=graphs)
        else:
            with module_path():
                _, _, flat = link_edges(model, embeddings, k, batch_size=batch_size, knn_idx=graphs)
        seconds = time.perf_counter() - start - beside.seconds - beside.cold_seconds
        return num_nodes / seconds, flat, beside

    first = [graphs.batch(torch.arange(min(num_nodes, batch_size), device=device))]
    with torch.no_grad():  # warm-up: thread pools, workspaces, the GEMM libraries' first calls
        list(model.link_scores_of_nodes(embeddings, first))
        with module_path():
            list(model.link_scores_of_nodes(embeddings, first))
    bound.seconds()
    rates: dict[str, list[float]] = {path: [] for path in paths}
    bound_rows: list[dict[str, float]] = []
    scores: dict[str, torch.Tensor] = {}
    for _ in range(args.passes):
        for path in paths:
            rate, scores[path], beside = score(path)
            rates[path].append(rate)
            if beside.sets:
                bound_rows.append({"bound": beside.graphs_per_second(),
                                   "bound_cold": beside.graphs_per_second(cold=True)})
    if len(scores) == 2:
        torch.testing.assert_close(scores["link_edges"], scores["module"], rtol=0, atol=1e-5)
    out: dict = {path: statistics.median(values) for path, values in rates.items()}
    out["macs_per_graph"] = bound.macs_per_graph
    out["batch_size"] = batch_size
    out["passes"] = [{path: rates[path][index] for path in paths} for index in range(args.passes)]
    if bound_rows:
        for row, bound_row in zip(out["passes"], bound_rows):
            row.update(bound_row)
        for key in ("bound", "bound_cold"):
            out[key] = statistics.median(row[key] for row in bound_rows)
        out["fraction"] = statistics.median(row["link_edges"] / row["bound"] for row in out["passes"])
    return out


def summary(per_process: list[dict], args: argparse.Namespace) -> dict:
    out = {"nodes": args.nodes, "dim": args.dim, "k": args.k, "gcn_dims": list(args.gcn_dims),
           "batch_size": per_process[0]["batch_size"], "bound_batch": args.bound_batch, "device": args.device,
           "processes": len(per_process),
           "passes": args.passes,
           "threads": torch.get_num_threads(), "bf16": bf16_note(), "per_process": per_process,
           "macs_per_graph": per_process[0]["macs_per_graph"]}
    for key in (*args.paths.split(","), "bound", "bound_cold", "fraction"):
        values = [p[key] for p in per_process if key in p]
        if values:
            out[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return out


def bf16_note() -> str:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16): the reduced-precision
    path of issue 25 is only worth writing where it does."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if f" {flag}" in flags]
    return f"native ({', '.join(native)})" if native else "none (no avx512_bf16 or amx_bf16): fp32 only"


NO_BOUND = ("no bound: it runs between link_edges' batches, and this run had no such gap "
            "(link_edges not in --paths, or all N F-Graphs in one batch)")


def process_line(row: dict) -> str:
    """One process's graphs/s per path and the bound, and link_edges' fraction of it."""
    rates = ", ".join(f"{key} {row[key]:,.0f}" for key in (*PATHS, "bound") if key in row)
    fraction = f", link_edges / bound {row['fraction']:.2f}" if "fraction" in row else f"; {NO_BOUND}"
    return f"graphs/s {rates}{fraction}"


def markdown(result: dict, where: str) -> str:
    lines = [
        f"F-Graph scoring, HDMLOnFeatures({result['dim']}, k={result['k']}, "
        f"gcn_dims={tuple(result['gcn_dims'])}), N = {result['nodes']:,}, batch_size {result['batch_size']} "
        f"(bound: {result['bound_batch']} graphs per GEMM, one set between every two scoring batches), "
        f"{result['device']}, {result['threads']} CPU threads; "
        f"{result['processes']} fresh processes x {result['passes']} passes. Measured on {where}.",
        "",
        "| | graphs/s min | median | max |",
        "|---|---:|---:|---:|",
    ]
    names = {"link_edges": "`link_edges` (CPU: the fused `fgraph_scores` kernel)",
             "module": "torch modules (`link_inference.module_path()`)",
             "bound": f"fp32 GEMM bound ({result['macs_per_graph'] / 1e6:.2f}M multiply-adds per graph)",
             "bound_cold": "the bound's first set in each gap, on operands out of cache"}
    for key, name in names.items():
        if key in result:
            r = result[key]
            lines.append(f"| {name} | {r['min']:,.0f} | {r['median']:,.0f} | {r['max']:,.0f} |")
    if "fraction" in result:
        r = result["fraction"]
        lines += ["", f"link_edges / bound per process: min {r['min']:.2f}, median {r['median']:.2f}, "
                      f"max {r['max']:.2f}"]
    else:
        lines += ["", NO_BOUND]
    if "link_edges" in result and "module" in result:
        ratios = [p["link_edges"] / p["module"] for p in result["per_process"]]
        lines.append(f"link_edges / module, median of the per-process ratios: "
                     f"{statistics.median(ratios):.2f}x")
    lines.append(f"bf16 on this CPU: {result['bf16']}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=50_000, help="N, F-Graphs scored (default: 50000)")
    parser.add_argument("--dim", type=int, default=64, help="feature width (default: 64)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per F-Graph (default: 20)")
    parser.add_argument("--gcn-dims", type=int, nargs="+", default=[256, 128], help="RE-GCN widths")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="F-Graphs per link_edges batch (default: link_edges' own, scoring_batch_size)")
    parser.add_argument("--bound-batch", type=int, default=256,
                        help="F-Graphs per GEMM of the bound, one set of its GEMMs between every two "
                             "scoring batches (default: 256, hdml cluster's former batch)")
    parser.add_argument("--paths", default="link_edges,module", help="comma-separated: link_edges, module")
    parser.add_argument("--processes", type=int, default=5, help="fresh processes (default: 5)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per process (default: 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where to run (default: cpu)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "scoring"),
                        help="folder for scoring_<device>_<N>.md and .json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        if args.nodes <= args.k or args.processes < 1 or args.passes < 1 or args.batch_size < 0 \
                or args.bound_batch < 1:
            parser.error("need --nodes > --k, at least one process, pass and graph "
                         "per bound GEMM, and --batch-size >= 0")
        unknown = set(args.paths.split(",")) - set(PATHS)
        if args.device == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA GPU is present")
        if unknown:
            parser.error(f"--paths takes {', '.join(PATHS)}, got {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)  # the children's count, for the table's line
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as folder:
        write_inputs(Path(folder), args.nodes, args.dim, args.k)
        per_process = []
        for index in range(args.processes):
            command = [sys.executable, __file__, "--child", folder, "--gcn-dims", *map(str, args.gcn_dims),
                       *(f"--{name}={getattr(args, name.replace('-', '_'))}"
                         for name in CHILD_OPTIONS)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            per_process.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"process {index + 1}: {process_line(per_process[-1])}", flush=True)
    result = summary(per_process, args)
    text = markdown(result, machine())
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scoring_{args.device}_{args.nodes}.md").write_text(text)
    (out / f"scoring_{args.device}_{args.nodes}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
