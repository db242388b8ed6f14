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


def _adjacency_with_the_query_in_the_data(q, g, query, k):
    """The directed adjacency of query `query`'s F-Graph built as for a focus that belongs to the
    data: every neighbour list over the gallery and that query (node G), by the reference."""
    table = reference.knn(torch.cat([g, q[query : query + 1]]), k)[1]
    return reference.fgraph_adjacency(table, torch.tensor([g.shape[0]]), symmetric=False)[0]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_batch_is_the_focus_graph_of_the_query_among_the_gallery(k):
    q, g = _embeddings(num_query=6, num_gallery=15, seed=k)
    graphs = query_fgraphs(q, g, k)
    queries = torch.tensor([4, 0, 2, 5, 1, 3])
    nodes, adj = graphs.batch(queries)
    focus = queries + g.shape[0]
    assert torch.equal(nodes, fgraph_nodes(graphs.table, focus))
    assert torch.equal(nodes[:, 0], focus) and torch.equal(nodes[:, 1:], graphs.knn_idx[queries])
    for b, query in enumerate(queries.tolist()):
        assert torch.equal(adj[b], _adjacency_with_the_query_in_the_data(q, g, query, k)), f"query {query}"
    assert adj[:, 0, 1:].all(), "the query joins every one of its gallery items"


def test_a_reciprocal_gallery_item_lists_the_query_instead_of_its_kth_neighbour():
    # Gallery on a line at 0, 1, 2, 10; the query at 0.4. Item 0's two nearest gallery items are
    # 1 and 2, but the query is nearer than 2: item 0's row lists the query and item 1.
    g = torch.tensor([[0.0], [1.0], [2.0], [10.0]], dtype=torch.float64)
    q = torch.tensor([[0.4]], dtype=torch.float64)
    nodes, adj = query_fgraphs(q, g, 2).batch(torch.tensor([0]))
    assert nodes.tolist() == [[4, 0, 1]]
    assert adj[0].tolist() == [[False, True, True], [True, False, True], [True, True, False]]
    # A query at 9: item 3 (at 10) has it nearer than its 2nd gallery neighbour (item 1, at 9 from
    # it); item 2 (at 2) does not (its 2nd, item 0, is at 2; the query at 7).
    far = query_fgraphs(torch.tensor([[9.0]], dtype=torch.float64), g, 2)
    nodes, adj = far.batch(torch.tensor([0]))
    assert nodes.tolist() == [[4, 3, 2]]
    assert adj[0, 1:, 0].tolist() == [True, False]


@pytest.mark.parametrize("device", DEVICES)
def test_a_given_gallery_table_gives_the_same_graphs(device):
    q, g = _embeddings(device=device)
    own = query_fgraphs(q, g, 3)
    given = query_fgraphs(q, g, 3, gallery_knn=reference.knn(g.cpu(), 6)[1].to(device))
    queries = torch.arange(q.shape[0], device=device)
    for a, b in zip(own.batch(queries), given.batch(queries)):
        assert torch.equal(a, b)
    torch.testing.assert_close(own.gallery_kth_dist, given.gallery_kth_dist)


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
