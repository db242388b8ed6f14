"""engine.embed: a data set's embeddings with ids, labels and cameras, written as .npy or as a
learn-to-cluster .bin + .meta pair that the feature readers give back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.data import DataSplit, ImageDataset, read_bin_meta, read_features
from hdml_ext.engine.embed import EmbeddedRows, embed_dataset, row_ids, write_embeddings
from hdml_ext.nn import HDMLOnFeatures


def _embedded(n: int = 7, d: int = 5, labels: bool = True) -> EmbeddedRows:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(n, d, generator=gen)
    return EmbeddedRows(
        features, [f"img{i}.jpg" for i in range(n)],
        torch.arange(n) % 3 - 1 if labels else None, torch.arange(n) % 2 if labels else None,
    )  # fmt: skip


def test_npy_files_read_back_unchanged(tmp_path):
    embedded = _embedded()
    written = write_embeddings(embedded, tmp_path / "out", fmt="npy")
    assert sorted(p.name for p in written) == ["camids.npy", "features.npy", "ids.txt", "labels.npy"]
    found = read_features(tmp_path / "out" / "features.npy", tmp_path / "out" / "labels.npy")
    assert found.features.dtype == np.float32
    assert np.array_equal(found.features, embedded.features.numpy())
    assert np.array_equal(found.labels, embedded.labels.numpy())
    assert np.array_equal(np.load(tmp_path / "out" / "camids.npy"), embedded.camids.numpy())
    assert (tmp_path / "out" / "ids.txt").read_text().splitlines() == embedded.ids


def test_bin_and_meta_read_back_unchanged(tmp_path):
    embedded = _embedded()
    written = write_embeddings(embedded, tmp_path, fmt="bin")
    assert {p.name for p in written} >= {"features.bin", "features.meta", "ids.txt"}
    found = read_bin_meta(tmp_path / "features.bin", tmp_path / "features.meta", dim=5)
    assert np.array_equal(found.features, embedded.features.numpy())
    assert np.array_equal(found.labels, embedded.labels.numpy())  # -1 labels survive the text file


def test_unknown_labels_write_no_label_files(tmp_path):
    written = write_embeddings(_embedded(labels=False), tmp_path, fmt="bin")
    assert sorted(p.name for p in written) == ["features.bin", "ids.txt"]


def test_rejects_an_unknown_format_and_mismatched_ids(tmp_path):
    with pytest.raises(ValueError, match="fmt should be one of npy, bin, got 'npz'"):
        write_embeddings(_embedded(), tmp_path, fmt="npz")
    bad = EmbeddedRows(torch.zeros(3, 2), ["a", "b"], None, None)
    with pytest.raises(ValueError, match=r"ids should hold one entry per feature row \(3\), got 2"):
        write_embeddings(bad, tmp_path)


def test_row_ids_are_image_paths_or_row_numbers():
    dataset = ImageDataset(["a/1.jpg", "b/2.jpg"], [0, 1], size=(8, 4))
    assert row_ids(DataSplit(dataset, torch.tensor([0, 1]))) == ["a/1.jpg", "b/2.jpg"]
    assert row_ids(DataSplit(torch.zeros(3, 4), None)) == ["0", "1", "2"]


def test_embed_dataset_of_a_features_model_keeps_the_features_and_their_labels():
    features = torch.randn(9, 4)
    rows = DataSplit(features, torch.arange(9) // 3)
    embedded = embed_dataset(HDMLOnFeatures(4, k=2, gcn_dims=(8,)), rows, batch_size=4)
    assert torch.equal(embedded.features, features)
    assert torch.equal(embedded.labels, rows.labels) and embedded.camids is None
    assert embedded.ids == [str(i) for i in range(9)]
