"""Exact kNN (ops.knn) against what a user would otherwise run.

CPU, N = 20,000 random normal points, D = 128, k = 50, float32, queries = the points
themselves (each row excludes itself), the F-Graph building case:
- faiss.IndexFlatL2 (exact, BLAS + heap), searched with k + 1 and the query itself dropped,
  squared distances turned into distances, as torch tensors: what a faiss user writes.
  Same threads: faiss.omp_set_num_threads(torch.get_num_threads()).
- torch.cdist + topk over row blocks of CPU_BLOCK queries (a plain torch user blocks the rows
  to stay clear of an N x N matrix), the query's own column set to inf.
plus a case with separate queries (M = 5,000) against faiss.

CUDA: N = 100,000, D = 128, k = 50 float32 against torch.cdist + topk in row blocks.

Every row's note gives the recall of ours against the exact float64 reference on a sample
of query rows (reference.knn semantics; ties by index): it must be 1.000.
"""

from __future__ import annotations

import torch
from common import Row, time_ms
from torch import Tensor

from hdml_ext.ops import knn

K = 50
D = 128
CPU_N = 20_000
CPU_M = 5_000
CUDA_N = 100_000
# Query rows per torch.cdist call (4096 x 20,000 float32 is a 328 MB block on the CPU): of 256,
# 1024 and 4096 rows, 4096 was the fastest for cdist + topk here.
CPU_BLOCK = 4096
CUDA_BLOCK = 8192
RECALL_SAMPLE = 200


def _exact_sample(x: Tensor, k: int, rows: Tensor, queries: Tensor | None) -> Tensor:
    """Exact neighbour ids of the sampled query rows: float64 direct differences, ties by index."""
    base = x.double()
    out = []
    for chunk in rows.split(8):
        q = (x if queries is None else queries)[chunk].double()
        d2 = (q[:, None, :] - base[None, :, :]).pow(2).sum(-1)
        if queries is None:
            d2[torch.arange(len(chunk), device=x.device), chunk] = float("inf")
        out.append(torch.sort(d2, dim=1, stable=True).indices[:, :k])
    return torch.cat(out)


def _recall(idx: Tensor, exact: Tensor, rows: Tensor) -> float:
    found = idx[rows]
    hits = (found[:, :, None] == exact[:, None, :]).any(-1).sum().item()
    return hits / exact.numel()


def _recall_note(x: Tensor, queries: Tensor | None, ours_idx: Tensor, extra: dict[str, Tensor]) -> str:
    num_queries = x.shape[0] if queries is None else queries.shape[0]
    gen = torch.Generator().manual_seed(0)
    rows = torch.randperm(num_queries, generator=gen)[:RECALL_SAMPLE].to(x.device)
    exact = _exact_sample(x, K, rows, queries)
    parts = [f"recall@{K} vs exact on {len(rows)} rows: ours {_recall(ours_idx, exact, rows):.3f}"]
    parts += [f"{name} {_recall(idx.to(x.device), exact, rows):.3f}" for name, idx in extra.items()]
    return ", ".join(parts)


def _faiss_search(index, points, k: int, exclude_self: bool) -> tuple[Tensor, Tensor]:
    """faiss search as a user writes it: k + 1 and drop the query itself when searching x in x."""
    if not exclude_self:
        dist2, ids = index.search(points, k)
        return torch.from_numpy(dist2).clamp_min_(0).sqrt_(), torch.from_numpy(ids)
    dist2, ids = index.search(points, k + 1)
    ids_t = torch.from_numpy(ids)
    dist_t = torch.from_numpy(dist2)
    # The query is usually first; with duplicates it may not be: drop it wherever it is.
    self_ids = torch.arange(ids_t.shape[0])[:, None]
    keep = ids_t != self_ids
    keep[keep.sum(1) > k, k] = False  # query not among the k + 1: drop the last instead
    return dist_t[keep].view(-1, k).clamp_min_(0).sqrt_(), ids_t[keep].view(-1, k)


def _cdist_topk(x: Tensor, k: int, block: int) -> tuple[Tensor, Tensor]:
    """kNN of x in x by torch.cdist + topk over row blocks, the query's own column excluded."""
    dists, idxs = [], []
    for start in range(0, x.shape[0], block):
        d = torch.cdist(x[start:start + block], x)
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, rows + start] = float("inf")
        values, indices = d.topk(k, dim=1, largest=False)
        dists.append(values)
        idxs.append(indices)
    return torch.cat(dists), torch.cat(idxs)


def _cpu_rows() -> list[Row]:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(CPU_N, D, generator=gen)
    queries = torch.randn(CPU_M, D, generator=gen)
    index = faiss.IndexFlatL2(D)
    index.add(x.numpy())
    threads = torch.get_num_threads()

    out: list[Row] = []
    case = f"N={CPU_N} D={D} k={K} f32, queries=x"
    ours_ms = time_ms(lambda: knn(x, K))
    faiss_ms = time_ms(lambda: _faiss_search(index, x.numpy(), K, exclude_self=True))
    _, ours_idx = knn(x, K)
    _, faiss_idx = _faiss_search(index, x.numpy(), K, exclude_self=True)
    note = _recall_note(x, None, ours_idx, {"faiss": faiss_idx}) + f"; {threads} threads"
    out.append(Row("knn", case, "hdml knn", ours_ms, "faiss IndexFlatL2 (k+1, drop self)", faiss_ms, note))

    cdist_ms = time_ms(lambda: _cdist_topk(x, K, CPU_BLOCK))
    _, cdist_idx = _cdist_topk(x, K, CPU_BLOCK)
    note = _recall_note(x, None, ours_idx, {"cdist": cdist_idx}) + f"; {threads} threads"
    out.append(Row("knn", case, "hdml knn", ours_ms, f"torch.cdist+topk, {CPU_BLOCK}-row blocks", cdist_ms,
                   note))

    case = f"N={CPU_N} M={CPU_M} D={D} k={K} f32"
    ours_ms = time_ms(lambda: knn(x, K, queries=queries))
    faiss_ms = time_ms(lambda: _faiss_search(index, queries.numpy(), K, exclude_self=False))
    _, ours_idx = knn(x, K, queries=queries)
    _, faiss_idx = _faiss_search(index, queries.numpy(), K, exclude_self=False)
    note = _recall_note(x, queries, ours_idx, {"faiss": faiss_idx}) + f"; {threads} threads"
    out.append(Row("knn", case, "hdml knn", ours_ms, "faiss IndexFlatL2", faiss_ms, note))
    return out


def _cuda_rows() -> list[Row]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(CUDA_N, D, device="cuda", generator=gen)
    ours_ms = time_ms(lambda: knn(x, K), device="cuda")
    ref_ms = time_ms(lambda: _cdist_topk(x, K, CUDA_BLOCK), device="cuda")
    _, ours_idx = knn(x, K)
    _, ref_idx = _cdist_topk(x, K, CUDA_BLOCK)
    note = _recall_note(x, None, ours_idx, {"cdist": ref_idx})
    return [Row("knn", f"N={CUDA_N} D={D} k={K} f32, queries=x", "hdml knn", ours_ms,
                f"torch.cdist+topk, {CUDA_BLOCK}-row blocks", ref_ms, note)]


def rows(device: str) -> list[Row]:
    """CPU: ours vs faiss and vs blocked cdist + topk; CUDA: ours vs blocked cdist + topk."""
    return _cuda_rows() if device == "cuda" else _cpu_rows()
