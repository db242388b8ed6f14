"""open_dataset: one dispatch over the data set kinds, errors naming the argument at fault."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.data import DatasetError, DataSettings, open_dataset


def test_features_are_relabelled_for_training_and_kept_for_clustering(tmp_path):
    features = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "y.npy", np.array([7, 3, 7, 9]))
    data = open_dataset("features", tmp_path / "f.npy", DataSettings(), labels=tmp_path / "y.npy")
    assert data.input_kind == "features" and data.query is None and data.num_classes == 3
    assert data.train.rows.dtype == torch.float32 and data.train.rows.shape == (4, 3)
    assert data.train.labels.tolist() == [1, 0, 1, 2] and data.held_out.labels.tolist() == [7, 3, 7, 9]
    unlabelled = open_dataset("features", tmp_path / "f.npy", DataSettings())
    assert unlabelled.train.labels is None and unlabelled.num_classes == 0


def test_digits_splits():
    data = open_dataset("digits", None, DataSettings(height=8, width=8, train_fraction=0.1))
    assert data.input_kind == "images" and data.num_classes == 10
    assert data.train.rows.shape[1:] == (3, 8, 8)
    assert len(data.held_out.labels) == len(data.query.labels) + len(data.gallery.labels)
    assert data.query.camids is not None and data.gallery.camids is not None


@pytest.mark.parametrize(
    ("kind", "root", "extra", "argument", "message"),
    [
        ("market1501", "nope", {}, "root", "folder 'nope' does not exist"),
        ("image-folder", None, {}, "root", "is required"),
        ("features", "f.npy", {"labels": "none.npy"}, "labels", "does not exist"),
        ("bin", "f.npy", {"dim": 0}, "dim", "positive feature width"),
        ("imagenet", None, {}, "dataset", "unknown kind 'imagenet'"),
    ],
)
def test_errors_name_the_argument(tmp_path, monkeypatch, kind, root, extra, argument, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(DatasetError, match=message) as info:
        open_dataset(kind, root, DataSettings(), **extra)
    assert info.value.argument == argument


def test_digit_instances_splits_are_open_set():
    data = open_dataset("digit-instances", None, DataSettings(height=8, width=8, max_identities=30))
    assert data.input_kind == "images" and data.train.rows.shape[1:] == (3, 8, 8)
    assert torch.equal(torch.unique(data.train.labels), torch.arange(data.num_classes))
    test_ids = set(data.query.labels.tolist()) | set(data.gallery.labels.tolist())
    assert set(data.query.labels.tolist()) <= set(data.gallery.labels.tolist())
    assert data.num_classes + len(test_ids) == 30
    assert data.held_out.labels.numel() == data.query.labels.numel() + data.gallery.labels.numel()
    with pytest.raises(DatasetError, match="digit-instances data set is embedded and takes no --root"):
        open_dataset("digit-instances", "/tmp", DataSettings(max_identities=30))
