"""hdml_ext.metrics ranking: hand-computed rankings, a per-query loop reference, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.metrics import rank_metrics, rank_metrics_from_blocks, rank_metrics_from_order, ranking

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
# INP: A 2 matches / last at rank 4 = 1/2, B 1/3 -> mINP = 5/12 (as mAP, by coincidence).
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
    assert result["mINP"] == pytest.approx(5 / 12)
    assert isinstance(result["mINP"], float)
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


def test_minp_hand_example():
    # Gallery pids 1 1 2 2 1, all camera 1; both queries camera 0, so nothing is removed.
    # Query pid 1, ranking g0 g2 g1 g3 g4: matches at ranks 1, 3, 5 -> INP 3/5,
    #   AP (1/1 + 2/3 + 3/5) / 3.
    # Query pid 2, ranking g2 g3 g0 g1 g4: matches at ranks 1, 2 -> INP 2/2 = 1, AP 1.
    order = np.array([[0, 2, 1, 3, 4], [2, 3, 0, 1, 4]])
    result = rank_metrics_from_order(order, [1, 2], [1, 1, 2, 2, 1], [0, 0], [1] * 5, max_rank=5)
    assert result["mINP"] == pytest.approx((3 / 5 + 1) / 2)
    assert result["mAP"] == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + 1) / 2)


def test_minp_counts_ranks_after_removing_same_camera_and_junk():
    # Ranking g0 g1 g2 g3: g0 junk, g1 the query's pid by the query's camera (removed), g2 a
    # different pid, g3 the last true match -> kept ranking g2 g3, INP = 1/2 (not 1/4).
    result = rank_metrics_from_order([[0, 1, 2, 3]], [5], [-1, 5, 6, 5], [0], [1, 0, 1, 1], max_rank=2)
    assert result["mINP"] == pytest.approx(0.5)


def _reference_rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Loop per query, as torchreid's / fast-reid's eval_market1501 do (mINP as fast-reid)."""
    aps, cmcs, inps = [], [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        remove = ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])) | (g_pids[order] == -1)
        raw = (g_pids[order] == q_pids[q])[~remove].astype(np.float64)
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.nonzero(raw)[0].max()
        inps.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        cmc = np.concatenate([cmc, np.ones(max_rank)])[:max_rank]
        cmcs.append(cmc)
        precision = raw.cumsum() / np.arange(1, raw.size + 1)
        aps.append((precision * raw).sum() / raw.sum())
    return float(np.mean(aps)), np.mean(cmcs, axis=0), float(np.mean(inps)), len(aps)


@pytest.mark.parametrize("seed", range(4))
def test_rank_metrics_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = 23, 57
    distmat = rng.integers(0, 10, size=(num_q, num_g)).astype(np.float32)  # many ties
    q_pids, g_pids = rng.integers(0, 6, num_q), rng.integers(-1, 6, num_g)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    m_ap, cmc, m_inp, valid = _reference_rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, 10)
    result = rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    assert result["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert result["mINP"] == pytest.approx(m_inp, abs=1e-12)
    np.testing.assert_allclose(result["cmc"], cmc, atol=1e-12)
    assert result["num_valid_queries"] == valid


def test_rank_metrics_blocks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(5)
    distmat = rng.random((40, 30))
    ids = rng.integers(0, 4, 40), rng.integers(0, 4, 30), rng.integers(0, 2, 40), rng.integers(0, 2, 30)
    whole = rank_metrics(distmat, *ids, max_rank=10)
    monkeypatch.setattr(ranking, "BLOCK_ENTRIES", 64)  # 2 queries per block
    blocked = rank_metrics(distmat, *ids, max_rank=10)
    assert blocked["mAP"] == pytest.approx(whole["mAP"], abs=1e-15)
    assert blocked["mINP"] == pytest.approx(whole["mINP"], abs=1e-15)
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
    assert got["mINP"] == pytest.approx(whole["mINP"])
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
