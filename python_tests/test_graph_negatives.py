"""cap_positive_neighbours: training kNN rows with a capped share of same-identity neighbours."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext.data.sampler import FGraphSampler
from hdml_ext.graph import FGraphs, build_fgraphs, cap_positive_neighbours


def _wide(knn_idx: list[list[int]]) -> FGraphs:
    idx = torch.tensor(knn_idx)
    dist = torch.arange(idx.shape[1], dtype=torch.float32).expand(idx.shape[0], -1).clone()
    return FGraphs(idx, dist, "exact", "test table")


def test_hand_checked_rows():
    # Labels: nodes 0-3 identity 0, nodes 4-6 identity 1.
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    wide = _wide([
        [1, 2, 3, 4, 5],  # 3 positives first: keeps 1 (cap), then negatives 4, 5
        [0, 4, 2, 5, 3],  # keeps 0, then 4 and 5 (2 is a positive over the cap)
        [0, 1, 3, 4, 5],
        [0, 1, 2, 6, 5],
        [5, 6, 0, 1, 2],  # keeps 5 (cap 1), then 0, 1
        [4, 6, 0, 1, 2],
        [4, 5, 3, 2, 1],
    ])  # fmt: skip
    capped = cap_positive_neighbours(wide, labels, k=3, max_positive_share=0.3)
    assert capped.knn_idx.tolist() == [
        [1, 4, 5], [0, 4, 5], [0, 4, 5], [0, 6, 5], [5, 0, 1], [4, 0, 1], [4, 3, 2],
    ]  # fmt: skip
    # Distances follow their columns: still ascending.
    assert capped.knn_dist.tolist()[0] == [0.0, 3.0, 4.0]
    assert "capped at 1 of k = 3" in capped.reason


def test_too_few_negatives_are_topped_up_with_further_positives():
    labels = torch.tensor([0, 0, 0, 0, 1])
    wide = _wide([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3]])
    capped = cap_positive_neighbours(wide, labels, k=3, max_positive_share=0.0)
    # Row 0: no positive allowed, one negative (4) only, so the two nearest positives fill in.
    assert capped.knn_idx[0].tolist() == [1, 2, 4]
    assert capped.knn_idx[4].tolist() == [0, 1, 2]


def test_share_one_keeps_the_nearest_k():
    x = torch.randn(60, 4)
    labels = torch.randint(0, 5, (60,))
    wide = build_fgraphs(x, 12)
    capped = cap_positive_neighbours(wide, labels, 5, 1.0)
    assert torch.equal(capped.knn_idx, wide.knn_idx[:, :5])
    assert torch.equal(capped.knn_dist, wide.knn_dist[:, :5])


def _reference_row(wide_row: list[int], same: list[bool], k: int, cap: int) -> list[int]:
    """The rule, written out: nearest first, same-label ones past the cap skipped, then the
    skipped ones fill what is missing; the result in the wide row's order."""
    taken, skipped, positives = [], [], 0
    for j, is_same in zip(wide_row, same):
        if len(taken) == k:
            break
        if is_same and positives >= cap:
            skipped.append(j)
            continue
        taken.append(j)
        positives += is_same
    taken += skipped[: k - len(taken)]
    return sorted(taken, key=wide_row.index)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(6, 40),
    k=st.integers(1, 5),
    classes=st.integers(1, 6),
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_rows_follow_the_rule_and_keep_distance_order(n, k, classes, share, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    labels = torch.randint(0, classes, (n,), generator=gen)
    k = min(k, n - 1)
    wide = build_fgraphs(x, min(n - 1, 4 * k))
    capped = cap_positive_neighbours(wide, labels, k, share)
    cap = math.ceil(share * k)
    assert capped.knn_idx.shape == (n, k)
    assert torch.all(capped.knn_dist[:, 1:] >= capped.knn_dist[:, :-1])
    for row in range(n):
        wide_row = wide.knn_idx[row].tolist()
        same = [bool(labels[j] == labels[row]) for j in wide_row]
        assert capped.knn_idx[row].tolist() == _reference_row(wide_row, same, k, cap)
        kept_same = sum(bool(labels[j] == labels[row]) for j in capped.knn_idx[row].tolist())
        assert kept_same <= max(cap, k - same.count(False))


def test_errors_name_the_argument():
    wide = _wide([[1, 2], [0, 2], [0, 1]])
    labels = torch.tensor([0, 0, 1])
    with pytest.raises(ValueError, match="k should be <= the 2 neighbours per row of wide, got 3"):
        cap_positive_neighbours(wide, labels, 3, 0.5)
    with pytest.raises(ValueError, match=r"max_positive_share should be in \[0, 1\], got 1.5"):
        cap_positive_neighbours(wide, labels, 2, 1.5)
    with pytest.raises(ValueError, match=r"labels should have one entry per node \(3\), got 2"):
        cap_positive_neighbours(wide, labels[:2], 2, 0.5)
    with pytest.raises(TypeError, match=r"wide should be an hdml_ext\.graph\.FGraphs"):
        cap_positive_neighbours(wide.knn_idx, labels, 2, 0.5)


def test_sampler_rebuild_caps_the_training_graphs():
    # Tight identities: the plain kNN rows are all positives, the capped ones hold negatives.
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat_interleave(10)
    x = torch.randn(8, 16, generator=gen)[labels] + 0.01 * torch.randn(80, 16, generator=gen)
    plain = FGraphSampler(labels, 6)
    plain.rebuild(x)
    capped = FGraphSampler(labels, 6, max_positive_share=0.5)
    capped.rebuild(x)

    def share(sampler):
        return float((labels[sampler.fgraphs.knn_idx] == labels[:, None]).double().mean())

    assert share(plain) == 1.0
    assert share(capped) == 0.5
    with pytest.raises(ValueError, match=r"max_positive_share should be None or in \[0, 1\], got -0.1"):
        FGraphSampler(labels, 6, max_positive_share=-0.1)
