"""benchmarks/bench_ablation.py: the base settings every run trains follow the demo's unless
--size and --lr say otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
