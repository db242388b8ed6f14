"""hdml_ext.data.digits: the embedded scikit-learn digits split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.data import load_digits_features, load_digits_reid


def test_split_is_deterministic_and_seeded():
    a, b = load_digits_reid(seed=3), load_digits_reid(seed=3)
    for name in ("train", "query", "gallery"):
        torch.testing.assert_close(getattr(a, name).indices, getattr(b, name).indices)
        torch.testing.assert_close(getattr(a, name).camids, getattr(b, name).camids)
        torch.testing.assert_close(getattr(a, name).images, getattr(b, name).images)
    c = load_digits_reid(seed=4)
    assert not torch.equal(a.query.indices, c.query.indices)


def test_split_partitions_the_data_per_class():
    splits = load_digits_reid(train_fraction=0.5, query_fraction=0.2)
    parts = [splits.train.indices, splits.query.indices, splits.gallery.indices]
    every = torch.cat(parts).sort().values
    torch.testing.assert_close(every, torch.arange(1797))
    assert splits.num_train_classes == 10
    for split in (splits.train, splits.query, splits.gallery):
        assert torch.equal(split.indices, split.indices.sort().values)
        assert set(split.labels.tolist()) == set(range(10))
    assert abs(len(splits.train) - 1797 / 2) < 10
    assert abs(len(splits.query) - 0.2 * (1797 - len(splits.train))) < 10


def test_labels_match_the_source_digits():
    splits = load_digits_reid()
    source = load_digits_features()
    for split in (splits.train, splits.query, splits.gallery):
        np.testing.assert_array_equal(split.labels.numpy(), source.labels[split.indices.numpy()])


def test_camera_ids_are_random_and_in_range():
    splits = load_digits_reid(num_cameras=6, seed=0)
    camids = torch.cat([splits.train.camids, splits.query.camids, splits.gallery.camids])
    assert camids.min() == 0 and camids.max() == 5
    counts = torch.bincount(camids, minlength=6)
    assert counts.min() > 200  # ~300 each: uniform, not all the same camera
    # Some query has a same-pid, same-camera gallery entry, so the same-camera rule matters.
    q, g = splits.query, splits.gallery
    same = (q.labels[:, None] == g.labels[None]) & (q.camids[:, None] == g.camids[None])
    assert same.any()


def test_image_shape_and_values():
    splits = load_digits_reid(height=64, width=32, normalize=False)
    images = splits.train.images
    assert images.shape == (len(splits.train), 3, 64, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images[:, 0], images[:, 2])
    normalised = load_digits_reid(height=64, width=32).train.images
    assert normalised.min() < -1.5  # ImageNet normalisation of zero pixels


def test_disjoint_classes():
    splits = load_digits_reid(disjoint_classes=True, train_fraction=0.6, seed=1)
    train_digits = set(load_digits_features().labels[splits.train.indices.numpy()].tolist())
    eval_digits = set(splits.query.labels.tolist()) | set(splits.gallery.labels.tolist())
    assert len(train_digits) == 6 and len(eval_digits) == 4
    assert not train_digits & eval_digits
    assert splits.train.labels.unique().tolist() == list(range(6))
    assert splits.num_train_classes == 6


def test_digit_features():
    data = load_digits_features()
    assert data.features.shape == (1797, 64) and data.features.dtype == np.float32
    assert data.labels.shape == (1797,)


def test_rejects_bad_fraction():
    with pytest.raises(ValueError, match="train_fraction should be a number strictly between 0 and 1"):
        load_digits_reid(train_fraction=1.0)


def test_rejects_bad_size():
    with pytest.raises(ValueError, match="height should be >= 1"):
        load_digits_reid(height=0)


def test_rejects_bad_num_cameras():
    with pytest.raises(TypeError, match="num_cameras should be an int"):
        load_digits_reid(num_cameras=2.0)
