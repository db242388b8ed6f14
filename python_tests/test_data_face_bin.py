"""hdml_ext.data.face_bin: the learn-to-cluster .bin + .meta pair."""

from __future__ import annotations

import numpy as np
import pytest

from hdml_ext.data import read_bin_meta


@pytest.fixture
def pair(tmp_path):
    features = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    features.tofile(tmp_path / "x.bin")
    (tmp_path / "x.meta").write_text("".join(f"{label}\n" for label in [3, 3, 1, 0, 1, 2]))
    return features


@pytest.mark.parametrize("mmap", [False, True])
def test_reads_features_and_labels(tmp_path, pair, mmap):
    data = read_bin_meta(tmp_path / "x.bin", tmp_path / "x.meta", dim=4, mmap=mmap)
    assert data.features.shape == (6, 4) and data.features.dtype == np.float32
    assert isinstance(data.features, np.memmap) == mmap
    np.testing.assert_array_equal(np.asarray(data.features), pair)
    assert data.labels.tolist() == [3, 3, 1, 0, 1, 2]


def test_features_only(tmp_path, pair):
    assert read_bin_meta(tmp_path / "x.bin", None, dim=4).labels is None


def test_empty_pair(tmp_path):
    (tmp_path / "e.bin").write_bytes(b"")
    (tmp_path / "e.meta").write_text("")
    data = read_bin_meta(tmp_path / "e.bin", tmp_path / "e.meta", dim=8, mmap=True)
    assert data.features.shape == (0, 8) and data.labels.shape == (0,)


def test_rejects_size_not_divisible_by_dim(tmp_path, pair):
    with pytest.raises(ValueError, match=r"96 bytes\) is not divisible by dim \* itemsize = 5 \* 4"):
        read_bin_meta(tmp_path / "x.bin", tmp_path / "x.meta", dim=5)


def test_rejects_label_count_mismatch(tmp_path, pair):
    with pytest.raises(ValueError, match=r"holds 3 rows of dim 8, .* holds 6 labels"):
        read_bin_meta(tmp_path / "x.bin", tmp_path / "x.meta", dim=8)


def test_rejects_non_positive_dim(tmp_path, pair):
    with pytest.raises(ValueError, match="dim should be >= 1"):
        read_bin_meta(tmp_path / "x.bin", tmp_path / "x.meta", dim=0)


def test_rejects_missing_bin(tmp_path):
    with pytest.raises(FileNotFoundError, match="features: expected the file"):
        read_bin_meta(tmp_path / "none.bin", None, dim=4)


def test_rejects_malformed_meta(tmp_path, pair):
    (tmp_path / "bad.meta").write_text("1 2\n3 4\n5 6\n")
    with pytest.raises(ValueError, match="1-D array"):
        read_bin_meta(tmp_path / "x.bin", tmp_path / "bad.meta", dim=4)
