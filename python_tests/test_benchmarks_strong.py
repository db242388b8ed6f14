"""benchmarks/bench_strong_embedding.py: the ranking rule's bounds on a hand-checked gallery, and
its table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_strong_embedding as bench

from hdml_ext.data import TensorSplit
from hdml_ext.demo.evaluate import Embedded
from hdml_ext.demo.splits import DemoSplits


def _split(labels: list[int], camids: list[int]) -> TensorSplit:
    count = len(labels)
    return TensorSplit(torch.zeros(count, 3, 2, 2), torch.tensor(labels), torch.tensor(camids),
                       torch.arange(count))


def _line_gallery() -> tuple[Embedded, DemoSplits]:
    # Gallery at 1, 2, ..., 22 on a line, identity 0 at 1, 3 and 5, identity 1 elsewhere; query
    # 0 (identity 0) at 0, query 1 (identity 1) at 23. Distance ranking interleaves the
    # identities; each query's 21 nearest hold every item of its identity, so reordering them by
    # a perfect score is a perfect ranking. (k-reciprocal re-ranking needs k1 = 20 < Q + G.)
    gallery = torch.stack([torch.arange(1.0, 23.0), torch.ones(22)], dim=1)
    query = torch.tensor([[0.0, 1.0], [23.0, 1.0]])
    gallery_labels = [0 if position in (1, 3, 5) else 1 for position in range(1, 23)]
    emb = Embedded(fit=gallery, val=gallery, query=query, gallery=gallery)
    fit = _split(gallery_labels, [0] * 22)
    data = DemoSplits(dataset="line", fit=fit, val=fit, query=_split([0, 1], [0, 0]),
                      gallery=_split(gallery_labels, [1] * 22), num_fit_classes=2, open_set=True,
                      num_train=22)
    return emb, data


def test_ranking_bounds_on_a_hand_checked_gallery():
    emb, data = _line_gallery()
    bounds = bench.ranking_bounds(emb, data, k=21)
    assert bounds["perfect link scores"] == pytest.approx(1.0)
    assert set(bounds) == {"perfect link scores", "k-reciprocal order of the top 21 only",
                           "k-reciprocal per query, order of the top 21 only",
                           *(f"cos + {w:g} * o_i (unlearned)" for w in bench.OVERLAP_WEIGHTS),
                           "cos + cos of the F-Graph-averaged embeddings (unlearned)"}
    # Cosine of these points ranks worse than a perfect score, and every value is an mAP.
    assert all(0.0 < value < 1.0 for name, value in bounds.items() if name != "perfect link scores")


def test_markdown_averages_over_seeds():
    columns = {key: 0.5 for _, key in bench.COLUMNS}
    rows = [{"configuration": "cosine prior", "seed": seed, **columns, "mAP": value}
            for seed, value in ((0, 0.2), (1, 0.4))]
    bounds = [{"seed": 0, "perfect link scores": 0.9}, {"seed": 1, "perfect link scores": 0.7}]
    text = bench.markdown(rows, bounds, "python benchmarks/bench_strong_embedding.py", 12.0)
    # link AUC, cosine AUC and both within a focus, then graph mAP.
    assert "| cosine prior |" + " 0.500 ± 0.000 |" * 4 + " 0.300 ± 0.100 |" in text
    assert "| perfect link scores | 0.800 ± 0.100 |" in text
    assert "seeds [0, 1]" in text
