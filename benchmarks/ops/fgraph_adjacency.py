"""fgraph_adjacency: the adjacency of every F-Graph of a k = 50 kNN table (N = 20,000).

Reference: what a user would otherwise write, the broadcast comparison of
`hdml_ext.ops.reference.fgraph_adjacency` ([C, k+1, k, k+1] booleans) run over chunks of C = 256
focus nodes so that memory stays bounded, each chunk written into a preallocated output.

The kNN table comes from 20,000 x 128 clustered features (500 Gaussian clusters of about 40
points: neighbour lists overlap, as they do on real embeddings). The note of each row compares
our time with the kNN search that produced the table, since building F-Graphs should cost a
small fraction of it (issue 11's goal: < 10%): `hdml_ext.ops.knn` when this build has a kernel for the
device, else faiss IndexFlatL2 on the CPU (it says which).

The third row makes the one call into a buffer the caller keeps (`out=`), so its 52 MB output is
not fresh memory. The last row builds the same adjacencies in batches of BATCH focus nodes, as
`FGraphs.adjacency` and clustering's `link_edges` call the op: a one-call output for all N focus
nodes is N (k+1)^2 bytes (52 MB here), a fresh allocation whose first-touch page faults cost
about as much as the kernel's own work on this CPU; batched outputs reuse allocator memory.
"""

from __future__ import annotations

import torch
from common import Row, time_ms
from torch import Tensor

import hdml_ext

NUM_NODES, DIM, K = 20_000, 128, 50
NUM_CLUSTERS, SPREAD = 500, 0.5
CHUNK = 256
BATCH = 1024


def clustered_features(device: str, seed: int = 0) -> Tensor:
    """[NUM_NODES, DIM] float32: points around NUM_CLUSTERS random centres."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(NUM_CLUSTERS, DIM, generator=gen)
    labels = torch.randint(0, NUM_CLUSTERS, (NUM_NODES,), generator=gen)
    x = centres[labels] + SPREAD * torch.randn(NUM_NODES, DIM, generator=gen)
    return x.to(device)


def _faiss_knn(x: Tensor, k: int) -> Tensor:
    """idx [N, k] int64 from faiss IndexFlatL2 (self excluded), on the CPU."""
    import faiss

    points = x.float().cpu().numpy()
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    _, found = index.search(points, k + 1)
    found = torch.from_numpy(found)
    # Drop each row's own id (normally first); a row that lacks it drops its last entry.
    is_self = (found == torch.arange(found.shape[0])[:, None]).to(torch.uint8)
    order = torch.sort(is_self, dim=1, stable=True).indices[:, :k]
    return found.gather(1, order)


def knn_table(x: Tensor, k: int) -> tuple[Tensor, str, float]:
    """(idx [N, k] on x's device, what computed it, its time in ms)."""
    key = "CUDA" if x.is_cuda else "CPU"
    if torch._C._dispatch_has_kernel_for_dispatch_key("hdml::knn", key):
        ms = time_ms(lambda: hdml_ext.ops.knn(x, k), min_run_time=0.5, device=x.device.type)
        return hdml_ext.ops.knn(x, k)[1], f"hdml_ext.ops.knn ({x.device.type})", ms
    ms = time_ms(lambda: _faiss_knn(x, k), min_run_time=0.5)
    return _faiss_knn(x, k).to(x.device), "faiss IndexFlatL2 (cpu; no hdml knn kernel in this build)", ms


def chunked_broadcast(knn_idx: Tensor, *, symmetric: bool = True, chunk: int = CHUNK) -> Tensor:
    """The reference's broadcast comparison over chunks of focus nodes: bool [N, k+1, k+1]."""
    num_nodes, k = knn_idx.shape
    n = k + 1
    adj = torch.empty((num_nodes, n, n), dtype=torch.bool, device=knn_idx.device)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=knn_idx.device)
    for start in range(0, num_nodes, chunk):
        focus = torch.arange(start, min(start + chunk, num_nodes), device=knn_idx.device)
        nodes = torch.cat([focus[:, None], knn_idx[focus]], dim=1)
        found = (knn_idx[nodes][:, :, :, None] == nodes[:, None, None, :]).any(dim=2)
        if symmetric:
            found = found | found.transpose(1, 2)
        adj[start:start + chunk] = found & off_diagonal
    return adj


def rows(device: str) -> list[Row]:
    x = clustered_features(device)
    knn_idx, knn_source, knn_ms = knn_table(x, K)
    # The CPU kernel vectorises this case where torch itself uses AVX-512 kernels.
    if device == "cuda":
        path = "cuda"
    else:
        path = "cpu avx512" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "cpu scalar"
    out = []

    def row(case: str, ours_ms: float, reference_ms: float) -> Row:
        return Row(op="fgraph_adjacency", case=f"N={NUM_NODES} k={K} {case}",
                   ours=f"hdml_ext.ops.fgraph_adjacency ({path})", ours_ms=ours_ms,
                   reference=f"chunked broadcast (C={CHUNK})", reference_ms=reference_ms,
                   note=f"{100 * ours_ms / knn_ms:.1f}% of the kNN that built the table "
                        f"({knn_source}, D={DIM}: {knn_ms:.0f} ms)")

    for symmetric in (True, False):
        ours = hdml_ext.ops.fgraph_adjacency(knn_idx, symmetric=symmetric)
        if not torch.equal(ours, chunked_broadcast(knn_idx, symmetric=symmetric)):
            raise AssertionError("fgraph_adjacency disagrees with the chunked broadcast reference")
        ours_ms = time_ms(lambda s=symmetric: hdml_ext.ops.fgraph_adjacency(knn_idx, symmetric=s),
                          device=device)
        ref_ms = time_ms(lambda s=symmetric: chunked_broadcast(knn_idx, symmetric=s), device=device)
        out.append(row(f"all focus, symmetric={symmetric}", ours_ms, ref_ms))
    # One call for all focus nodes into a buffer the caller keeps (out=): no fresh 52 MB output.
    buffer = torch.empty_like(out_symmetric := hdml_ext.ops.fgraph_adjacency(knn_idx))
    if not torch.equal(hdml_ext.ops.fgraph_adjacency(knn_idx, out=buffer), out_symmetric):
        raise AssertionError("fgraph_adjacency(out=) disagrees with fgraph_adjacency")
    out_ms = time_ms(lambda: hdml_ext.ops.fgraph_adjacency(knn_idx, out=buffer), device=device)
    out.append(row("all focus, symmetric=True, out= a reused buffer", out_ms, out[0].reference_ms))
    batches = [torch.arange(start, min(start + BATCH, NUM_NODES), device=x.device)
               for start in range(0, NUM_NODES, BATCH)]
    batched_ms = time_ms(lambda: [hdml_ext.ops.fgraph_adjacency(knn_idx, f) for f in batches],
                         device=device)
    out.append(row(f"all focus in batches of {BATCH}, symmetric=True", batched_ms, out[0].reference_ms))
    return out
