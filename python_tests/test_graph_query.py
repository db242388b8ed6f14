"""Re-ID query F-Graphs over a gallery (hdml_ext.graph.query_fgraphs, QueryFGraphs)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES

from hdml_ext.graph import fgraph_nodes, query_fgraphs
from hdml_ext.ops import reference


def _embeddings(num_query=5, num_gallery=12, dim=4, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(num_query, dim, generator=gen, dtype=torch.float64)
    g = torch.randn(num_gallery, dim, generator=gen, dtype=torch.float64)
    return q.to(device), g.to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_table_layout(device):
    q, g = _embeddings(device=device)
    graphs = query_fgraphs(q, g, 3)
    assert graphs.table.shape == (g.shape[0] + q.shape[0], 3) and graphs.table.device == q.device
    assert (graphs.num_gallery, graphs.num_queries, graphs.k) == (12, 5, 3)
    assert torch.equal(graphs.table[g.shape[0] :], graphs.knn_idx)
    assert torch.equal(graphs.gallery_knn.cpu(), reference.knn(g.cpu(), 3)[1])
    ref_dist, ref_idx = reference.knn(g.cpu(), 3, queries=q.cpu())
    assert torch.equal(graphs.knn_idx.cpu(), ref_idx)
    assert torch.allclose(graphs.knn_dist.cpu(), ref_dist)


def test_batch_is_the_query_focus_graph_over_the_joined_table():
    q, g = _embeddings()
    graphs = query_fgraphs(q, g, 3)
    queries = torch.tensor([4, 0, 2])
    nodes, adj = graphs.batch(queries)
    focus = queries + g.shape[0]
    assert torch.equal(nodes, fgraph_nodes(graphs.table, focus))
    assert torch.equal(nodes[:, 0], focus) and torch.equal(nodes[:, 1:], graphs.knn_idx[queries])
    assert torch.equal(adj, reference.fgraph_adjacency(graphs.table, focus, symmetric=False))
    assert adj[:, 0, 1:].all(), "the query joins every one of its gallery items"


def test_a_precomputed_gallery_table_is_cut_to_k():
    q, g = _embeddings()
    wide = reference.knn(g, 6)[1]
    graphs = query_fgraphs(q, g, 3, gallery_knn=wide)
    assert torch.equal(graphs.gallery_knn, wide[:, :3])
    with pytest.raises(ValueError, match=r"gallery_knn should be \[G, >= k\] = \[12, >= 3\], got \(12, 2\)"):
        query_fgraphs(q, g, 3, gallery_knn=wide[:, :2])


def test_errors():
    q, g = _embeddings(num_gallery=4)
    with pytest.raises(ValueError, match="k should be at most G - 1 = 3"):
        query_fgraphs(q, g, 4)
    with pytest.raises(ValueError, match=r"queries should lie in \[0, 5\), got values in \[0, 5\]"):
        query_fgraphs(q, g, 2).batch(torch.tensor([0, 5]))
    with pytest.raises(TypeError, match=r"gallery should be a torch\.Tensor"):
        query_fgraphs(q, g.numpy(), 2)
