"""The demo's edge diagnostics: AUC of link scores within each focus's own edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from hdml_ext.cluster import edge_diagnostics, within_focus_auc


def test_within_focus_auc_hand_checked() -> None:
    src = np.repeat(np.arange(4), 3)
    same = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool)
    score = np.array([0.9, 0.5, 0.95, 0.8, 0.6, 0.5, 0.4, 0.4, 0.1, 0.1, 0.2, 0.3])
    # focus 0: one pair above, one below (1/2); focus 1: both above (1); focus 2: a tie and a
    # pair above (3/4); focus 3 has no different-class edge and is left out.
    auc, foci = within_focus_auc(src, score, same)
    assert foci == 3
    assert auc == pytest.approx((0.5 + 1.0 + 0.75) / 3)


def test_within_focus_auc_equals_sklearn_per_focus() -> None:
    rng = np.random.default_rng(0)
    num_foci, k = 50, 7
    src = np.repeat(np.arange(num_foci), k)
    same = rng.random(num_foci * k) < 0.4
    score = np.round(rng.random(num_foci * k), 1)  # rounded, so that ties occur
    expected = [roc_auc_score(s, v) for s, v in zip(same.reshape(-1, k), score.reshape(-1, k))
                if 0 < s.sum() < k]
    auc, foci = within_focus_auc(src, score, same)
    assert foci == len(expected)
    assert auc == pytest.approx(np.mean(expected))


def test_within_focus_auc_without_mixed_foci_is_none() -> None:
    src = np.repeat(np.arange(2), 2)
    assert within_focus_auc(src, np.ones(4), np.array([True, True, False, False])) == (None, 0)


def test_within_focus_auc_rejects_other_layouts() -> None:
    with pytest.raises(ValueError, match="every focus's k edges together"):
        within_focus_auc(np.array([0, 1, 0, 1]), np.zeros(4), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="every focus's k edges together"):
        within_focus_auc(np.array([0, 0, 1]), np.zeros(3), np.ones(3, dtype=bool))


def test_within_focus_auc_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match=r"src, score and same should all be \[E\], got \(4,\), \(3,\)"):
        within_focus_auc(np.repeat(np.arange(2), 2), np.zeros(3), np.ones(4, dtype=bool))


def test_edge_diagnostics_reports_pooled_and_within_focus_auc() -> None:
    labels = np.array([0, 0, 1, 1])
    src = torch.arange(4).repeat_interleave(2)
    dst = torch.tensor([1, 2, 0, 3, 3, 0, 2, 1])
    # The link scores order every focus's two edges right; cosine gets foci 1 and 3 wrong.
    link = torch.tensor([0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4])
    cosine = torch.tensor([0.5, 0.4, 0.1, 0.2, 0.9, 0.1, 0.3, 0.6])
    result = edge_diagnostics((src, dst, link), (src, dst, cosine), labels)
    assert result["edges"] == 8 and result["same_class_share"] == 0.5
    assert result["link_within_focus_auc"] == 1.0
    assert result["cosine_within_focus_auc"] == 0.5
    assert result["mixed_foci"] == 4
    assert result["link_auc"] == 1.0
