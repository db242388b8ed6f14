"""hdml_ext.data.features: .npy features with .npy or text labels."""

from __future__ import annotations

import numpy as np
import pytest

from hdml_ext.data import read_features, read_labels


@pytest.fixture
def feats(tmp_path):
    features = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    return features


def test_npy_labels(tmp_path, feats):
    np.save(tmp_path / "l.npy", np.array([0, 1, 1, 2, 0]))
    data = read_features(tmp_path / "f.npy", tmp_path / "l.npy")
    np.testing.assert_array_equal(data.features, feats)
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [0, 1, 1, 2, 0]


def test_text_labels_and_mmap(tmp_path, feats):
    (tmp_path / "l.txt").write_text("4\n3\n\n2\n1\n0\n")
    data = read_features(tmp_path / "f.npy", tmp_path / "l.txt", mmap=True)
    assert isinstance(data.features, np.memmap)
    np.testing.assert_array_equal(np.asarray(data.features), feats)
    assert data.labels.tolist() == [4, 3, 2, 1, 0]


def test_features_without_labels(tmp_path, feats):
    assert read_features(tmp_path / "f.npy").labels is None


def test_rejects_count_mismatch(tmp_path, feats):
    np.save(tmp_path / "l.npy", np.arange(4))
    with pytest.raises(ValueError, match=r"same count: .* holds 5 rows, .* holds 4 labels"):
        read_features(tmp_path / "f.npy", tmp_path / "l.npy")


def test_rejects_1d_features(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="should hold a 2-D"):
        read_features(tmp_path / "f.npy")


def test_rejects_integer_features(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="should hold floats"):
        read_features(tmp_path / "f.npy")


def test_rejects_missing_features_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="features: expected the file"):
        read_features(tmp_path / "none.npy")


def test_rejects_missing_labels_file(tmp_path, feats):
    with pytest.raises(FileNotFoundError, match="labels: expected the file"):
        read_features(tmp_path / "f.npy", tmp_path / "none.txt")


def test_rejects_non_integer_text_labels(tmp_path):
    (tmp_path / "l.txt").write_text("1\nseven\n")
    with pytest.raises(ValueError, match="should hold one integer a line"):
        read_labels(tmp_path / "l.txt")


def test_rejects_fractional_npy_labels(tmp_path):
    np.save(tmp_path / "l.npy", np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="should hold integers"):
        read_labels(tmp_path / "l.npy")


def test_rejects_2d_labels(tmp_path):
    np.save(tmp_path / "l.npy", np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="1-D array"):
        read_labels(tmp_path / "l.npy")
