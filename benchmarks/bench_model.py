"""How fast is the model, and do its two design choices pay?

    python benchmarks/bench_model.py [--device cpu|cuda] [--only share,regcn,step] [--out results/bench_model]

share  One joint training step (forward, loss, backward, SGD step) where the F-Graphs of a PK
       batch share each distinct image's backbone pass (HDML.forward), against the naive step
       where every graph runs its own k+1 images through the backbone.
regcn  The RE-GCN stack as written (one GEMM for both projections, aggregation after the
       projection by the fused gcn_aggregate op) against eq. 12 as printed in eager torch
       (hstack(Z, ÂZ) W with a dense normalised Â and bmm), forward + backward, the same
       attention blocks on both sides.
step   Seconds per joint training step of the paper-sized model (resnet50, 256x128, k = 50,
       RE-GCN 1536-1536-512-256) on a small PK batch; no reference, an absolute figure.

The comparisons are printed and written under --out as table_<device>.md and rows_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, machine, markdown_table, time_ms

CASES = ("share", "regcn", "step")


def pk_fgraphs(num_ids: int, per_id: int, k: int, num_graphs: int, *, seed: int = 0
               ) -> tuple[Tensor, Tensor, Tensor]:
    """A PK batch and F-Graphs built from its kNN table, as a training loop would have them.

    Returns labels [U] (U = num_ids * per_id), nodes int64 [num_graphs, k+1] (focus first, then
    its k nearest images of the batch under synthetic identity-clustered embeddings) and the
    bool adjacency [num_graphs, k+1, k+1] of paper III-B (setup only: built with the pure-torch
    references, untimed).
    """
    from hdml_ext.ops import reference

    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    centres = torch.randn(num_ids, 64, generator=gen)
    feats = centres[labels] + 0.8 * torch.randn(len(labels), 64, generator=gen)
    dist = torch.cdist(feats, feats)
    dist.fill_diagonal_(float("inf"))
    knn_idx = dist.topk(k, dim=1, largest=False).indices
    focus = torch.randperm(len(labels), generator=gen)[:num_graphs]
    return labels, reference.fgraph_nodes(knn_idx, focus), reference.fgraph_adjacency(knn_idx, focus)


def _train_step(model: nn.Module, optimiser: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                nodes: Tensor, adj: Tensor) -> None:
    total, _ = model.loss(model(images, nodes, adj), labels, nodes)
    optimiser.zero_grad(set_to_none=True)
    total.backward()
    optimiser.step()


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    """The paper's optimiser (IV-B)."""
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)


def share_rows(device: str, backbone: str, hw: tuple[int, int], num_ids: int, per_id: int, k: int,
               num_graphs: int, min_run_time: float) -> list[Row]:
    from hdml_ext.nn import HDML

    labels, nodes, adj = pk_fgraphs(num_ids, per_id, k, num_graphs)
    num_images = len(labels)
    torch.manual_seed(0)
    images = torch.randn(num_images, 3, *hw, device=device)
    labels, nodes, adj = labels.to(device), nodes.to(device), adj.to(device)
    ours = HDML(num_ids, backbone=backbone, k=k).to(device).train()
    naive = HDML(num_ids, backbone=backbone, k=k).to(device).train()
    naive.load_state_dict(ours.state_dict())
    ours_opt, naive_opt = _sgd(ours), _sgd(naive)
    flat = nodes.reshape(-1)
    naive_nodes = torch.arange(flat.numel(), device=device).view_as(nodes)

    def shared() -> None:
        _train_step(ours, ours_opt, images, labels, nodes, adj)

    def per_graph() -> None:
        # every graph runs its own k+1 images: gather them, then nothing is shared
        _train_step(naive, naive_opt, images[flat], labels[flat], naive_nodes, adj)

    ours_ms = time_ms(shared, min_run_time=min_run_time, device=device)
    naive_ms = time_ms(per_graph, min_run_time=min_run_time, device=device)
    served = nodes.numel()
    note = (f"{backbone} {hw[0]}x{hw[1]}, P={num_ids} x K={per_id} -> U={num_images} images, "
            f"B={num_graphs} graphs x {k + 1} nodes; graph-node images/s: "
            f"{served / ours_ms * 1e3:.0f} shared vs {served / naive_ms * 1e3:.0f} naive")
    return [Row("HDML train step", f"k={k}, B={num_graphs}, U={num_images}", "shared images (HDML.forward)",
                ours_ms, f"per-graph backbone ({served} images)", naive_ms, note)]


class LiteralREGCN(nn.Module):
    """Eq. 12 as printed, in eager torch: ReLU(hstack(Z, ÂZ) W + b) with a dense normalised
    Â = D^-1/2 A D^-1/2 (computed once per forward) and bmm, then the same attention blocks."""

    def __init__(self, in_dim: int, dims: tuple[int, ...]) -> None:
        from hdml_ext.nn import NodeChannelAttention

        super().__init__()
        widths = (in_dim, *dims)
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(2 * a, b) / math.sqrt(2 * a))
                                         for a, b in zip(widths[:-1], widths[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(b)) for b in dims])
        self.attention = nn.ModuleList([NodeChannelAttention(b) for b in dims])

    def forward(self, z: Tensor, adj: Tensor) -> Tensor:
        a = adj.to(z.dtype)
        deg = a.sum(-1)
        inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        a_hat = inv[:, :, None] * a * inv[:, None, :]
        for w, b, att in zip(self.weights, self.biases, self.attention):
            z = att(torch.relu(torch.cat([z, torch.bmm(a_hat, z)], dim=-1) @ w + b))
        return z


def regcn_rows(device: str, num_graphs: int, k: int, dims: tuple[int, ...], min_run_time: float) -> list[Row]:
    from hdml_ext.nn import REGCN

    in_dim, n = 1536, k + 1
    # The F-Graphs of a PK batch of 16 identities x 8 images: 128 distinct nodes in all.
    _, nodes, adj = pk_fgraphs(16, 8, k, num_graphs)
    nodes, adj = nodes.to(device), adj.to(device)
    torch.manual_seed(0)
    table = torch.randn(128, in_dim, device=device, requires_grad=True)
    z = torch.randn(num_graphs, n, in_dim, device=device, requires_grad=True)
    upstream = torch.randn(num_graphs, n, dims[-1], device=device)
    ours = REGCN(in_dim, dims).to(device).train()
    literal = LiteralREGCN(in_dim, dims).to(device).train()

    def run(module: nn.Module, *inputs: Tensor, **kwargs: Tensor) -> None:
        module.zero_grad(set_to_none=True)
        z.grad = table.grad = None
        (module(*inputs, **kwargs) * upstream).sum().backward()

    case = f"B={num_graphs}, n={n}, 1536->{'-'.join(map(str, dims))}"
    ours_ms = time_ms(lambda: run(ours, z, adj), min_run_time=min_run_time, device=device)
    literal_ms = time_ms(lambda: run(literal, z, adj), min_run_time=min_run_time, device=device)
    shared_ms = time_ms(lambda: run(ours, table, adj, index=nodes), min_run_time=min_run_time, device=device)
    gathered_ms = time_ms(lambda: run(literal, table[nodes], adj), min_run_time=min_run_time, device=device)
    return [
        Row("RE-GCN fwd+bwd", case, "project, then gcn_aggregate", ours_ms, "hstack(Z, ÂZ) W, dense Â bmm",
            literal_ms, "z [B, n, 1536] given; same attention blocks; same GEMM FLOPs on both sides"),
        Row("RE-GCN fwd+bwd", case + ", 128 distinct nodes", "node table + index (1st projection per node)",
            shared_ms, "gather, then hstack(Z, ÂZ) W", gathered_ms,
            "the F-Graphs of a 16x8 PK batch, as HDML.forward feeds them"),
    ]


def step_time(device: str, hw: tuple[int, int], num_ids: int, per_id: int, k: int, num_graphs: int,
              repeats: int) -> dict:
    from hdml_ext.nn import HDML

    labels, nodes, adj = pk_fgraphs(num_ids, per_id, k, num_graphs)
    torch.manual_seed(0)
    images = torch.randn(len(labels), 3, *hw, device=device)
    labels, nodes, adj = labels.to(device), nodes.to(device), adj.to(device)
    model = HDML(num_ids, k=k).to(device).train()  # resnet50, 1536-d, RE-GCN 1536-1536-512-256
    optimiser = _sgd(model)
    _train_step(model, optimiser, images, labels, nodes, adj)  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _train_step(model, optimiser, images, labels, nodes, adj)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    return {"case": "paper-sized HDML train step", "device": device, "backbone": "resnet50",
            "image_hw": list(hw), "k": k, "images": len(labels), "graphs": num_graphs,
            "seconds_per_step": seconds, "images_per_second": len(labels) / seconds, "repeats": repeats}


def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where to run (default: cpu)")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases (default: all)")
    parser.add_argument("--out", default="results/bench_model",
                        help="folder for table_<device>.md and rows_<device>.json")
    parser.add_argument("--k", type=int, default=50, help="neighbours per F-Graph (default: 50)")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="seconds per timed side (default: 2)")
    share = parser.add_argument_group("share")
    share.add_argument("--share-backbone", default=None,
                       help="backbone (default: resnet18 on cpu, resnet50 on cuda)")
    share.add_argument("--share-hw", type=_hw, default=None,
                       help="image HxW (default: 64x32 on cpu, 256x128 on cuda)")
    share.add_argument("--share-pk", type=_hw, default=(16, 4),
                       help="P identities x K images (default: 16x4)")
    share.add_argument("--share-graphs", type=int, default=16, help="F-Graphs per batch (default: 16)")
    regcn = parser.add_argument_group("regcn")
    regcn.add_argument("--regcn-graphs", type=int, default=64, help="graphs per batch (default: 64)")
    step = parser.add_argument_group("step")
    step.add_argument("--step-pk", type=_hw, default=None,
                      help="P identities x K images (default: 16x4 on cpu, 32x4 on cuda)")
    step.add_argument("--step-graphs", type=int, default=None,
                      help="F-Graphs per batch (default: 16 on cpu, 64 on cuda)")
    step.add_argument("--step-repeats", type=int, default=3, help="timed steps, median reported (default: 3)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is present")
    cases = args.only.split(",")
    for case in cases:
        if case not in CASES:
            parser.error(f"--only: unknown case {case!r}; choose from {', '.join(CASES)}")
    cuda = args.device == "cuda"
    import hdml_ext  # noqa: F401  (registers the ops)

    rows: list[Row] = []
    timings: list[dict] = []
    if "share" in cases:
        rows += share_rows(args.device, args.share_backbone or ("resnet50" if cuda else "resnet18"),
                           args.share_hw or ((256, 128) if cuda else (64, 32)), *args.share_pk, args.k,
                           args.share_graphs, args.min_run_time)
    if "regcn" in cases:
        rows += regcn_rows(args.device, args.regcn_graphs, args.k, (1536, 1536, 512, 256), args.min_run_time)
    for row in rows:
        print(f"{row.op:18s} {row.case:36s} ours {row.ours_ms:10.1f} ms   "
              f"reference {row.reference_ms:10.1f} ms   {row.speedup:6.2f}x  {row.note}", flush=True)
    if "step" in cases:
        pk = args.step_pk or ((32, 4) if cuda else (16, 4))
        timing = step_time(args.device, (256, 128), *pk, args.k, args.step_graphs or (64 if cuda else 16),
                           args.step_repeats)
        print(f"paper-sized step: {timing['seconds_per_step']:.2f} s/step for {timing['images']} images, "
              f"{timing['graphs']} graphs ({timing['images_per_second']:.1f} images/s)", flush=True)
        timings.append(timing)

    text = f"Measured on {machine()}\n\n"
    if rows:
        text += markdown_table(rows) + "\n"
    if timings:
        text += "\n| case | device | batch | s/step | images/s |\n|---|---|---|---:|---:|\n"
        for t in timings:
            text += (f"| {t['case']} ({t['backbone']}, {t['image_hw'][0]}x{t['image_hw'][1]}, k={t['k']}) | "
                     f"{t['device']} | {t['images']} images, {t['graphs']} F-Graphs | "
                     f"{t['seconds_per_step']:.2f} | {t['images_per_second']:.1f} |\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"table_{args.device}.md").write_text(text)
    (out / f"rows_{args.device}.json").write_text(json.dumps(
        {"machine": machine(), "rows": [r.as_dict() for r in rows], "timings": timings}, indent=2))
    print(f"\n{text}")


if __name__ == "__main__":
    main()
