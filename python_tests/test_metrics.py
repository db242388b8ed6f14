"""hdml_ext.metrics: hand-computed rankings, brute-force references, sklearn's NMI, bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import normalized_mutual_info_score

from hdml_ext import metrics
from hdml_ext.metrics import (
    bcubed_fscore,
    nmi,
    pairwise_fscore,
    rank_metrics,
    rank_metrics_from_blocks,
    rank_metrics_from_order,
)

# ---------------------------------------------------------------------------------------------
# Ranking: a worked example.
#
# Gallery (index: pid, camid):  g0: 1,0   g1: 2,1   g2: 1,1   g3: -1,2   g4: 3,0   g5: 1,2
#
# Query A (pid 1, cam 0), distances 0.1 .. 0.6, so the ranking is g0 g1 g2 g3 g4 g5.
#   g0 has the query's pid AND camera -> removed; g3 is junk (pid -1) -> removed.
#   Kept ranking: g1 g2 g4 g5, true matches g2 (rank 2) and g5 (rank 4).
#   AP = mean(precision at each match) = (1/2 + 2/4) / 2 = 0.5; first match at rank 2.
# Query B (pid 3, cam 1), ranking g1 g2 g3 g4 g5 g0 (g0 is farthest).
#   Kept: g1 g2 g4 g5 g0 (g4 is pid 3 but camera 0, so it stays); match g4 at rank 3.
#   AP = 1/3; first match at rank 3.
# Query C (pid 4, cam 0): no gallery entry has pid 4 -> skipped.
# Query D (pid 2, cam 1): its only match g1 is seen by camera 1 too -> removed -> skipped.
#
# mAP = (1/2 + 1/3) / 2 = 5/12; CMC = [0, 1/2, 1, 1, ...]; 2 valid queries.
# ---------------------------------------------------------------------------------------------
G_PIDS = np.array([1, 2, 1, -1, 3, 1])
G_CAMS = np.array([0, 1, 1, 2, 0, 2])
Q_PIDS = np.array([1, 3, 4, 2])
Q_CAMS = np.array([0, 1, 0, 1])
DISTMAT = np.array(
    [
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    ]
)


def test_rank_metrics_hand_example():
    result = rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    assert result["num_valid_queries"] == 2
    assert result["mAP"] == pytest.approx(5 / 12)
    np.testing.assert_allclose(result["cmc"], [0.0, 0.5, 1.0, 1.0, 1.0])
    assert isinstance(result["mAP"], float)
    assert result["cmc"].shape == (5,)


def test_rank_metrics_same_camera_match_is_removed():
    # Query A alone: without the same-camera rule g0 would be a rank-1 hit and AP 1/1, 2/3, 3/6.
    result = rank_metrics(DISTMAT[:1], Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS, max_rank=3)
    assert result["mAP"] == pytest.approx(0.5)
    np.testing.assert_allclose(result["cmc"], [0.0, 1.0, 1.0])


def test_rank_metrics_junk_is_removed():
    # Query B alone: g3 (junk) is ranked before g4; counting it would put g4 at rank 4.
    result = rank_metrics(DISTMAT[1:2], Q_PIDS[1:2], G_PIDS, Q_CAMS[1:2], G_CAMS, max_rank=4)
    assert result["mAP"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(result["cmc"], [0.0, 0.0, 1.0, 1.0])


def test_rank_metrics_ties_keep_gallery_order():
    # Both gallery entries at distance 0: a stable order puts the wrong pid (g0) first.
    result = rank_metrics(np.zeros((1, 2)), [1], [2, 1], [0], [1, 1], max_rank=2)
    assert result["mAP"] == pytest.approx(0.5)
    np.testing.assert_allclose(result["cmc"], [0.0, 1.0])


def test_rank_metrics_cmc_longer_than_gallery_saturates():
    result = rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=50)
    assert result["cmc"].shape == (50,)
    assert result["cmc"][-1] == 1.0


def test_rank_metrics_accepts_tensors():
    expected = rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    got = rank_metrics(
        torch.from_numpy(DISTMAT).float(),
        torch.from_numpy(Q_PIDS),
        torch.from_numpy(G_PIDS),
        torch.from_numpy(Q_CAMS),
        torch.from_numpy(G_CAMS),
        max_rank=5,
    )
    assert got["mAP"] == pytest.approx(expected["mAP"])
    np.testing.assert_allclose(got["cmc"], expected["cmc"])


def _reference_rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Loop per query, as torchreid's eval_market1501 does."""
    aps, cmcs = [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        remove = ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])) | (g_pids[order] == -1)
        raw = (g_pids[order] == q_pids[q])[~remove].astype(np.float64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        cmc = np.concatenate([cmc, np.ones(max_rank)])[:max_rank]
        cmcs.append(cmc)
        precision = raw.cumsum() / np.arange(1, raw.size + 1)
        aps.append((precision * raw).sum() / raw.sum())
    return float(np.mean(aps)), np.mean(cmcs, axis=0), len(aps)


@pytest.mark.parametrize("seed", range(4))
def test_rank_metrics_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = 23, 57
    distmat = rng.integers(0, 10, size=(num_q, num_g)).astype(np.float32)  # many ties
    q_pids, g_pids = rng.integers(0, 6, num_q), rng.integers(-1, 6, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    m_ap, cmc, valid = _reference_rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 10)
    result = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    assert result["mAP"] == pytest.approx(m_ap, abs=1e-12)
    np.testing.assert_allclose(result["cmc"], cmc, atol=1e-12)
    assert result["num_valid_queries"] == valid


def test_rank_metrics_blocks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    distmat = rng.random((40, 30))
    ids = rng.integers(0, 4, 40), rng.integers(0, 4, 30), rng.integers(0, 2, 40), rng.integers(0, 2, 30)
    whole = rank_metrics(distmat, *ids, max_rank=10)
    monkeypatch.setattr(metrics, "_BLOCK_ENTRIES", 64)  # 2 queries per block
    blocked = rank_metrics(distmat, *ids, max_rank=10)
    assert blocked["mAP"] == pytest.approx(whole["mAP"], abs=1e-15)
    np.testing.assert_array_equal(blocked["cmc"], whole["cmc"])


def test_rank_metrics_from_order_matches_distmat():
    rng = np.random.default_rng(1)
    distmat = rng.random((12, 20))
    ids = rng.integers(0, 3, 12), rng.integers(0, 3, 20), rng.integers(0, 2, 12), rng.integers(0, 2, 20)
    expected = rank_metrics(distmat, *ids, max_rank=7)
    got = rank_metrics_from_order(np.argsort(distmat, axis=1, kind="stable"), *ids, max_rank=7)
    assert got["mAP"] == pytest.approx(expected["mAP"])
    np.testing.assert_allclose(got["cmc"], expected["cmc"])


def test_rank_metrics_from_blocks_equal_the_whole_order():
    rng = np.random.default_rng(2)
    distmat = rng.random((9, 15))
    ids = rng.integers(0, 3, 9), rng.integers(0, 3, 15), rng.integers(0, 2, 9), rng.integers(0, 2, 15)
    order = np.argsort(distmat, axis=1, kind="stable")
    whole = rank_metrics_from_order(order, *ids, max_rank=5)
    blocks = [(slice(start, min(start + 4, 9)), order[start : start + 4]) for start in range(0, 9, 4)]
    got = rank_metrics_from_blocks(blocks, *ids, max_rank=5)
    assert got["mAP"] == pytest.approx(whole["mAP"])
    np.testing.assert_allclose(got["cmc"], whole["cmc"])
    assert got["num_valid_queries"] == whole["num_valid_queries"]
    short_block = r"order of queries 0:4 should be \[4, G = 15\], got shape \(3, 15\)"
    with pytest.raises(ValueError, match=short_block):
        rank_metrics_from_blocks([(slice(0, 4), order[:3])], *ids)
    with pytest.raises(ValueError, match="should be a permutation"):
        rank_metrics_from_blocks([(slice(0, 1), np.zeros((1, 15), dtype=np.int64))], *ids)


def test_rank_metrics_from_order_uses_the_given_order():
    # Reversed order of the hand example's query A: kept ranking g5 g4 g2 g1 -> AP (1 + 2/3) / 2.
    order = np.array([[5, 4, 3, 2, 1, 0]])
    result = rank_metrics_from_order(order, Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS, max_rank=2)
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    np.testing.assert_allclose(result["cmc"], [1.0, 1.0])


# --- bad inputs for the ranking metrics: one test each -------------------------------------


def test_rank_metrics_rejects_1d_distmat():
    with pytest.raises(ValueError, match="distmat should be 2-D"):
        rank_metrics(DISTMAT[0], Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS)


def test_rank_metrics_rejects_empty_distmat():
    with pytest.raises(ValueError, match="distmat should be non-empty"):
        rank_metrics(np.zeros((0, 6)), [], G_PIDS, [], G_CAMS)


def test_rank_metrics_rejects_nan_distmat():
    bad = DISTMAT.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="distmat should hold no NaN"):
        rank_metrics(bad, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)


def test_rank_metrics_rejects_q_pids_of_wrong_length():
    with pytest.raises(ValueError, match="q_pids and q_camids should have the same length"):
        rank_metrics(DISTMAT, Q_PIDS[:3], G_PIDS, Q_CAMS, G_CAMS)


def test_rank_metrics_rejects_query_ids_not_matching_rows():
    with pytest.raises(ValueError, match="q_pids should have one entry per row"):
        rank_metrics(DISTMAT, Q_PIDS[:3], G_PIDS, Q_CAMS[:3], G_CAMS)


def test_rank_metrics_rejects_gallery_ids_not_matching_columns():
    with pytest.raises(ValueError, match="g_pids should have one entry per column"):
        rank_metrics(DISTMAT, Q_PIDS, G_PIDS[:5], Q_CAMS, G_CAMS[:5])


def test_rank_metrics_rejects_g_camids_of_wrong_length():
    with pytest.raises(ValueError, match="g_pids and g_camids should have the same length"):
        rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS[:5])


def test_rank_metrics_rejects_2d_pids():
    with pytest.raises(ValueError, match="q_pids should be 1-D"):
        rank_metrics(DISTMAT, Q_PIDS[:, None], G_PIDS, Q_CAMS, G_CAMS)


def test_rank_metrics_rejects_float_camids():
    with pytest.raises(TypeError, match="g_camids should hold integers"):
        rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS.astype(np.float32))


def test_rank_metrics_rejects_bad_max_rank():
    with pytest.raises(ValueError, match="max_rank should be >= 1"):
        rank_metrics(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=0)


def test_rank_metrics_rejects_all_queries_without_match():
    with pytest.raises(ValueError, match="no query has a true match"):
        rank_metrics(DISTMAT[2:], Q_PIDS[2:], G_PIDS, Q_CAMS[2:], G_CAMS)


def test_rank_metrics_from_order_rejects_non_permutation():
    order = np.array([[0, 1, 2, 3, 4, 4]])
    with pytest.raises(ValueError, match=r"order should be a permutation .* row 0"):
        rank_metrics_from_order(order, Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS)


def test_rank_metrics_from_order_rejects_out_of_range():
    order = np.array([[0, 1, 2, 3, 4, 6]])
    with pytest.raises(ValueError, match=r"order should hold gallery indices in \[0, 6\)"):
        rank_metrics_from_order(order, Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS)


def test_rank_metrics_from_order_rejects_float_order():
    with pytest.raises(TypeError, match="order should hold integer"):
        rank_metrics_from_order(np.zeros((1, 6)), Q_PIDS[:1], G_PIDS, Q_CAMS[:1], G_CAMS)


# ---------------------------------------------------------------------------------------------
# Clustering metrics.
# ---------------------------------------------------------------------------------------------
labelings = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.lists(st.integers(-3, 7), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_nmi_matches_sklearn_geometric(pair):
    truth, pred = np.array(pair[0]), np.array(pair[1])
    expected = normalized_mutual_info_score(truth, pred, average_method="geometric")
    assert nmi(truth, pred) == pytest.approx(expected, abs=1e-10)


def test_nmi_uses_the_geometric_mean():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    geometric = normalized_mutual_info_score(truth, pred, average_method="geometric")
    arithmetic = normalized_mutual_info_score(truth, pred, average_method="arithmetic")
    assert abs(geometric - arithmetic) > 1e-3
    assert nmi(truth, pred) == pytest.approx(geometric)


def test_nmi_edge_cases():
    assert nmi([3, 3, 3], [7, 7, 7]) == 1.0
    assert nmi([0, 0, 0, 0], [0, 1, 2, 3]) == 0.0
    assert nmi([0, 1, 2, 3], [5, 5, 5, 5]) == 0.0
    assert nmi([0, 0, 1, 1], [9, 9, 4, 4]) == pytest.approx(1.0)
    assert isinstance(nmi(np.array([0, 1]), np.array([0, 1])), float)


def test_nmi_accepts_tensors():
    truth, pred = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 1, 1, 0, 0])
    assert nmi(truth, pred) == pytest.approx(nmi(truth.numpy(), pred.numpy()))


def _brute_pairwise(truth, pred):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(truth)), 2):
        same_true, same_pred = truth[i] == truth[j], pred[i] == pred[j]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f


def _brute_bcubed(truth, pred):
    n = len(truth)
    precision = recall = 0.0
    for i in range(n):
        same_pred = [j for j in range(n) if pred[j] == pred[i]]
        same_true = [j for j in range(n) if truth[j] == truth[i]]
        both = sum(truth[j] == truth[i] for j in same_pred)
        precision += both / len(same_pred)
        recall += both / len(same_true)
    precision, recall = precision / n, recall / n
    return precision, recall, 2 * precision * recall / (precision + recall)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_pairwise_fscore_matches_brute_force(pair):
    truth, pred = pair
    assert pairwise_fscore(truth, pred) == pytest.approx(_brute_pairwise(truth, pred), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labelings)
def test_bcubed_fscore_matches_brute_force(pair):
    truth, pred = pair
    assert bcubed_fscore(truth, pred) == pytest.approx(_brute_bcubed(truth, pred), abs=1e-12)


def test_pairwise_fscore_hand_example():
    # truth {0,1,2} {3,4}; pred {0,1} {2,3,4}. Predicted pairs: (0,1) (2,3) (2,4) (3,4) -> 4;
    # true pairs: (0,1) (0,2) (1,2) (3,4) -> 4; both: (0,1) (3,4) -> 2. P = R = F = 1/2.
    assert pairwise_fscore([0, 0, 0, 1, 1], [5, 5, 6, 6, 6]) == pytest.approx((0.5, 0.5, 0.5))


def test_bcubed_fscore_hand_example():
    # Same labelings. Per item precision: 1, 1, 1/3, 2/3, 2/3 -> 11/15;
    # recall: 2/3, 2/3, 1/3, 1, 1 -> 11/15.
    assert bcubed_fscore([0, 0, 0, 1, 1], [5, 5, 6, 6, 6]) == pytest.approx((11 / 15, 11 / 15, 11 / 15))


def test_pairwise_fscore_all_singletons():
    assert pairwise_fscore([0, 0, 1], [0, 1, 2]) == (1.0, 0.0, 0.0)
    assert pairwise_fscore([0, 1, 2], [0, 1, 2]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_length_mismatch(metric):
    with pytest.raises(ValueError, match="labels_true and labels_pred should have the same length"):
        metric([0, 1, 1], [0, 1])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_empty_input(metric):
    with pytest.raises(ValueError, match="labels_true should not be empty"):
        metric([], [])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_2d_labels(metric):
    with pytest.raises(ValueError, match="labels_pred should be 1-D"):
        metric([0, 1], [[0, 1]])


@pytest.mark.parametrize("metric", [nmi, pairwise_fscore, bcubed_fscore])
def test_clustering_metric_rejects_float_labels(metric):
    with pytest.raises(TypeError, match="labels_true should hold integers"):
        metric([0.5, 1.0], [0, 1])
