"""Re-ranking with learned edges (hdml_ext.reid.link_rerank) against a dense reference written
from the module's definition, on small cases, and its argument checks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from hdml_ext.reid import evaluate_orders
from hdml_ext.reid.jaccard import jaccard_distances
from hdml_ext.reid.link_rerank import LinkRerankSettings, link_rerank_distances, link_rerank_order


class FirstCoordinateScorer(nn.Module):
    """A stand-in model: S = sigmoid of each non-focus node's first coordinate minus the focus's."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def to_config(self) -> dict:
        return {"k": self.k}

    def link_scores_of_nodes(self, table: torch.Tensor, batches) -> Iterator[torch.Tensor]:
        for nodes, _ in batches:
            z = table[nodes]
            yield torch.sigmoid(3.0 * (z[:, 1:, 0] - z[:, :1, 0]))


def _score(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sigmoid(3.0 * (b[0] - a[0])))


def _nearest(x: torch.Tensor, pool: torch.Tensor, k: int, exclude: int | None = None) -> list[int]:
    dist = ((pool - x) ** 2).sum(1).tolist()
    ids = [j for j in range(len(dist)) if j != exclude]
    return sorted(ids, key=lambda j: (dist[j], j))[:k]


def _dense_reference(q: torch.Tensor, g: torch.Tensor, k: int, s: LinkRerankSettings) -> np.ndarray:
    """The module docstring's d*, row by row, with dense V over the columns [gallery; queries]
    (inductive) or [queries; gallery] (together)."""
    num_q, num_g = q.shape[0], g.shape[0]
    if s.queries_together:
        rows = torch.cat([q, g])
        pool_of = {i: (rows, i, i) for i in range(num_q + num_g)}  # row -> (pool, exclude, own column)
        column_of_pool = list(range(num_q + num_g))
        gallery_rows = [num_q + j for j in range(num_g)]
        query_rows = list(range(num_q))
    else:
        rows = torch.cat([g, q])
        pool_of = {j: (g, j, j) for j in range(num_g)}
        pool_of.update({num_g + i: (g, None, num_g + i) for i in range(num_q)})
        column_of_pool = list(range(num_g))
        gallery_rows = list(range(num_g))
        query_rows = [num_g + i for i in range(num_q)]
    width = rows.shape[0]

    def own_encoding(r: int) -> tuple[np.ndarray, list[int]]:
        pool, exclude, own = pool_of[r]
        nbrs = _nearest(rows[r], pool, k, exclude)
        v = np.zeros(width)
        v[own] = 1.0
        squared = [float(((rows[r] - pool[j]) ** 2).sum()) for j in nbrs]
        for j, sq in zip(nbrs, squared):
            if s.weights == "link":
                v[column_of_pool[j]] = _score(rows[r], pool[j]) ** s.power
            else:
                v[column_of_pool[j]] = np.exp(-sq / max(squared) if max(squared) > 0 else 0.0)
        if s.normalise:
            v /= v.sum()
        return v, [column_of_pool[j] for j in nbrs]

    own = {r: own_encoding(r) for r in range(width)}

    def expanded(r: int) -> np.ndarray:
        v, nbrs = own[r]
        return (v + sum(own[c][0] for c in nbrs[: s.k2 - 1])) / s.k2

    out = np.zeros((num_q, num_g))
    for qi, r in enumerate(query_rows):
        vq = expanded(r)
        sq = ((g - rows[r]) ** 2).sum(1).numpy()
        sq = sq / sq.max()
        for gj, c in enumerate(gallery_rows):
            vg = expanded(c)
            jac = 1.0 - np.minimum(vq, vg).sum() / np.maximum(vq, vg).sum()
            out[qi, gj] = (1 - s.lambda_value) * jac + s.lambda_value * sq[gj]
    return out


def _points(num_q=4, num_g=11, dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(num_q, dim, generator=gen, dtype=torch.float64),
            torch.randn(num_g, dim, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize(
    ("weights", "normalise", "k2", "together", "power"),
    [
        (w, n, k2, t, p)
        for w, n, k2, t, p in itertools.product(
            ["link", "distance"], [False, True], [1, 3], [False, True], [1.0, 2.0]
        )
        if not (w == "distance" and p != 1.0)
    ],
)
def test_matches_dense_reference(weights, normalise, k2, together, power):
    q, g = _points()
    k = 4
    settings = LinkRerankSettings(weights=weights, power=power, normalise=normalise, k2=k2,
                                  lambda_value=0.25, queries_together=together)
    got = torch.cat([d for _, d in link_rerank_distances(FirstCoordinateScorer(k), q, g, settings, block=3)])
    # link scores come back as float32 (link_edges, query_link_scores): agreement to ~1e-7
    np.testing.assert_allclose(got.numpy(), _dense_reference(q, g, k, settings), rtol=1e-6, atol=1e-9)


def test_inductive_queries_do_not_change_each_other():
    q, g = _points(num_q=6)
    model = FirstCoordinateScorer(3)
    all_at_once = torch.cat([d for _, d in link_rerank_distances(model, q, g, LinkRerankSettings(k2=3))])
    alone = torch.cat([d for _, d in link_rerank_distances(model, q[2:3], g, LinkRerankSettings(k2=3))])
    np.testing.assert_allclose(all_at_once[2:3].numpy(), alone.numpy(), rtol=1e-12)


def test_lambda_one_is_distance_order():
    q, g = _points()
    (_, order), = list(link_rerank_order(FirstCoordinateScorer(3), q, g, LinkRerankSettings(lambda_value=1.0),
                                         block=100))
    expected = torch.sort(torch.cdist(q, g), dim=1, stable=True).indices
    assert torch.equal(order, expected)


def test_oracle_link_scores_rank_every_true_match_first():
    """With link scores that are 1 for the same identity and 0 otherwise, lambda 0 puts every
    gallery view of the query's identity among its F-Graph neighbours first."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.arange(5).repeat_interleave(4)
    points = torch.randn(20, 3, generator=gen, dtype=torch.float64) * 0.3 + ids[:, None].double()
    points = torch.cat([points, ids[:, None].double()], dim=1)

    class Oracle(FirstCoordinateScorer):
        def link_scores_of_nodes(self, table, batches):
            for nodes, _ in batches:
                z = table[nodes]
                yield (z[:, 1:, -1] == z[:, :1, -1]).double()

    q, g = points[::4], torch.cat([points[i * 4 + 1 : i * 4 + 4] for i in range(5)])
    q_ids, g_ids = ids[::4], torch.cat([ids[i * 4 + 1 : i * 4 + 4] for i in range(5)])
    orders = link_rerank_order(Oracle(3), q, g, LinkRerankSettings(lambda_value=0.0))
    q_cams, g_cams = torch.zeros(5, dtype=torch.long), torch.ones(15, dtype=torch.long)
    result = evaluate_orders(orders, q_ids, g_ids, q_cams, g_cams)
    assert result["mAP"] == pytest.approx(1.0)


def test_jaccard_of_empty_rows_is_zero():
    import scipy.sparse as sp

    empty = sp.csr_matrix((2, 3))
    assert np.array_equal(jaccard_distances(empty, empty.tocsc()), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weights": "cosine"}, "weights should be one of"),
        ({"power": 0.0}, "power should be a number > 0"),
        ({"lambda_value": 1.5}, "lambda_value should be in"),
        ({"normalise": 1}, "normalise should be a bool"),
        ({"queries_together": "yes"}, "queries_together should be a bool"),
    ],
)
def test_settings_errors_name_the_field(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LinkRerankSettings(**changes)


def test_k_must_be_the_models_and_k2_fit_the_graph():
    q, g = _points()
    with pytest.raises(ValueError, match="model's k = 3"):
        link_rerank_distances(FirstCoordinateScorer(3), q, g, k=4)
    with pytest.raises(ValueError, match="k2 should be at most k \\+ 1 = 4"):
        link_rerank_distances(FirstCoordinateScorer(3), q, g, LinkRerankSettings(k2=5))
    with pytest.raises(ValueError, match="at most G - 1"):
        link_rerank_distances(FirstCoordinateScorer(3), q, g[:3])
