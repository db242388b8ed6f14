"""kNN tables at scale (hdml_ext.graph.build_fgraphs): backends against exact kNN, streamed
memmap input, save/load and cache, on-demand F-Graphs, auto's choice by estimated cost and
target_recall, input errors."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import pytest
import torch

from hdml_ext import ops
from hdml_ext.graph import KNN_BACKENDS, FGraphs, build_fgraphs, exact_knn_rows, faiss_backends, fgraph_nodes
from hdml_ext.graph import auto as auto_module
from hdml_ext.graph import build as build_module
from hdml_ext.graph import ivf as ivf_module

K = 10
RECALL_FLOOR = {"exact": 1.0, "ivf": 0.9, "faiss-flat": 1.0, "faiss-ivf": 0.9, "faiss-hnsw": 0.9}


def _clustered(num_rows: int = 2000, dim: int = 16, num_clusters: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_clusters, dim)).astype(np.float32)
    labels = rng.integers(0, num_clusters, num_rows)
    return centers[labels] + 0.3 * rng.standard_normal((num_rows, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return _clustered()


@pytest.fixture(scope="module")
def exact(points):
    dist, idx = ops.knn(torch.from_numpy(points), K)
    return dist, idx


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found.numpy(), truth.numpy()))
    return hits / truth.numel()


@pytest.mark.parametrize("backend", ["exact", "ivf", "faiss-flat", "faiss-ivf", "faiss-hnsw"])
def test_backend_agrees_with_exact_knn(points, exact, backend):
    graphs = build_fgraphs(points, K, backend=backend, block_size=700)
    assert graphs.backend == backend
    assert graphs.knn_idx.shape == (points.shape[0], K) and graphs.knn_idx.dtype == torch.int64
    assert graphs.knn_dist.shape == (points.shape[0], K) and graphs.knn_dist.dtype == torch.float32
    ids = torch.arange(points.shape[0])[:, None]
    assert not (graphs.knn_idx == ids).any(), "self must be excluded"
    assert ((graphs.knn_idx >= 0) & (graphs.knn_idx < points.shape[0])).all()
    assert (graphs.knn_dist[:, 1:] >= graphs.knn_dist[:, :-1]).all(), "nearest first"
    # Distances are Euclidean (not squared), like ops.knn, whatever the backend.
    true_dist = torch.from_numpy(points)[graphs.knn_idx].sub(torch.from_numpy(points)[:, None]).norm(dim=-1)
    torch.testing.assert_close(graphs.knn_dist, true_dist, atol=1e-4, rtol=1e-4)
    assert _recall(graphs.knn_idx, exact[1]) >= RECALL_FLOOR[backend]
    if backend in ("exact", "faiss-flat"):
        assert torch.equal(graphs.knn_idx, exact[1])


def test_exact_ties_put_the_smaller_index_first():
    points = np.repeat(np.arange(6, dtype=np.float32)[:, None], 2, axis=0).repeat(3, axis=1)  # pairs
    for source in (points, torch.from_numpy(points)):
        graphs = build_fgraphs(source, 3, backend="exact")
        assert torch.equal(graphs.knn_idx, ops.knn(torch.from_numpy(points), 3)[1])
    # Duplicates: faiss may not return the query first; its own id is the one dropped.
    flat = build_fgraphs(points, 3, backend="faiss-flat")
    assert torch.equal(flat.knn_idx, ops.knn(torch.from_numpy(points), 3)[1])


@pytest.mark.parametrize("backend", ["exact", "ivf", "faiss-ivf"])  # every faiss backend reads blocks alike
def test_memmap_input_gives_the_in_memory_tables(points, backend, tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, points)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    streamed = build_fgraphs(mapped, K, backend=backend, block_size=512)
    in_memory = build_fgraphs(points, K, backend=backend, block_size=512)
    assert torch.equal(streamed.knn_idx, in_memory.knn_idx)
    torch.testing.assert_close(streamed.knn_dist, in_memory.knn_dist)


def test_raw_memmap_with_shape(points, tmp_path):
    path = tmp_path / "features.f32"
    raw = np.memmap(path, dtype=np.float32, mode="w+", shape=points.shape)
    raw[:] = points
    raw.flush()
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=points.shape)
    graphs = build_fgraphs(mapped, K, backend="exact", block_size=1000)
    assert torch.equal(graphs.knn_idx, ops.knn(torch.from_numpy(points), K)[1])


def test_exact_knn_rows_matches_the_op(points, exact):
    ids = np.array([1999, 0, 17, 1500])
    dist, idx = exact_knn_rows(points, ids, K, block_size=333)
    assert np.array_equal(idx, exact[1][ids].numpy())
    np.testing.assert_allclose(dist, exact[0][ids].numpy(), rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_in_the_learn_to_cluster_layout(points, tmp_path):
    graphs = build_fgraphs(points, K, backend="exact")
    path = tmp_path / "knn.npz"
    graphs.save(path)
    with np.load(path) as npz:
        data = npz["data"]
        assert data.shape == (points.shape[0], 2, K)
        assert np.array_equal(data[:, 0].astype(np.int64), graphs.knn_idx.numpy())
        assert np.array_equal(data[:, 1], graphs.knn_dist.numpy())
        assert str(npz["metric"]) == "euclidean"
        assert str(npz["format"]) == "hdml_ext.fgraphs/1"
    loaded = FGraphs.load(path)
    assert torch.equal(loaded.knn_idx, graphs.knn_idx)
    assert torch.equal(loaded.knn_dist, graphs.knn_dist)
    assert loaded.backend == "exact"
    sliced = FGraphs.load(path, k=4)
    assert torch.equal(sliced.knn_idx, graphs.knn_idx[:, :4])
    with pytest.raises(ValueError, match="k should be at most"):
        FGraphs.load(path, k=K + 1)


def test_cache_is_reused_sliced_or_recomputed(points, tmp_path, monkeypatch):
    path = tmp_path / "cache.npz"
    first = build_fgraphs(points, K, backend="exact", cache=path)
    assert path.is_file()
    calls = []
    original = build_module._TABLE_BUILDERS["exact"]
    monkeypatch.setitem(build_module._TABLE_BUILDERS, "exact", lambda *a: calls.append(1) or original(*a))
    again = build_fgraphs(points, K, backend="exact", cache=path)
    smaller = build_fgraphs(points, 4, backend="exact", cache=path)  # k' >= k: sliced
    assert calls == []
    assert torch.equal(again.knn_idx, first.knn_idx)
    assert torch.equal(smaller.knn_idx, first.knn_idx[:, :4])
    assert smaller.reason.startswith("loaded from cache")
    build_fgraphs(points, K + 2, backend="exact", cache=path)  # more columns needed: recompute
    build_fgraphs(points[:1500], 4, backend="exact", cache=path)  # other N: recompute
    assert calls == [1, 1]


def test_nodes_and_adjacency_match_the_ops(points):
    graphs = build_fgraphs(points, K, backend="exact")
    focus = torch.tensor([0, 5, 1999, 5])
    assert torch.equal(graphs.nodes(focus), fgraph_nodes(graphs.knn_idx, focus))
    assert torch.equal(graphs.adjacency(focus), ops.fgraph_adjacency(graphs.knn_idx, focus))
    assert torch.equal(graphs.adjacency(focus, symmetric=False),
                       ops.fgraph_adjacency(graphs.knn_idx, focus, symmetric=False))
    assert graphs.nodes().shape == (points.shape[0], K + 1)
    assert graphs.adjacency(focus).shape == (4, K + 1, K + 1)


def _above_the_floor(monkeypatch, exact_share: float = 0.5, probe_cost: float = auto_module.PROBE_COST
                     ) -> None:
    """Make "auto" estimate costs at 2,000 rows (as it does for large N), with lists of 20 rows
    as at large N (2,000 rows would make 8 lists of 12% of the rows each), exact's pairs scaled
    by `exact_share` and the centroid search's cost by `probe_cost`: the way to make ivf the
    cheaper (or the dearer) candidate."""
    monkeypatch.setattr(auto_module, "EXACT_MAX_WORK", 1000)  # pretend N is large
    monkeypatch.setattr(auto_module, "SELF_JOIN_SHARE", exact_share)
    monkeypatch.setattr(auto_module, "PROBE_COST", probe_cost)
    monkeypatch.setattr(ivf_module, "ivf_nlist", lambda n: n // 20)


def test_auto_takes_exact_unprobed_below_the_floor(points, caplog, monkeypatch):
    monkeypatch.setattr(ivf_module.IVFJoin, "train", lambda *args: pytest.fail("estimated"))
    with caplog.at_level(logging.INFO, logger="hdml_ext.graph.build"):
        small = build_fgraphs(points, K)
    assert small.backend == "exact"
    assert small.params == {"sample_recall": 1.0, "auto": {"work": 2000**2 * 16, "exact_limit": 2**37}}
    assert small.reason.startswith("auto:") and "exact" in small.reason
    assert any("exact" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("target", [0.9, 0.99])
def test_auto_takes_ivf_where_cheaper_at_the_target_recall(points, exact, monkeypatch, target):
    _above_the_floor(monkeypatch, exact_share=1e3)
    graphs = build_fgraphs(points, K, target_recall=target)
    assert graphs.backend == "ivf"
    assert graphs.reason.startswith("auto: N^2 D = 6.4e+07 > 1e+03 (exact limit on CPU); row pairs compared: "
                                    "exact 4e+09, ivf")
    assert "approximate" in graphs.reason and f"target_recall {target:g}" in graphs.reason
    assert graphs.params["sample_recall"] >= target and graphs.params["nprobe"] < graphs.params["nlist"]
    estimate = graphs.params["auto"]
    assert estimate["exact_pairs"] == 4e9 and estimate["ivf_pairs"] < 4e9
    assert estimate["target_recall"] == target
    assert estimate["ivf_sample_recall"] == graphs.params["sample_recall"]
    assert _recall(graphs.knn_idx, exact[1]) >= target - 0.05
    # The join auto trained is the one run: the same tables as asking for ivf (same lists).
    asked = build_fgraphs(points, K, backend="ivf", target_recall=target)
    assert torch.equal(graphs.knn_idx, asked.knn_idx)


def test_auto_choice_does_not_depend_on_the_clock(points, monkeypatch):
    # Before, "auto" timed exact on a sample and k-means, so machine load could flip the choice
    # (and the labels of hdml cluster); now the same inputs give the same choice and estimate.
    _above_the_floor(monkeypatch, exact_share=1e3)
    choices = []
    for tick in (1e-9, 1e6):
        clock = itertools.count(0.0, tick)
        monkeypatch.setattr(time, "perf_counter", lambda clock=clock: next(clock))
        graphs = build_fgraphs(points, K)
        choices.append((graphs.backend, graphs.reason, graphs.params["auto"]))
    assert choices[0] == choices[1] and choices[0][0] == "ivf"


def test_auto_falls_back_to_exact_on_unclustered_data(monkeypatch):
    # i.i.d. Gaussian rows: for recall 0.95 each row must probe lists holding over
    # MAX_SCAN_SHARE of the rows, so exact wins even when costed a thousand times higher, and no
    # row is searched by ivf.
    unclustered = np.random.default_rng(1).standard_normal((4000, 32)).astype(np.float32)
    _above_the_floor(monkeypatch, exact_share=1e3)
    monkeypatch.setattr(ivf_module.IVFJoin, "tables", lambda *args: pytest.fail("searched"))
    graphs = build_fgraphs(unclustered, K)
    assert graphs.backend == "exact" and graphs.params["sample_recall"] == 1.0
    assert graphs.params["auto"]["scan_share"] > auto_module.MAX_SCAN_SHARE
    assert "ivf reaches target_recall 0.95 only scanning more than 10% of the rows" in graphs.reason
    assert graphs.reason.startswith("auto: N^2 D = 5.12e+08 > 1e+03") and graphs.reason.endswith(": exact")
    assert torch.equal(graphs.knn_idx, ops.knn(torch.from_numpy(unclustered), K)[1])


def test_auto_takes_exact_where_ivf_is_no_cheaper(points, monkeypatch):
    _above_the_floor(monkeypatch, probe_cost=1e3)
    monkeypatch.setattr(ivf_module.IVFJoin, "tables", lambda *args: pytest.fail("searched"))
    graphs = build_fgraphs(points, K)
    assert graphs.backend == "exact"
    assert "ivf at target_recall 0.95 is no cheaper: exact" in graphs.reason
    assert graphs.params["auto"]["ivf_pairs"] >= graphs.params["auto"]["exact_pairs"]


def test_ivf_recall_on_the_sample_is_what_it_chose(points, exact):
    # The join is exact within the probed lists, so the sample's recall is known before the
    # search: the tables' recall on the sampled rows equals it.
    for target in (0.5, 0.8, 0.97):
        graphs = build_fgraphs(points, K, backend="ivf", target_recall=target)
        sample = ivf_module.ivf_sample_ids(points.shape[0])
        measured = _recall(graphs.knn_idx[sample], exact[1][sample])
        assert measured == pytest.approx(graphs.params["sample_recall"], abs=1e-4)  # params: 4 decimals
        assert measured >= target
    assert build_fgraphs(points, K, backend="ivf", target_recall=1.0).params["sample_recall"] == 1.0


def test_ivf_shows_its_steps_with_progress(points, capsys):
    graphs = build_fgraphs(points, K, backend="ivf", progress=True)
    err = capsys.readouterr().err
    assert "ivf: k-means" in err and "ivf: join of 2,000 rows" in err
    assert torch.equal(graphs.knn_idx, build_fgraphs(points, K, backend="ivf").knn_idx)


def test_ivf_rows_short_of_neighbours_are_repaired(points, exact, monkeypatch):
    monkeypatch.setattr(ivf_module, "ivf_nlist", lambda n: 400)  # lists of ~5 rows, k = 10
    graphs = build_fgraphs(points, K, backend="ivf", target_recall=0.01)
    assert graphs.params["nprobe"] == 1 and graphs.params["repaired_rows"] > 0
    assert ((graphs.knn_idx >= 0) & (graphs.knn_idx < points.shape[0])).all()
    assert not (graphs.knn_idx == torch.arange(points.shape[0])[:, None]).any()
    repaired = (graphs.knn_dist == exact[0]).all(dim=1)
    assert repaired.sum() >= graphs.params["repaired_rows"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_ivf_reads_cuda_rows(points, exact):
    graphs = build_fgraphs(torch.from_numpy(points).cuda(), K, backend="ivf", target_recall=0.99)
    assert "copied to the host" in graphs.reason
    assert _recall(graphs.knn_idx, exact[1]) >= 0.94


def test_faiss_uses_torch_thread_count(points, monkeypatch):
    import faiss

    seen = []
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: seen.append(n))
    build_fgraphs(points[:500], 3, backend="faiss-flat")
    assert seen == [torch.get_num_threads()]


def test_bad_inputs_name_the_argument(points, tmp_path):
    with pytest.raises(ValueError, match="k should be at most N - 1"):
        build_fgraphs(points[:5], 5)
    with pytest.raises(ValueError, match="k should be >= 1"):
        build_fgraphs(points, 0)
    with pytest.raises(TypeError, match="k should be an int"):
        build_fgraphs(points, 2.0)
    with pytest.raises(TypeError, match="floating-point dtype, got int64"):
        build_fgraphs(np.arange(20, dtype=np.int64).reshape(10, 2), 2)
    with pytest.raises(TypeError, match=r"floating-point dtype, got torch\.int32"):
        build_fgraphs(torch.zeros(10, 2, dtype=torch.int32), 2)
    with pytest.raises(ValueError, match="features should be 2-D"):
        build_fgraphs(points[0], 2)
    with pytest.raises(TypeError, match=r"features should be a torch\.Tensor"):
        build_fgraphs(points.tolist(), 2)
    raw = tmp_path / "raw.f32"
    points[:100].tofile(raw)
    with pytest.raises(ValueError, match="memmap opened without shape"):
        build_fgraphs(np.memmap(raw, dtype=np.float32, mode="r"), 2)
    with pytest.raises(ValueError, match="backend should be one of"):
        build_fgraphs(points, 2, backend="annoy")
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"target_recall should be a number in \(0, 1\], got"):
            build_fgraphs(points, 2, target_recall=bad)
    with pytest.raises(TypeError, match="target_recall should be a float, got str"):
        build_fgraphs(points, 2, target_recall="0.9")
    with pytest.raises(TypeError, match="block_size should be an int"):
        build_fgraphs(points, 2, block_size=None)
    with pytest.raises(ValueError, match="N >= 2 rows"):
        build_fgraphs(points[:1], 1)
    assert set(KNN_BACKENDS) == {"auto", "exact", "ivf", "faiss-flat", "faiss-ivf", "faiss-hnsw"}


@pytest.mark.parametrize("backend", ["exact", "ivf", "faiss-flat", "faiss-ivf"])
def test_non_finite_rows_are_reported_with_their_row(points, backend, tmp_path):
    bad = points[:1200].copy()
    bad[1100, 3] = np.nan
    with pytest.raises(ValueError, match="features should be finite, got NaN or inf in row 1100"):
        build_fgraphs(bad, 3, backend=backend, block_size=500)
    path = tmp_path / "bad.npy"
    bad[1100, 3] = np.inf
    np.save(path, bad)
    with pytest.raises(ValueError, match="features should be finite"):
        build_fgraphs(np.load(path, mmap_mode="r"), 3, backend=backend, block_size=500)


def test_ivf_rows_short_of_neighbours_are_searched_again(points, exact, monkeypatch):
    # nprobe = 1: lists of ~20 rows run short
    graphs = build_fgraphs(points, K, backend="faiss-ivf", target_recall=0.01)
    assert graphs.params["nprobe"] == 1 and graphs.params["reprobed_rows"] > 0
    assert ((graphs.knn_idx >= 0) & (graphs.knn_idx < points.shape[0])).all()
    assert not (graphs.knn_idx == torch.arange(points.shape[0])[:, None]).any()
    assert _recall(graphs.knn_idx, exact[1]) >= 0.8
    monkeypatch.setattr(faiss_backends, "IVF_STORED_PROBES", 1)  # the exact fallback for what is left
    monkeypatch.setattr(faiss_backends, "_ivf_nlist", lambda n: 1000)  # lists of ~2 rows
    graphs = build_fgraphs(points, K, backend="faiss-ivf", target_recall=0.01)
    assert graphs.params["repaired_rows"] > 0
    assert ((graphs.knn_idx >= 0) & (graphs.knn_idx < points.shape[0])).all()
    assert not (graphs.knn_idx == torch.arange(points.shape[0])[:, None]).any()
