"""The demo's settings are overrides of the run defaults; its validation split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdml_ext.data import TensorSplit
from hdml_ext.demo import DemoSettings, demo_settings
from hdml_ext.demo.splits import every, query_gallery, split_identities, split_validation
from hdml_ext.engine import Settings, load_settings


def test_demo_settings_are_the_defaults_but_the_overrides():
    demo, defaults = demo_settings(), load_settings(Settings)
    assert demo.model.backbone == "resnet18" and demo.model.k == 10 and demo.model.gcn_dims == [256, 128]
    assert demo.model.lo == defaults.model.lo and demo.model.nfe_stages == defaults.model.nfe_stages
    assert demo.train.epochs == 4 and demo.train.lr == 0.04 and demo.train.milestones == [3]
    assert demo.train.momentum == defaults.train.momentum and demo.train.gamma == defaults.train.gamma
    assert demo.cluster.threshold is None and demo.cluster.similarity_threshold is None
    assert (demo.cluster.max_size, demo.cluster.step, demo.cluster.max_iter) == (None, 0.1, 100)
    assert demo.data.height == demo.data.width == 16
    assert demo.data.val_fraction == 0.2 and demo.data.eval_stride == 1
    assert demo.data.dataset == "digit-instances" and demo.data.max_identities == 300
    # The ablation's validation pick (the paper's head with the cosine and overlap priors); the
    # paper's model stays the library's default.
    assert demo.model.cosine_prior and not defaults.model.cosine_prior
    assert demo.model.overlap_prior and not defaults.model.overlap_prior
    assert demo.model.edge_input == defaults.model.edge_input == "node"
    assert demo.train.max_positive_share is None and defaults.train.max_positive_share is None
    assert demo.model.relative_input == defaults.model.relative_input


def test_quick_overrides_the_demo():
    quick = demo_settings(quick=True)
    assert quick.model.k == 4 and quick.model.backbone == "resnet18" and quick.train.milestones == []
    assert quick.data.eval_stride == 2 and quick.train.focus_per_identity == 2 and quick.data.height == 8
    assert quick.data.max_identities == 40 and quick.cluster.max_size_candidates == [10]
    assert isinstance(quick, DemoSettings)


def _split(labels: list[int]) -> TensorSplit:
    n = len(labels)
    return TensorSplit(torch.zeros(n, 3, 2, 2), torch.tensor(labels), torch.zeros(n, dtype=torch.int64),
                       torch.arange(n))  # fmt: skip


def test_validation_split_takes_a_share_of_every_class():
    fit, val = split_validation(_split([0] * 10 + [1] * 5), 0.2, seed=0)
    assert sorted(val.labels.tolist()) == [0, 0, 1]
    assert len(fit) == 12 and not set(fit.indices.tolist()) & set(val.indices.tolist())
    again = split_validation(_split([0] * 10 + [1] * 5), 0.2, seed=0)[1]
    assert torch.equal(again.indices, val.indices)


def test_validation_split_errors():
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        split_validation(_split([0, 0]), 1.0, seed=0)
    with pytest.raises(ValueError, match="class 1 has 1"):
        split_validation(_split([0, 0, 1]), 0.5, seed=0)


def test_every_keeps_every_nth_row():
    split = _split(list(range(7)))
    assert every(split, 1) is split
    assert np.array_equal(every(split, 3).labels.numpy(), [0, 3, 6])


def test_identity_split_holds_out_whole_identities_and_renumbers_fit():
    split = _split([5] * 3 + [7] * 4 + [9] * 2 + [11] * 3 + [12] * 2)
    fit, val = split_identities(split, 0.4, seed=0)
    assert not set(fit.indices.tolist()) & set(val.indices.tolist()) and len(fit) + len(val) == len(split)
    val_ids = set(val.labels.tolist())
    assert len(val_ids) == 2 and val_ids <= {5, 7, 9, 11, 12}
    assert sorted(set(fit.labels.tolist())) == [0, 1, 2]
    fit_old = split.labels[fit.indices]
    assert not set(fit_old.tolist()) & val_ids
    # fit's new labels follow the old ones' order
    assert torch.equal(torch.unique(fit_old, return_inverse=True)[1], fit.labels)
    again = split_identities(split, 0.4, seed=0)[1]
    assert torch.equal(again.indices, val.indices)


def test_identity_split_errors():
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        split_identities(_split([0, 1, 2]), 0.0, seed=0)
    with pytest.raises(ValueError, match="at least 3 identities, got 2"):
        split_identities(_split([0, 0, 1]), 0.5, seed=0)


def test_query_gallery_takes_first_views_of_all_but_one_camera():
    labels = [3, 3, 3, 3, 8, 8, 8, 5, 5]
    camids = [0, 1, 1, 2, 4, 4, 4, 0, 1]
    split = _split(labels)
    split = TensorSplit(split.images, split.labels, torch.tensor(camids), split.indices)
    query, gallery = query_gallery(split, queries_per_identity=2)
    # identity 3: cameras 0, 1, 2 -> the first views of cameras 0 and 1 (rows 0, 1); identity 8:
    # one camera -> no query; identity 5: two cameras -> one query (row 7).
    assert query.tolist() == [0, 1, 7]
    assert gallery.tolist() == [2, 3, 4, 5, 6, 8]
    assert query_gallery(split, queries_per_identity=1)[0].tolist() == [0, 7]
    with pytest.raises(ValueError, match="queries_per_identity"):
        query_gallery(split, queries_per_identity=0)
