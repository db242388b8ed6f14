"""benchmarks/bench_ablation.py: the base settings every run trains follow the demo's unless
--size and --lr say otherwise; --tables keeps the demo's recipe and its k stays within the data."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_ablation as bench

from hdml_ext.demo import demo_settings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_base_arguments(parser)
    return parser.parse_args(list(argv))


def test_size_and_lr_default_to_the_demos():
    demo, settings = demo_settings(), bench.base_settings(_args())
    assert (settings.data.height, settings.data.width) == (demo.data.height, demo.data.width)
    assert settings.train.lr == demo.train.lr
    assert settings.data.max_identities == 200 and settings.train.epochs == 5
    assert settings.train.milestones == [3]
    # The paper's link options are the base every configuration changes.
    assert not settings.model.cosine_prior and not settings.model.overlap_prior


def test_size_and_lr_options_override_the_demo():
    settings = bench.base_settings(_args("--size", "8", "--lr", "0.01", "--epochs", "2"))
    assert (settings.data.height, settings.data.width) == (8, 8)
    assert settings.train.lr == 0.01 and settings.train.epochs == 2 and settings.train.milestones == [1]


def test_tables_mode_keeps_the_demos_recipe():
    demo, settings = demo_settings(), bench.tables_settings(_args())
    assert settings.data == demo.data and settings.train == demo.train and settings.model == demo.model


def test_table_configurations_build_models_of_the_stated_shape():
    from hdml_ext.engine.models import new_model

    settings = bench.tables_settings(_args("--quick"))
    for name, (changes, _) in bench.TABLE_CONFIGS.items():
        model = new_model(replace(settings.model, **changes), num_classes=3)
        config = model.to_config()
        for key, value in changes.items():
            assert config[key] == value, (name, key)


def test_largest_k_is_the_most_every_searched_set_allows():
    from hdml_ext.demo.splits import load_demo_splits, query_gallery
    from hdml_ext.graph.fgraphs import require_k

    data = load_demo_splits(bench.tables_settings(_args("--quick")).data)
    _, val_gallery = query_gallery(data.val)
    sizes = (len(val_gallery), len(data.val), len(data.gallery))
    most = bench.largest_k(data)
    for size in sizes:
        require_k(most, size, nodes="G")
    with pytest.raises(ValueError, match="at most"):
        for size in sizes:
            require_k(most + 1, size, nodes="G")
