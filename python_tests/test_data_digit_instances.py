"""hdml_ext.data.digit_instances: the embedded open-set digit-instances Re-ID data set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.data import load_digit_instances_reid
from hdml_ext.data.digit_instances import CAMERA_STYLES, _generate, apply_camera_style

SMALL = {"max_identities": 60, "height": 16, "width": 16}


def _all(splits):
    return [splits.train, splits.query, splits.gallery]


def test_identities_are_disjoint_between_train_and_test():
    splits = load_digit_instances_reid(**SMALL, seed=1)
    train_ids = set(splits.train.indices.tolist())
    query_ids = set(splits.query.indices.tolist())
    gallery_ids = set(splits.gallery.indices.tolist())
    assert train_ids.isdisjoint(query_ids) and train_ids.isdisjoint(gallery_ids)
    assert query_ids == gallery_ids
    assert len(train_ids) + len(query_ids) == 60 and len(train_ids) == 30
    assert all(0 <= i < 1797 for i in train_ids | query_ids)


def test_labels_are_identities():
    splits = load_digit_instances_reid(**SMALL, seed=1)
    train = splits.train
    assert splits.num_train_classes == 30
    assert torch.equal(train.labels.unique(), torch.arange(30))
    # train labels rank the source rows; query and gallery labels are the source rows
    np.testing.assert_array_equal(
        train.labels.numpy(), np.searchsorted(np.unique(train.indices.numpy()), train.indices.numpy())
    )
    assert torch.equal(splits.query.labels, splits.query.indices)
    assert torch.equal(splits.gallery.labels, splits.gallery.indices)


def test_same_seed_gives_bit_identical_tensors_and_another_seed_differs():
    a = load_digit_instances_reid(**SMALL, seed=5)
    _generate.cache_clear()
    b = load_digit_instances_reid(**SMALL, seed=5)
    for x, y in zip(_all(a), _all(b)):
        for name in ("images", "labels", "camids", "indices"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
    c = load_digit_instances_reid(**SMALL, seed=6)
    assert not torch.equal(a.train.indices.unique(), c.train.indices.unique())
    d = load_digit_instances_reid(**SMALL, seed=5, augment_strength=0.5)
    assert not torch.equal(a.train.images, d.train.images)


def test_calls_return_fresh_tensors():
    a = load_digit_instances_reid(**SMALL, seed=2)
    a.train.images.zero_()
    b = load_digit_instances_reid(**SMALL, seed=2)
    assert b.train.images.abs().sum() > 0


def test_view_counts_are_long_tailed_within_bounds():
    splits = load_digit_instances_reid(height=8, width=8, seed=0)
    ids = torch.cat([s.indices for s in _all(splits)])
    counts = torch.bincount(ids, minlength=1797)
    assert (counts >= 4).all() and (counts <= 30).all()
    # long-tailed: most identities have few views, a few have many
    assert (counts == 4).float().mean() > 0.25
    assert (counts >= 15).sum() > 40 and (counts == 30).sum() > 5
    assert 6 < counts.float().mean() < 10
    small = load_digit_instances_reid(height=8, width=8, max_identities=50, min_views=3, max_views=5)
    small_counts = torch.bincount(torch.cat([s.indices for s in _all(small)]))
    small_counts = small_counts[small_counts > 0]
    assert small_counts.numel() == 50 and small_counts.min() >= 3 and small_counts.max() <= 5


def test_query_gallery_layout():
    splits = load_digit_instances_reid(height=8, width=8, max_identities=400, seed=3)
    q, g = splits.query, splits.gallery
    for identity in q.labels.unique().tolist():
        q_cams = q.camids[q.labels == identity]
        g_cams = g.camids[g.labels == identity]
        # one query per camera, at most queries_per_identity (2) of them
        assert 1 <= len(q_cams) <= 2 and len(set(q_cams.tolist())) == len(q_cams)
        for cam in q_cams.tolist():
            assert (g_cams != cam).any(), f"identity {identity}: no cross-camera gallery view"
    # with 2 queries per identity allowed and every identity seen by >= 2 cameras, all get 2
    assert len(q) == 2 * q.labels.unique().numel()
    # the same-camera rule matters: some query has a same-identity, same-camera gallery view
    same = (q.labels[:, None] == g.labels[None]) & (q.camids[:, None] == g.camids[None])
    assert same.any()


def test_query_layout_keeps_a_gallery_camera_when_views_are_few():
    splits = load_digit_instances_reid(
        height=8, width=8, max_identities=200, min_views=2, max_views=3, queries_per_identity=6, seed=4
    )
    q, g = splits.query, splits.gallery
    for identity in q.labels.unique().tolist():
        g_cams = g.camids[g.labels == identity]
        for cam in q.camids[q.labels == identity].tolist():
            assert (g_cams != cam).any()
    assert set(q.labels.tolist()) == set(g.labels.tolist())


def test_every_identity_is_seen_by_several_cameras():
    splits = load_digit_instances_reid(height=8, width=8, max_identities=300, seed=0)
    ids = torch.cat([s.indices for s in _all(splits)])
    cams = torch.cat([s.camids for s in _all(splits)])
    per_identity = [cams[ids == i].unique().numel() for i in ids.unique().tolist()]
    assert min(per_identity) >= 2 and max(per_identity) == len(CAMERA_STYLES)
    assert torch.equal(cams.unique(), torch.arange(len(CAMERA_STYLES)))


def test_camera_style_is_fixed_per_camera():
    grey = torch.rand(4, 1, 16, 16)
    for camera in range(len(CAMERA_STYLES)):
        # the same views through the same camera: the same corruption, noise included
        once = apply_camera_style(grey, camera, generator=torch.Generator().manual_seed(0))
        again = apply_camera_style(grey, camera, generator=torch.Generator().manual_seed(0))
        assert torch.equal(once, again)
        # the style depends on the camera only: rendering a view alone or in a batch agrees
        alone = apply_camera_style(grey[2:3], camera)
        torch.testing.assert_close(alone, apply_camera_style(grey, camera)[2:3])
    # blank paper shows each camera's own fixed colour, different between cameras
    paper = torch.stack([apply_camera_style(torch.zeros(1, 1, 8, 8), c)[0, :, 0, 0] for c in range(6)])
    torch.testing.assert_close(paper, torch.tensor([s.paper for s in CAMERA_STYLES]))
    assert torch.cdist(paper, paper).add(torch.eye(6)).min() > 0.05


def test_camera_colour_cast_is_fixed_across_the_data_set():
    """Every camera's mean colour lies on the line from its paper to its ink colour."""
    splits = load_digit_instances_reid(**SMALL, seed=0, normalize=False)
    images = torch.cat([s.images for s in _all(splits)])
    cams = torch.cat([s.camids for s in _all(splits)])
    for camera, style in enumerate(CAMERA_STYLES):
        mean = images[cams == camera].mean(dim=(0, 2, 3))
        paper, ink = torch.tensor(style.paper), torch.tensor(style.ink)
        along = torch.dot(mean - paper, ink - paper) / torch.dot(ink - paper, ink - paper)
        residual = (mean - paper - along * (ink - paper)).norm()
        assert 0.1 < along < 0.9 and residual < 0.02, (camera, along, residual)


def test_shapes_dtypes_and_normalisation_match_load_digits_reid():
    plain = load_digit_instances_reid(**SMALL, normalize=False)
    normalised = load_digit_instances_reid(**SMALL)
    for split, other in zip(_all(plain), _all(normalised)):
        assert split.images.shape[1:] == (3, 16, 16) and split.images.dtype == torch.float32
        assert split.images.min() >= 0 and split.images.max() <= 1
        levels = split.images * 255
        torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
        for name in ("labels", "camids", "indices"):
            assert getattr(split, name).dtype == torch.int64
            assert getattr(split, name).shape == (len(split),)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        torch.testing.assert_close(other.images, (split.images - mean) / std)
        key = split.indices.numpy()
        assert (np.diff(key) >= 0).all()  # ordered by identity
    assert load_digit_instances_reid(height=24, width=12, max_identities=4).train.images.shape[2:] == (24, 12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_identities": 1}, "max_identities should be in 2..1797, got 1"),
        ({"max_identities": 2000}, "max_identities should be in 2..1797"),
        ({"min_views": 1}, "min_views should be in 2.."),
        ({"min_views": 6, "max_views": 5}, "max_views should be in 6.."),
        ({"queries_per_identity": 7}, "queries_per_identity should be in 1..6"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"augment_strength": 3.5}, r"augment_strength should be a number in \[0, 3\], got 3.5"),
        ({"seed": -1}, "seed should be a non-negative int"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_digit_instances_reid(**kwargs)


def test_bad_camera_is_named():
    with pytest.raises(ValueError, match=r"camera should be in 0\.\.5, got 6"):
        apply_camera_style(torch.zeros(1, 1, 4, 4), 6)
    with pytest.raises(ValueError, match=r"grey should have shape \[N, 1, H, W\]"):
        apply_camera_style(torch.zeros(1, 3, 4, 4), 0)
