"""Exact kNN on a CUDA GPU at scale: `hdml_ext.ops.knn` against a hand-written torch search.

    python benchmarks/knn_cuda_scale.py [--sizes 1e5,1e6] [--dim 64] [--k 20] [--faiss-nprobe 32]
                                         [--target-recall 0.95] [--join-nprobe 30] [--out results/knn_cuda]

The data are the issue's clustered features: 20,000 Gaussian identities (centres N(0, 1),
noise 0.5) per million rows, float32. Each size runs the all-kNN self-join (every row's k
nearest other rows) three ways, in one process on one GPU:

- ours: `hdml_ext.ops.knn(x, k)` on the GPU;
- torch: what a user would write by hand, also exact: blocks of 2,048 query rows,
  ||x||^2 - 2 q.x by `torch.mm` (TF32 off), `topk(k + 1)`, then the self match removed;
- ivf: `build_fgraphs(x, k, backend="ivf")` on the GPU rows (k-means on the CPU with faiss,
  the centroid search and `ops.knn_ivf` on the GPU) at `--target-recall`, with its recall@k
  against ours and its own step times (the first size's time includes importing faiss, which
  the warm-up does not run); 0 skips it;
- join: `ops.knn_ivf` alone, by its two CUDA kernels on the same lists (nlist as the ivf backend
  picks, homes and probes the `--join-nprobe` nearest of nlist random rows taken as centres):
  the row kernel (HDML_KNN_IVF_CUDA=rows) and the tiled join (the default), each in probed
  pairs per second (every row against every other row of its probed lists), and whether their
  neighbours agree; 0 skips it;
- faiss-cpu: IVF-Flat (nlist = 4 sqrt(N), trained on 50,000 rows) on this machine's CPU cores
  at `--faiss-nprobe`, with its recall@k against ours.

Times are wall seconds after a warm-up at a small size, with the GPU synchronised; the first
of each is also reported. Writes rows.json and table.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import hdml_ext.ops as ops
from hdml_ext.graph import build_fgraphs
from hdml_ext.graph.ivf import ivf_nlist

QUERY_BLOCK = 2048


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """[n, dim] float32: n / 50 Gaussian identities, centres N(0, 1), noise 0.5."""
    rng = np.random.default_rng(seed)
    identities = max(1, n // 50)
    centres = rng.standard_normal((identities, dim), dtype=np.float32)
    labels = rng.integers(0, identities, size=n)
    return centres[labels] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)


def torch_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """[N, k] indices of each row's k nearest other rows, exact, by blocked mm + topk."""
    sq = (x * x).sum(1)
    out = torch.empty((x.shape[0], k), dtype=torch.int64, device=x.device)
    rows = torch.arange(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, x.shape[0])
        scores = sq[None, :] - 2.0 * torch.mm(x[start:stop], x.T)
        scores[torch.arange(stop - start, device=x.device), rows[start:stop]] = float("inf")
        out[start:stop] = scores.topk(k, dim=1, largest=False).indices
    return out


def timed(fn, *args, **kwargs):
    """fn(*args, **kwargs) and its wall seconds, the GPU synchronised before and after."""
    torch.cuda.synchronize()
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return result, time.perf_counter() - started


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true neighbours that `found` lists."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth))
    return hits / truth.size


def random_lists(x: torch.Tensor, nprobe: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(list_ptr, list_ids, probe, pairs) for `ops.knn_ivf`: ivf_nlist(N) random rows as centres,
    each row's home its nearest and its probes the nprobe nearest; pairs = probed pairs less self."""
    nlist = ivf_nlist(x.shape[0])
    generator = torch.Generator().manual_seed(0)
    centres = x[torch.randperm(x.shape[0], generator=generator)[:nlist].to(x.device)]
    probe = ops.knn(centres, min(nprobe, nlist), queries=x)[1]
    sizes = torch.bincount(probe[:, 0], minlength=nlist)
    list_ptr = torch.zeros(nlist + 1, dtype=torch.int64, device=x.device)
    list_ptr[1:] = sizes.cumsum(0)
    list_ids = torch.argsort(probe[:, 0], stable=True)
    return list_ptr, list_ids, probe, int(sizes[probe].sum()) - x.shape[0]


def join_rates(x: torch.Tensor, k: int, nprobe: int) -> dict:
    """Seconds and probed pairs per second of `ops.knn_ivf` by the row kernel and the tiled join."""
    list_ptr, list_ids, probe, pairs = random_lists(x, nprobe)
    row = {"join_nprobe": probe.shape[1], "join_pairs": pairs}
    found = {}
    for kernel in ("rows", "tiles"):
        os.environ["HDML_KNN_IVF_CUDA"] = kernel
        try:
            (_, found[kernel]), seconds = timed(ops.knn_ivf, x, list_ptr, list_ids, probe, k)
        finally:
            del os.environ["HDML_KNN_IVF_CUDA"]
        row.update({f"join_{kernel}_s": seconds, f"join_{kernel}_pairs_per_s": pairs / seconds})
    row["join_same_idx"] = bool(torch.equal(found["rows"], found["tiles"]))
    row["join_speedup_tiles_vs_rows"] = row["join_rows_s"] / row["join_tiles_s"]
    return row


def faiss_ivf(x: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, float]:
    import faiss

    started = time.perf_counter()
    nlist = int(4 * np.sqrt(len(x)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], nlist)
    sample = np.random.default_rng(0).choice(len(x), size=min(len(x), 50_000), replace=False)
    index.train(x[sample])
    index.add(x)
    index.nprobe = nprobe
    _, idx = index.search(x, k + 1)
    seconds = time.perf_counter() - started
    is_self = idx == np.arange(len(x))[:, None]
    keep = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, keep, axis=1), seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1e5,1e6", help="N, comma-separated (default 1e5,1e6)")
    parser.add_argument("--dim", type=int, default=64, help="feature width (64)")
    parser.add_argument("--k", type=int, default=20, help="neighbours per row (20)")
    parser.add_argument("--faiss-nprobe", type=int, default=32, help="faiss IVF nprobe (32); 0: skip faiss")
    parser.add_argument("--target-recall", type=float, default=0.95,
                        help="the ivf backend's target recall@k (0.95); 0: skip it")
    parser.add_argument("--join-nprobe", type=int, default=30,
                        help="probes per row of the ops.knn_ivf kernel comparison (30); 0: skip it")
    parser.add_argument("--out", type=Path, default=Path("results/knn_cuda"), help="output folder")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA GPU is present")
    args.out.mkdir(parents=True, exist_ok=True)
    warm = torch.from_numpy(clustered(4096, args.dim)).cuda()
    ops.knn(warm, args.k)
    torch_knn(warm, args.k)
    if args.join_nprobe:
        join_rates(warm, args.k, args.join_nprobe)
    rows = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        x_host = clustered(size, args.dim)
        x = torch.from_numpy(x_host).cuda()
        (_, ours_idx), ours_s = timed(ops.knn, x, args.k)
        with _NoTF32():
            ref_idx, torch_s = timed(torch_knn, x, args.k)
        sample = np.random.default_rng(1).choice(size, size=min(size, 20_000), replace=False)
        ours_np, ref_np = ours_idx.cpu().numpy(), ref_idx.cpu().numpy()
        row = {
            "n": size,
            "dim": args.dim,
            "k": args.k,
            "gpu": torch.cuda.get_device_name(),
            "ours_s": ours_s,
            "torch_s": torch_s,
            "speedup_vs_torch": torch_s / ours_s,
            "recall_ours_vs_torch": recall(ours_np[sample], ref_np[sample]),
        }
        if args.target_recall:
            graphs, ivf_s = timed(build_fgraphs, x, args.k, backend="ivf", target_recall=args.target_recall)
            row.update(ivf_s=ivf_s, ivf_recall=recall(graphs.knn_idx.numpy()[sample], ours_np[sample]),
                       ivf_params=graphs.params, speedup_ivf_vs_ours=ours_s / ivf_s)
        if args.join_nprobe:
            row.update(join_rates(x, args.k, args.join_nprobe))
        if args.faiss_nprobe:
            import faiss

            faiss_idx, faiss_s = faiss_ivf(x_host, args.k, args.faiss_nprobe)
            row.update(
                faiss_s=faiss_s,
                faiss_threads=faiss.omp_get_max_threads(),
                faiss_nprobe=args.faiss_nprobe,
                faiss_recall=recall(faiss_idx[sample], ours_np[sample]),
                speedup_vs_faiss=faiss_s / ours_s,
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    lines = [
        "| N | ours (s) | torch mm+topk (s) | speed-up | recall vs torch | ivf backend (s) | ivf recall | "
        "faiss IVF (s) | faiss recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['ours_s']:.2f} | {r['torch_s']:.2f} | {r['speedup_vs_torch']:.2f}x | "
            f"{r['recall_ours_vs_torch']:.4f} | {r.get('ivf_s', float('nan')):.2f} | "
            f"{r.get('ivf_recall', float('nan')):.3f} | {r.get('faiss_s', float('nan')):.1f} | "
            f"{r.get('faiss_recall', float('nan')):.3f} |"
        )
    if args.join_nprobe:
        lines += ["", "| N | nprobe | probed pairs | row kernel (s) | pairs/s | tiled join (s) | pairs/s | "
                  "speed-up | same neighbours |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['n']:,} | {r['join_nprobe']} | {r['join_pairs']:.3g} | {r['join_rows_s']:.3f} | "
                  f"{r['join_rows_pairs_per_s']:.3g} | {r['join_tiles_s']:.3f} | "
                  f"{r['join_tiles_pairs_per_s']:.3g} | "
                  f"{r['join_speedup_tiles_vs_rows']:.1f}x | {r['join_same_idx']} |" for r in rows]
    text = f"GPU: {rows[0]['gpu']}; D = {args.dim}, k = {args.k}\n\n" + "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)


class _NoTF32:
    """TF32 off for torch.mm inside the block (the reference must be float32-exact)."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


if __name__ == "__main__":
    main()
