"""`hdml evaluate --visrank`: which queries are drawn, their orders equal evaluation's, and the
PNGs written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.reid import RANKINGS, evaluate_orders, evaluate_reid
from hdml_ext.reid.visrank import VISRANK_RANKINGS, ranking_orders, visrank_queries, write_visrank
from hdml_ext.reid.visualize import layout_for


def _reid_problem(seed: int = 0):
    """12 identities x 4 shots over 2 cameras (a gallery of 24, as many as k-reciprocal's k1 = 20
    needs); queries: one shot of each identity per camera."""
    generator = torch.Generator().manual_seed(seed)
    pids = torch.arange(12).repeat_interleave(4)
    cams = torch.tensor([0, 1, 0, 1] * 12)
    centres = 2 * torch.randn(12, 6, generator=generator)
    features = centres[pids] + torch.randn(48, 6, generator=generator)
    is_query = torch.zeros(48, dtype=torch.bool)
    is_query[::4] = True
    is_query[1::4] = True
    q, g = is_query, ~is_query
    return features[q], features[g], pids[q], pids[g], cams[q], cams[g]


def test_queries_spread_over_those_with_a_true_match():
    q_pids = np.array([0, 1, 2, -1, 3, 4, 5, 6])
    q_cams = np.array([0, 0, 0, 0, 0, 0, 0, 0])
    g_pids = np.array([0, 1, 1, 2, 4, 5, 6, -1])
    g_cams = np.array([1, 0, 1, 0, 1, 1, 1, 1])
    # pid 2 is only in the query's camera, -1 is junk, 3 is not in the gallery.
    assert visrank_queries(q_pids, q_cams, g_pids, g_cams, 10).tolist() == [0, 1, 5, 6, 7]
    assert visrank_queries(q_pids, q_cams, g_pids, g_cams, 3).tolist() == [0, 5, 7]
    with pytest.raises(ValueError, match="count"):
        visrank_queries(q_pids, q_cams, g_pids, g_cams, 0)


@pytest.mark.parametrize("ranking", VISRANK_RANKINGS)
def test_orders_of_some_queries_are_those_of_all(ranking):
    torch.manual_seed(0)
    model = HDMLOnFeatures(6, k=4, gcn_dims=[8]).eval()
    query, gallery, q_pids, g_pids, q_cams, g_cams = _reid_problem()
    everyone = np.arange(query.shape[0])
    full = ranking_orders(model, query, gallery, everyone, ranking)
    assert full.shape == (query.shape[0], gallery.shape[0])
    assert (full.sort(dim=1).values == torch.arange(gallery.shape[0])).all(), "rows should be permutations"
    some = np.array([5, 1, 12])
    assert torch.equal(ranking_orders(model, query, gallery, some, ranking), full[torch.from_numpy(some)])
    if ranking in RANKINGS:  # the rankings this version's evaluate_reid knows
        drawn = evaluate_orders([(slice(0, query.shape[0]), full)], q_pids, g_pids, q_cams, g_cams)
        evaluated = evaluate_reid(model, query, gallery, q_pids, g_pids, q_cams, g_cams, ranking=ranking)
        assert drawn["mAP"] == pytest.approx(evaluated["mAP"], abs=1e-12)


def test_distance_orders_sort_by_distance():
    query, gallery, *_ = _reid_problem(1)
    order = ranking_orders(None, query, gallery, np.array([0, 3]), "distance")
    expected = torch.cdist(query[[0, 3]], gallery).argsort(dim=1, stable=True)
    assert torch.equal(order, expected)


def test_unknown_ranking_is_refused():
    query, gallery, *_ = _reid_problem()
    with pytest.raises(ValueError, match="ranking should be one of"):
        ranking_orders(None, query, gallery, np.array([0]), "cosine")


def test_write_visrank_draws_the_ranking_above_distance(tmp_path):
    torch.manual_seed(0)
    model = HDMLOnFeatures(6, k=4, gcn_dims=[8]).eval()
    query, gallery, q_pids, g_pids, q_cams, g_cams = _reid_problem()
    q_images = torch.randn(query.shape[0], 3, 12, 6)
    g_images = torch.randn(gallery.shape[0], 3, 12, 6)
    paths = write_visrank(tmp_path, model, query, gallery, q_images, g_images, q_pids, g_pids, q_cams, g_cams,
                          count=3, ranking="graph", top=5, display_height=24)
    rows = visrank_queries(q_pids, q_cams, g_pids, g_cams, 3).tolist()
    names = [f"query{r:05d}_pid{int(q_pids[r])}_cam{int(q_cams[r])}.png" for r in rows]
    assert [p.name for p in paths] == names
    width, height = layout_for((12, 6), top=5, display_height=24).size(2)
    assert all(Image.open(p).size == (width, height) for p in paths)
    only_distance = write_visrank(tmp_path / "d", model, query, gallery, q_images, g_images, q_pids, g_pids,
                                  q_cams, g_cams, count=1, ranking="distance", top=5, display_height=24)
    assert Image.open(only_distance[0]).size == layout_for((12, 6), top=5, display_height=24).size(1)
