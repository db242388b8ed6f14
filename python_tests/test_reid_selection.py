"""The validation search of re-ranking with learned edges (hdml_ext.reid.selection), and the
link_rerank rankings of evaluate_reid and of `hdml evaluate`'s settings."""

from __future__ import annotations

import pytest
import torch
from test_reid_link_rerank import FirstCoordinateScorer

from hdml_ext.engine import EvalSettings
from hdml_ext.reid import (
    LinkRerankSettings,
    choose_link_rerank,
    evaluate_orders,
    evaluate_reid,
    link_rerank_order,
)
from hdml_ext.reid.selection import candidates, selection_score


def _identities(seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.arange(6).repeat_interleave(4)
    points = torch.randn(24, 3, generator=gen, dtype=torch.float64) * 0.6 + 1.5 * ids[:, None].double()
    is_query = torch.arange(24) % 4 == 0
    q, g = points[is_query], points[~is_query]
    cams = torch.zeros(6, dtype=torch.long), torch.ones(18, dtype=torch.long)
    return q, g, ids[is_query], ids[~is_query], *cams


def test_candidates_cover_the_space_in_order():
    space = {"k2": (1, 2), "lambda_value": (0.0, 0.5)}
    found = candidates(True, space)
    assert [(c.k2, c.lambda_value, c.queries_together) for c in found] == [
        (1, 0.0, True), (1, 0.5, True), (2, 0.0, True), (2, 0.5, True)]


@pytest.mark.parametrize("together", [False, True])
def test_choice_is_the_best_candidate_on_the_data_given(together):
    q, g, q_ids, g_ids, q_cams, g_cams = _identities()
    model = FirstCoordinateScorer(3)
    space = {"k2": (1, 3), "lambda_value": (0.0, 0.3, 1.0)}
    chosen, metrics, table = choose_link_rerank(model, q, g, q_ids, g_ids, q_cams, g_cams,
                                                queries_together=together, space=space)
    assert len(table) == 6 and chosen.queries_together is together
    best = max(selection_score(row) for row in table)
    assert selection_score(metrics) == best
    first_best = next(row for row in table if selection_score(row) == best)
    assert first_best["settings"] == chosen.to_dict()
    # the table's figures are those of the ranking itself
    again = evaluate_orders(link_rerank_order(model, q, g, chosen), q_ids, g_ids, q_cams, g_cams)
    assert again["mAP"] == pytest.approx(metrics["mAP"])


def test_empty_space_is_refused():
    q, g, q_ids, g_ids, q_cams, g_cams = _identities()
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_link_rerank(FirstCoordinateScorer(3), q, g, q_ids, g_ids, q_cams, g_cams, space={"k2": ()})


@pytest.mark.parametrize("ranking", ["link_rerank", "link_rerank_together"])
def test_evaluate_reid_link_rankings(ranking):
    q, g, q_ids, g_ids, q_cams, g_cams = _identities(seed=1)
    model = FirstCoordinateScorer(3)
    settings = LinkRerankSettings(k2=3, lambda_value=0.2)
    got = evaluate_reid(model, q, g, q_ids, g_ids, q_cams, g_cams, ranking=ranking, link_rerank=settings)
    together = ranking.endswith("together")
    expected_settings = LinkRerankSettings(k2=3, lambda_value=0.2, queries_together=together)
    orders = link_rerank_order(model, q, g, expected_settings)
    expected = evaluate_orders(orders, q_ids, g_ids, q_cams, g_cams)
    assert got["mAP"] == pytest.approx(expected["mAP"]) and got["rank1"] == pytest.approx(expected["rank1"])


def test_eval_settings_give_the_link_rerank_settings():
    settings = EvalSettings(ranking="link_rerank_together", link_k2=3, link_lambda=0.1, link_power=2.0,
                            link_normalise=True)
    assert settings.link_rerank() == LinkRerankSettings(power=2.0, normalise=True, k2=3, lambda_value=0.1,
                                                        queries_together=True)
    assert not EvalSettings(ranking="link_rerank").link_rerank().queries_together
