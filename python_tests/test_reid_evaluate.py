"""hdml_ext.reid.evaluate: the ranks evaluate_orders reports, and evaluate_reid's k (None or the
model's, checked before any kNN work)."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import numpy as np
import pytest
import torch
from torch import nn

from hdml_ext.reid import distance_order, evaluate_orders, evaluate_reid


class ScorerOfK(nn.Module):
    """A stand-in model of F-Graph size k: S = sigmoid of each node's first coordinate; counts
    the graphs it scores."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.scored = 0

    def to_config(self) -> dict:
        return {"k": self.k}

    def link_scores_of_nodes(self, table: torch.Tensor, batches) -> Iterator[torch.Tensor]:
        for nodes, _ in batches:
            self.scored += nodes.shape[0]
            yield torch.sigmoid(table[nodes][:, 1:, 0])


def _data(num_query: int = 6, num_gallery: int = 14):
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(num_query, 4, generator=gen, dtype=torch.float64)
    gallery = torch.randn(num_gallery, 4, generator=gen, dtype=torch.float64)
    ids = (torch.arange(num_query) % 3, torch.arange(num_gallery) % 3,
           torch.zeros(num_query, dtype=torch.long), torch.ones(num_gallery, dtype=torch.long))
    return query, gallery, ids


@pytest.mark.parametrize(("max_rank", "reported"), [
    (1, ["rank1"]), (5, ["rank1", "rank5"]), (9, ["rank1", "rank5"]), (10, ["rank1", "rank5", "rank10"]),
])
def test_evaluate_orders_reports_only_the_ranks_the_cmc_reaches(max_rank, reported):
    # Before, max_rank < 10 reported cmc[max_rank - 1] under "rank10" (and "rank5").
    query, gallery, ids = _data()
    result = evaluate_orders(distance_order(query, gallery), *ids, max_rank=max_rank)
    assert [key for key in result if key.startswith("rank")] == reported
    assert result["cmc"].shape == (max_rank,)
    for key in reported:
        assert result[key] == result["cmc"][int(key[4:]) - 1]


def test_evaluate_reid_reports_the_ranks_of_its_max_rank():
    query, gallery, ids = _data()
    result = evaluate_reid(ScorerOfK(3), query, gallery, *ids, max_rank=4)
    assert "rank1" in result and "rank5" not in result and "rank10" not in result
    assert np.isfinite(result["mAP"])


@pytest.mark.parametrize("ranking", ["graph", "distance", "k_reciprocal"])
def test_evaluate_reid_refuses_another_k_before_any_work(ranking):
    # Before, k=4 for a model of k=3 built every query's F-Graph (the kNN work) and failed after.
    query, gallery, ids = _data()
    model = ScorerOfK(3)
    with mock.patch("hdml_ext.reid.ranking.query_fgraphs", side_effect=AssertionError("kNN work ran")), \
            pytest.raises(ValueError, match=r"k should be None or the model's k = 3 .*got 4"):
        evaluate_reid(model, query, gallery, *ids, k=4, ranking=ranking)
    assert model.scored == 0


def test_evaluate_reid_takes_none_or_the_models_k():
    query, gallery, ids = _data()
    model = ScorerOfK(3)
    by_default = evaluate_reid(model, query, gallery, *ids)
    assert model.scored == query.shape[0]
    assert evaluate_reid(model, query, gallery, *ids, k=3)["mAP"] == by_default["mAP"]
