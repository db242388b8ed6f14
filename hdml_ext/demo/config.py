"""The demo's settings: the run's defaults (`hdml_ext.engine.settings`) with the demo's overrides."""

from dataclasses import dataclass, field
from typing import Literal, Optional

from omegaconf import OmegaConf

from ..data import DataSettings
from ..engine.settings import ClusterSettings, ModelSettings, TrainConfig, load_settings

#: The demo's data sets: the open-set digit-instances (test identities never seen in training)
#: and the closed-set digits (10 classes, the same in every split).
DEMO_DATASETS = ("digit-instances", "digits")


@dataclass
class DemoDataSettings(DataSettings):
    """DataSettings, and: dataset (one of DEMO_DATASETS), eval_stride (keep every n-th held-out
    image), val_fraction (the share of training identities -- of each class's training images
    for the closed-set digits -- held out to choose the clustering settings)."""

    dataset: Literal[DEMO_DATASETS] = "digit-instances"  # type: ignore[valid-type]
    eval_stride: int = 1
    val_fraction: float = 0.2


@dataclass
class DemoClusterSettings(ClusterSettings):
    """The demo's `cluster` section: every `ClusterSettings` field (its `ClusterConfig` ones
    declared in `hdml_ext.cluster.config` only), and similarity_threshold (the cosine threshold of
    the no-graph rows) and max_size_candidates. The demo's defaults (DEMO_OVERRIDES) set
    threshold and max_size to None, which here means chosen in each run on the validation split
    (max_size among max_size_candidates); a number fixes them, as similarity_threshold."""

    similarity_threshold: Optional[float] = None
    max_size_candidates: list[int] = field(default_factory=lambda: [10, 20, 40, 80])


@dataclass
class DemoSettings:
    """Settings of `hdml demo`."""

    data: DemoDataSettings = field(default_factory=DemoDataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: DemoClusterSettings = field(default_factory=DemoClusterSettings)


#: The paper's model and schedule scaled down to digit-instances on a 2-core CPU (minutes), with
#: the image size, learning rate and link configuration the ablation (benchmarks/bench_ablation.py)
#: chose on its validation identities: 16x16 pixels, lr 0.04, the paper's edge head with the
#: cosine and overlap priors (`--set model.cosine_prior=false --set model.overlap_prior=false` is
#: the paper's).
#: The clustering threshold and max_size are None: chosen in each run on the validation split.
DEMO_OVERRIDES: dict[str, dict] = {
    "data": {"height": 16, "width": 16, "max_identities": 300},
    "model": {"backbone": "resnet18", "k": 10, "gcn_dims": [256, 128], "cosine_prior": True,
              "overlap_prior": True},
    "train": {
        "epochs": 4,
        "lr": 0.04,
        "milestones": [3],
        "identities_per_batch": 8,
        "focus_per_identity": 4,
        "drop_last": True,
        "flip": False,
        "embed_batch_size": 256,
        "device": "cpu",
    },
    "cluster": {"threshold": None, "max_size": None, "step": 0.1, "max_iter": 100},
}

#: `--quick`: a smoke run of every step on tiny settings (tests), not meaningful numbers (about
#: 40 s on a shared 2-core CPU).
QUICK_OVERRIDES: dict[str, dict] = {
    "data": {"height": 8, "width": 8, "max_identities": 40, "eval_stride": 2},
    "model": {"k": 4, "gcn_dims": [16]},
    "train": {"epochs": 1, "milestones": [], "identities_per_batch": 2, "focus_per_identity": 2},
    "cluster": {"max_size_candidates": [10]},
}


def demo_overrides(quick: bool = False) -> dict:
    """The demo's overrides of the defaults (with the `--quick` ones over them when asked)."""
    if not quick:
        return DEMO_OVERRIDES
    return OmegaConf.to_container(OmegaConf.merge(DEMO_OVERRIDES, QUICK_OVERRIDES))


def demo_settings(quick: bool = False) -> DemoSettings:
    """The demo's settings (with the `--quick` overrides when asked)."""
    return load_settings(DemoSettings, base=demo_overrides(quick))
