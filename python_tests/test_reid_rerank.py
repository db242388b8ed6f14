"""k-reciprocal re-ranking (hdml_ext.reid.rerank): a hand-checked case, a dense reference, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES

from hdml_ext.reid import evaluate_orders, jaccard
from hdml_ext.reid.rerank import k_reciprocal_distances, k_reciprocal_order


def _dense_re_ranking(query, gallery, k1, k2, lambda_value):
    """The reference algorithm (Zhong et al. 2017, `re_ranking`) on dense [N, N] matrices."""
    x = np.concatenate([query, gallery]).astype(np.float64)
    num_rows, num_query = x.shape[0], query.shape[0]
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    dist = dist / dist.max(axis=1, keepdims=True)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]])

    v = np.zeros((num_rows, num_rows))
    half = int(np.around(k1 / 2.0))
    for i in range(num_rows):
        own = reciprocal(i, k1)
        expansion = set(own.tolist())
        for candidate in own:
            theirs = reciprocal(candidate, half)
            if len(np.intersect1d(theirs, own)) > 2.0 / 3.0 * len(theirs):
                expansion.update(theirs.tolist())
        members = np.array(sorted(expansion))
        weight = np.exp(-dist[i, members])
        v[i, members] = weight / weight.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(num_rows)])
    jaccard = np.empty((num_query, num_rows - num_query))
    for q in range(num_query):
        shared = np.minimum(v[q], v[num_query:]).sum(axis=1)
        jaccard[q] = 1.0 - shared / (2.0 - shared)
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_query, num_query:]


def _clustered(num_query=8, num_gallery=40, num_ids=6, dim=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(num_ids, dim, generator=gen, dtype=torch.float64)
    q_ids = torch.arange(num_query) % num_ids
    g_ids = torch.arange(num_gallery) % num_ids
    q = centres[q_ids] + torch.randn(num_query, dim, generator=gen, dtype=torch.float64)
    g = centres[g_ids] + torch.randn(num_gallery, dim, generator=gen, dtype=torch.float64)
    return q.to(dtype), g.to(dtype), q_ids, g_ids


def _stacked(blocks):
    return torch.cat([dist for _, dist in blocks]).numpy()


def test_hand_checked_two_pairs():
    # 1-D rows: query 0.0; gallery 0.1, 1.0, 1.1. With k1 = 1 (k1/2 rounds to 0) and k2 = 1:
    # rank(q) = q, g0 and rank(g0) = g0, q, so R(q, 1) = R(g0, 1) = {q, g0}; likewise
    # R(g1, 1) = R(g2, 1) = {g1, g2}. No expansion adds anything (R(c, 0) = {c}).
    # d(q, .) = [0, 0.01, 1, 1.21] / 1.21, d(g0, .) = [0.01, 0, 0.81, 1] / 1.
    # V[q] = (1, a) / (1 + a) on (q, g0) with a = exp(-0.01 / 1.21);
    # V[g0] = (b, 1) / (1 + b) on (q, g0) with b = exp(-0.01); g1, g2 share no column with q.
    query = torch.tensor([[0.0]], dtype=torch.float64)
    gallery = torch.tensor([[0.1], [1.0], [1.1]], dtype=torch.float64)
    a, b = math.exp(-0.01 / 1.21), math.exp(-0.01)
    shared = min(1 / (1 + a), b / (1 + b)) + min(a / (1 + a), 1 / (1 + b))
    jaccard = np.array([1 - shared / (2 - shared), 1.0, 1.0])
    original = np.array([0.01, 1.0, 1.21]) / 1.21
    got = _stacked(k_reciprocal_distances(query, gallery, k1=1, k2=1, lambda_value=0.3))
    np.testing.assert_allclose(got[0], 0.7 * jaccard + 0.3 * original, rtol=1e-12)
    only_original = _stacked(k_reciprocal_distances(query, gallery, k1=1, k2=1, lambda_value=1.0))
    np.testing.assert_allclose(only_original[0], original, rtol=1e-12)


def test_a_lone_nearest_item_falls_behind_a_shared_neighbourhood():
    # 1-D rows: query 0.0; gallery -0.23, 0.99, 0.96, 0.37, 0.3. By distance g0 (-0.23) comes
    # first; the query shares its neighbourhood with g4 (0.3) and g3 (0.37), which g0 does not,
    # so with k1 = 3 the re-ranked order puts g4 first and g0 second.
    query = torch.tensor([[0.0]], dtype=torch.float64)
    gallery = torch.tensor([[-0.23], [0.99], [0.96], [0.37], [0.3]], dtype=torch.float64)
    plain = torch.cdist(query, gallery).argsort(dim=1)
    assert plain.tolist() == [[0, 4, 3, 2, 1]]
    order = torch.cat([order for _, order in k_reciprocal_order(query, gallery, k1=3, k2=1)])
    assert order.tolist() == [[4, 0, 3, 2, 1]]
    got = _stacked(k_reciprocal_distances(query, gallery, k1=3, k2=1))
    np.testing.assert_allclose(got, _dense_re_ranking(query.numpy(), gallery.numpy(), 3, 1, 0.3), rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("k1", "k2", "lambda_value"), [(20, 6, 0.3), (5, 3, 0.3), (3, 1, 0.0), (7, 2, 1.0)])
def test_matches_the_dense_reference(device, k1, k2, lambda_value):
    q, g, _, _ = _clustered()
    expected = _dense_re_ranking(q.numpy(), g.numpy(), k1, k2, lambda_value)
    blocks = list(
        k_reciprocal_distances(q.to(device), g.to(device), k1=k1, k2=k2, lambda_value=lambda_value, block=3)
    )
    assert [rows for rows, _ in blocks] == [slice(0, 3), slice(3, 6), slice(6, 8)]
    got = _stacked(blocks)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_float32_rows_match_the_reference_to_float_rounding():
    q, g, _, _ = _clustered(seed=3, dtype=torch.float32)
    expected = _dense_re_ranking(q.double().numpy(), g.double().numpy(), 20, 6, 0.3)
    got = _stacked(k_reciprocal_distances(q, g))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_automatic_blocks_equal_one_block(monkeypatch):
    q, g, _, _ = _clustered(seed=1)
    whole = _stacked(k_reciprocal_distances(q, g, block=q.shape[0]))
    monkeypatch.setattr(jaccard, "BLOCK_ENTRIES", 100)
    blocks = list(k_reciprocal_distances(q, g))
    assert len(blocks) > 1
    assert blocks[0][0].start == 0 and blocks[-1][0].stop == q.shape[0]
    np.testing.assert_allclose(_stacked(blocks), whole, rtol=1e-12)


def test_order_sorts_the_distances_and_feeds_evaluate_orders():
    q, g, q_ids, g_ids = _clustered(seed=2)
    expected = np.argsort(_dense_re_ranking(q.numpy(), g.numpy(), 20, 6, 0.3), axis=1, kind="stable")
    blocks = list(k_reciprocal_order(q, g, block=5))
    assert [rows for rows, _ in blocks] == [slice(0, 5), slice(5, 8)]
    assert all(order.dtype == torch.int64 for _, order in blocks)
    np.testing.assert_array_equal(torch.cat([order for _, order in blocks]).numpy(), expected)
    cams = (torch.zeros(8, dtype=torch.long), torch.ones(40, dtype=torch.long))
    result = evaluate_orders(k_reciprocal_order(q, g), q_ids, g_ids, *cams, max_rank=5)
    assert 0.0 < result["mINP"] <= result["mAP"] <= 1.0
    assert result["rank1"] == pytest.approx(1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_queries_apart_is_each_query_with_the_gallery_alone(device):
    q, g, _, _ = _clustered(seed=4)
    blocks = list(k_reciprocal_distances(q.to(device), g.to(device), k1=5, k2=3, queries_together=False))
    assert [rows for rows, _ in blocks] == [slice(i, i + 1) for i in range(q.shape[0])]
    expected = np.concatenate(
        [_dense_re_ranking(q[i : i + 1].numpy(), g.numpy(), 5, 3, 0.3) for i in range(q.shape[0])]
    )
    np.testing.assert_allclose(_stacked(blocks), expected, rtol=1e-9, atol=1e-12)
    together = _stacked(k_reciprocal_distances(q, g, k1=5, k2=3))
    assert not np.allclose(together, expected)  # the other queries change the neighbourhoods
    order = torch.cat([order for _, order in k_reciprocal_order(q, g, k1=5, k2=3, queries_together=False)])
    np.testing.assert_array_equal(order.numpy(), np.argsort(expected, axis=1, kind="stable"))


def test_queries_apart_bounds_k1_and_k2_by_the_gallery():
    q, g, _, _ = _clustered()
    with pytest.raises(ValueError, match=r"k1 should be at most G \+ 1 - 1 = 40, got k1=41"):
        k_reciprocal_distances(q, g, k1=41, queries_together=False)
    with pytest.raises(ValueError, match=r"k2 should be at most G \+ 1 = 41, got k2=42"):
        k_reciprocal_order(q, g, k2=42, queries_together=False)
    with pytest.raises(TypeError, match="queries_together should be a bool, got int"):
        k_reciprocal_distances(q, g, queries_together=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k1": 0}, ValueError, "k1 should be >= 1"),
        ({"k2": 0}, ValueError, "k2 should be >= 1"),
        ({"k1": 2.5}, TypeError, "k1 should be an int"),
        ({"k1": 48}, ValueError, r"k1 should be at most Q \+ G - 1 = 47, got k1=48"),
        ({"k2": 49}, ValueError, r"k2 should be at most Q \+ G = 48, got k2=49"),
        ({"lambda_value": -0.1}, ValueError, r"lambda_value should be in \[0, 1\], got -0.1"),
        ({"lambda_value": 1.5}, ValueError, r"lambda_value should be in \[0, 1\], got 1.5"),
        ({"lambda_value": "0.3"}, TypeError, "lambda_value should be a real number"),
        ({"block": 0}, ValueError, "block should be >= 1"),
    ],
)
def test_errors_name_the_argument(kwargs, error, message):
    q, g, _, _ = _clustered()
    with pytest.raises(error, match=message):
        k_reciprocal_distances(q, g, **kwargs)
    if "block" not in kwargs:
        with pytest.raises(error, match=message):
            k_reciprocal_order(q, g, **kwargs)


def test_errors_on_bad_embeddings():
    q, g, _, _ = _clustered()
    with pytest.raises(ValueError, match="query should have D = 5 columns like gallery, got 4"):
        k_reciprocal_distances(q[:, :4], g)
    with pytest.raises(ValueError, match="query and gallery should be non-empty"):
        k_reciprocal_distances(q[:0], g)
    with pytest.raises(TypeError, match="query and gallery should be floating point"):
        k_reciprocal_distances(q.long(), g.long())
    with pytest.raises(ValueError, match="gallery should be 2-D"):
        k_reciprocal_distances(q, g[0])


@pytest.mark.parametrize(("num_gallery", "k1", "k2"), [(6, 6, 7), (6, 6, 1), (6, 2, 3), (1, 1, 1), (1, 1, 2)])
def test_queries_apart_at_the_bounds_of_k1_and_k2(num_gallery, k1, k2):
    # k1 = G: each gallery row's neighbourhood is the whole gallery and the query; G = 1: no
    # gallery row has a gallery neighbour.
    q, g, _, _ = _clustered(num_query=3, num_gallery=num_gallery, seed=7)
    got = _stacked(k_reciprocal_distances(q, g, k1=k1, k2=k2, queries_together=False))
    expected = np.concatenate(
        [_dense_re_ranking(q[i : i + 1].numpy(), g.numpy(), k1, k2, 0.3) for i in range(q.shape[0])]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("k1", "k2"), [(20, 6), (5, 1), (3, 9)])
def test_queries_apart_equal_encoding_each_query_with_the_gallery(k1, k2):
    # The gallery's kNN is found once and each query merged into it; encoding the G + 1 rows of
    # each query from scratch must give the same distances.
    q, g, _, _ = _clustered(num_query=6, num_gallery=120, num_ids=12, dim=8, seed=3, dtype=torch.float32)
    got = _stacked(k_reciprocal_distances(q, g, k1=k1, k2=k2, queries_together=False))
    one_by_one = np.concatenate(
        [_stacked(k_reciprocal_distances(q[i : i + 1], g, k1=k1, k2=k2)) for i in range(q.shape[0])]
    )
    np.testing.assert_allclose(got, one_by_one, rtol=1e-5, atol=1e-7)  # float32 rounding


def test_queries_apart_break_ties_as_a_search_over_all_rows():
    # Integer points: many exactly equal distances, and a query equal to gallery rows. The query
    # (row 0 of its G + 1 rows) comes first among neighbours at equal distance, as the exact
    # search lists the smaller index first.
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 3, (30, 2), generator=gen).double()
    q = torch.cat([g[:2], torch.randint(0, 3, (2, 2), generator=gen).double()])
    got = _stacked(k_reciprocal_distances(q, g, k1=4, k2=3, queries_together=False))
    one_by_one = np.concatenate(
        [_stacked(k_reciprocal_distances(q[i : i + 1], g, k1=4, k2=3)) for i in range(q.shape[0])]
    )
    np.testing.assert_allclose(got, one_by_one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("together", [True, False])
def test_progress_bar_counts_the_queries(together, capsys):
    q, g, _, _ = _clustered()
    quiet = _stacked(k_reciprocal_distances(q, g, k1=5, k2=3, queries_together=together))
    assert capsys.readouterr().err == ""
    shown = _stacked(k_reciprocal_distances(q, g, k1=5, k2=3, queries_together=together, progress=True))
    err = capsys.readouterr().err
    assert "k-reciprocal re-ranking" in err and f"/{q.shape[0]} " in err  # the queries counted
    np.testing.assert_array_equal(shown, quiet)
