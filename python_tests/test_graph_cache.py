"""build_fgraphs(cache=...) safety (hdml_ext.graph.cache): reuse only for the same features,
rebuild a cache of other features or a damaged one, refuse (and never touch) anything else."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hdml_ext.graph import FGraphs, build_fgraphs
from hdml_ext.graph import build as build_module
from hdml_ext.graph.cache import fingerprint
from hdml_ext.graph.feature_blocks import FeatureBlocks

K = 4


def _points(seed: int = 0, num_rows: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((num_rows, 8)).astype(np.float32)


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Records every table build (the backend name), i.e. every cache miss."""
    calls: list[str] = []
    original = dict(build_module._TABLE_BUILDERS)
    for name, builder in original.items():
        monkeypatch.setitem(build_module._TABLE_BUILDERS, name,
                            lambda *a, _n=name, _b=builder: calls.append(_n) or _b(*a))
    return calls


def test_same_features_reuse_the_cache_whatever_their_container(tmp_path, builds):
    points = _points()
    path = tmp_path / "knn.npz"
    first = build_fgraphs(points, K, backend="exact", cache=path)
    again = build_fgraphs(torch.from_numpy(points.copy()), K, backend="exact", cache=path)
    assert builds == ["exact"]
    assert torch.equal(again.knn_idx, first.knn_idx) and again.reason.startswith("loaded from cache")


def test_other_features_of_the_same_shape_rebuild_the_cache(tmp_path, builds):
    path = tmp_path / "knn.npz"
    build_fgraphs(_points(0), K, backend="exact", cache=path)
    other = _points(1)
    rebuilt = build_fgraphs(other, K, backend="exact", cache=path)
    assert builds == ["exact", "exact"]
    assert torch.equal(rebuilt.knn_idx, build_fgraphs(other, K, backend="exact").knn_idx)
    assert FGraphs.load(path).params["fingerprint"] == fingerprint(FeatureBlocks(other))
    build_fgraphs(other.astype(np.float64), K, backend="exact", cache=path)  # another dtype
    assert len(builds) == 4


def test_one_changed_sampled_row_changes_the_fingerprint():
    points = _points()
    changed = points.copy()
    changed[-1, 0] += 1.0  # the last row is always sampled
    assert fingerprint(FeatureBlocks(points)) != fingerprint(FeatureBlocks(changed))
    assert fingerprint(FeatureBlocks(points)) == fingerprint(FeatureBlocks(torch.from_numpy(points)))


def test_a_damaged_cache_is_rebuilt(tmp_path, builds, caplog):
    points = _points()
    path = tmp_path / "knn.npz"
    fresh = build_fgraphs(points, K, backend="exact", cache=path)
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["data"][5, 0, 1] = np.nan  # an id that is no id
    np.savez(path, **arrays)
    with caplog.at_level(logging.WARNING, logger="hdml_ext.graph.cache"):
        again = build_fgraphs(points, K, backend="exact", cache=path)
    assert builds == ["exact", "exact"]
    assert any("damaged" in record.getMessage() for record in caplog.records)
    assert torch.equal(again.knn_idx, fresh.knn_idx)
    assert torch.equal(FGraphs.load(path).knn_idx, fresh.knn_idx)


def _refused(path, points, builds) -> None:
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ValueError, match=r"cache should be a path to a kNN cache written by build_fgraphs.*"
                                         r"left untouched"):
        build_fgraphs(points, K, backend="exact", cache=path)
    assert builds == []
    if before is not None:
        assert path.read_bytes() == before


def test_an_unrelated_npz_is_refused_and_kept(tmp_path, builds):
    path = tmp_path / "mydata.npz"
    np.savez(path, weights=np.arange(5.0))
    _refused(path, _points(), builds)


def test_an_npy_file_is_refused_and_kept(tmp_path, builds):
    path = tmp_path / "mydata.npy"
    np.save(path, np.arange(5.0))
    _refused(path, _points(), builds)


def test_random_bytes_and_a_folder_are_refused(tmp_path, builds):
    path = tmp_path / "notes.npz"
    path.write_bytes(b"my notes, not an archive")
    _refused(path, _points(), builds)
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    _refused(folder, _points(), builds)


def test_knn_files_that_are_not_caches_are_refused(tmp_path, builds):
    points = _points()
    graphs = build_fgraphs(points, K, backend="exact")
    builds.clear()
    saved = tmp_path / "saved.npz"
    graphs.save(saved)  # the format marker, but no fingerprint: a user's file, not a cache
    _refused(saved, points, builds)
    theirs = tmp_path / "learn_to_cluster.npz"  # the community's layout, no marker
    np.savez(theirs, data=np.stack([graphs.knn_idx.numpy(), graphs.knn_dist.numpy()], 1).astype(np.float32))
    _refused(theirs, points, builds)
