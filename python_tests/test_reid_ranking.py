"""Re-ID inference: query F-Graphs over the gallery, graph ranking, metrics (hdml_ext.reid.ranking)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import DEVICES
from torch import nn

from hdml_ext import metrics
from hdml_ext.ops import reference
from hdml_ext.reid import (
    distance_order,
    evaluate_orders,
    evaluate_reid,
    graph_order,
    k_reciprocal_order,
    query_link_scores,
)


class FirstCoordinateScorer(nn.Module):
    """A stand-in model: S = sigmoid of each non-focus node's first coordinate, so the graph
    order differs from the distance order. Records what it was given."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def to_config(self) -> dict:
        return {"k": self.k}

    def link_scores(self, z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        self.calls.append((z.clone(), adj.clone()))
        return torch.sigmoid(z[:, 1:, 0])

    def link_scores_of_nodes(self, table: torch.Tensor, batches) -> Iterator[torch.Tensor]:
        for nodes, adj in batches:
            yield self.link_scores(table[nodes], adj)


class OracleScorer(FirstCoordinateScorer):
    """S = 1 when a node's last coordinate (its identity, planted) equals the focus's."""

    def link_scores(self, z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return (z[:, 1:, -1] == z[:, :1, -1]).float()


def _embeddings(num_query=5, num_gallery=12, dim=4, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(num_query, dim, generator=gen, dtype=torch.float64)
    g = torch.randn(num_gallery, dim, generator=gen, dtype=torch.float64)
    return q.to(device), g.to(device)


def _brute_force_order(q, g, k, score_of):
    """Per query: its k nearest gallery items sorted by score (ties nearest first), then the
    rest of the gallery by distance (ties by index)."""
    orders = []
    for qi in q.cpu():
        dist = ((g.cpu() - qi) ** 2).sum(1).sqrt().tolist()
        by_distance = sorted(range(len(dist)), key=lambda j: (dist[j], j))
        neighbours = by_distance[:k]
        front = sorted(range(k), key=lambda pos: (-score_of(g.cpu()[neighbours[pos]]), pos))
        front = [neighbours[pos] for pos in front]
        orders.append(front + [j for j in by_distance if j not in front])
    return np.array(orders)


@pytest.mark.parametrize("device", DEVICES)
def test_graph_order_matches_brute_force(device):
    q, g = _embeddings(device=device)
    k = 4
    model = FirstCoordinateScorer(k)
    neighbours, scores = query_link_scores(model, q, g, k, batch_size=2)
    got = torch.cat([order for _, order in graph_order(q, g, neighbours, scores, block=2)]).cpu().numpy()
    expected = _brute_force_order(q, g, k, lambda row: float(torch.sigmoid(row[0])))
    np.testing.assert_array_equal(got, expected)
    # The graph-scored neighbours come first, each row a permutation of the gallery.
    assert all(sorted(row) == list(range(g.shape[0])) for row in got.tolist())
    np.testing.assert_array_equal(np.sort(got[:, :k], 1), np.sort(neighbours.cpu().numpy(), 1))


def test_query_graphs_hold_the_query_first_and_the_gallery_knn_edges():
    q, g = _embeddings()
    k = 3
    model = FirstCoordinateScorer(k)
    neighbours, _ = query_link_scores(model, q, g, k, batch_size=10)
    ((z, adj),) = model.calls
    _, q_knn = reference.knn(g, k, queries=q)
    assert torch.equal(neighbours, q_knn)
    for b in range(q.shape[0]):
        members = [None, *q_knn[b].tolist()]
        assert torch.equal(z[b, 0], q[b])
        assert torch.equal(z[b, 1:], g[q_knn[b]])
        # Directed, as FGraphs.batch: row 0 (the query) joins its k gallery items; row a >= 1 holds
        # gallery item a's k nearest among the gallery and the query, inside the graph.
        joined = torch.cat([g, q[b : b + 1]])
        for a in range(1, k + 1):
            listed = reference.knn(joined, k)[1][members[a]].tolist()
            assert bool(adj[b, a, 0]) == (g.shape[0] in listed)
            for c in range(1, k + 1):
                assert bool(adj[b, a, c]) == (a != c and members[c] in listed)
        assert adj[b, 0, 1:].all() and not adj[b, 0, 0]


def test_distance_order_is_a_stable_argsort():
    q, g = _embeddings()
    got = torch.cat([order for _, order in distance_order(q, g, block=3)])
    expected = torch.sort(torch.cdist(q, g), dim=1, stable=True).indices
    assert torch.equal(got, expected)


def _ids(num_query, num_gallery, num_ids=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, num_ids, num_query),
        rng.integers(0, num_ids, num_gallery),
        rng.integers(0, 2, num_query),
        rng.integers(0, 2, num_gallery),
    )


def test_evaluate_orders_blocks_match_the_metric_on_the_whole_matrix():
    q, g = _embeddings(num_query=9, num_gallery=20)
    ids = _ids(9, 20)
    blocked = evaluate_orders(distance_order(q, g, block=2), *ids, max_rank=10)
    whole = metrics.rank_metrics(torch.cdist(q, g).numpy(), *ids, max_rank=10)
    assert blocked["mAP"] == pytest.approx(whole["mAP"])
    np.testing.assert_allclose(blocked["cmc"], whole["cmc"])
    assert blocked["rank1"] == pytest.approx(whole["cmc"][0])
    assert blocked["rank5"] == pytest.approx(whole["cmc"][4])


def test_an_oracle_link_score_beats_distance():
    gen = torch.Generator().manual_seed(1)
    q_ids = torch.tensor([0, 1, 2, 0])
    g_ids = torch.arange(3).repeat(4)
    # Identities barely separated in space; the planted last coordinate lets the oracle see them.
    q = torch.cat([3 * torch.randn(4, 3, generator=gen), q_ids[:, None].float()], 1).double()
    g = torch.cat([3 * torch.randn(12, 3, generator=gen), g_ids[:, None].float()], 1).double()
    # A far junk item (pid -1): outside every query's 12-node graph, and ignored by the metric.
    g = torch.cat([g, torch.full((1, 4), 1e3, dtype=torch.float64)])
    g_ids = torch.cat([g_ids, torch.tensor([-1])])
    cams = (torch.zeros(4, dtype=torch.long), torch.ones(13, dtype=torch.long))
    graph = evaluate_reid(OracleScorer(12), q, g, q_ids, g_ids, *cams, ranking="graph", max_rank=5)
    plain = evaluate_reid(OracleScorer(12), q, g, q_ids, g_ids, *cams, ranking="distance", max_rank=5)
    assert graph["mAP"] == pytest.approx(1.0)
    assert graph["rank1"] == 1.0
    assert plain["mAP"] < 1.0


def test_error_k_too_large_for_the_gallery():
    q, g = _embeddings(num_gallery=4)
    with pytest.raises(ValueError, match="k should be at most G - 1 = 3"):
        query_link_scores(FirstCoordinateScorer(4), q, g, 4)


def test_error_dimension_mismatch():
    q, g = _embeddings()
    with pytest.raises(ValueError, match="query should have D = 4"):
        next(distance_order(q[:, :3], g))


def test_error_unknown_ranking():
    q, g = _embeddings()
    with pytest.raises(ValueError, match="ranking should be one of 'graph', 'distance', 'k_reciprocal', "
                                         "'k_reciprocal_per_query', 'link_rerank', 'link_rerank_together', "
                                         "got 'cosine'"):
        evaluate_reid(FirstCoordinateScorer(2), q, g, *_ids(5, 12), ranking="cosine")


@pytest.mark.parametrize(("ranking", "together"), [("k_reciprocal", True), ("k_reciprocal_per_query", False)])
def test_k_reciprocal_ranking_is_the_rerank_order(ranking, together):
    q, g = _embeddings(num_query=8, num_gallery=30)
    ids = _ids(8, 30)
    expected = evaluate_orders(k_reciprocal_order(q, g, queries_together=together), *ids)
    found = evaluate_reid(FirstCoordinateScorer(2), q, g, *ids, ranking=ranking)
    assert found["mAP"] == expected["mAP"] and np.array_equal(found["cmc"], expected["cmc"])
    assert "mINP" in found


def test_error_scores_shape():
    q, g = _embeddings()
    with pytest.raises(ValueError, match="neighbours and scores"):
        next(graph_order(q, g, torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, 2)))


def test_error_no_valid_query():
    q, g = _embeddings(num_query=2, num_gallery=3)
    ids = (np.array([0, 0]), np.array([1, 1, 1]), np.array([0, 0]), np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_orders(distance_order(q, g), *ids)
