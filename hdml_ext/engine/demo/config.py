"""The demo's settings: the run's defaults (`hdml_ext.engine.settings`) with the demo's overrides."""

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import OmegaConf

from ...data import DataSettings
from ..settings import ClusterSettings, ModelSettings, TrainConfig, load_settings


@dataclass
class DemoDataSettings(DataSettings):
    """DataSettings, and: eval_stride (keep every n-th held-out image), val_fraction (share of each
    class's training images that chooses the clustering thresholds)."""

    eval_stride: int = 1
    val_fraction: float = 0.2


@dataclass
class DemoClusterSettings(ClusterSettings):
    """ClusterSettings; threshold (link scores) and similarity_threshold (cosine, the no-graph rows)
    None: chosen in each run on the validation split; a number fixes them."""

    threshold: Optional[float] = None
    similarity_threshold: Optional[float] = None


@dataclass
class DemoSettings:
    """Settings of `hdml demo`."""

    data: DemoDataSettings = field(default_factory=DemoDataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: DemoClusterSettings = field(default_factory=DemoClusterSettings)


#: The paper's model and schedule scaled down to digits on a 2-core CPU. Epochs, milestones,
#: drop_last and max_size were compared on a validation split carved from the training images,
#: never on the held-out split.
DEMO_OVERRIDES: dict[str, dict] = {
    "data": {"height": 16, "width": 16},
    "model": {"backbone": "resnet18", "k": 10, "gcn_dims": [256, 128]},
    "train": {
        "epochs": 10,
        "lr": 0.01,
        "milestones": [7],
        "focus_per_identity": 8,
        "drop_last": True,
        "flip": False,
        "embed_batch_size": 256,
        "device": "cpu",
    },
    "cluster": {"max_size": 100, "step": 0.1, "max_iter": 100},
}

#: `--quick`: a smoke run (tests), not meaningful numbers: about 40 s on a shared 2-core CPU (both
#: models trained for one epoch, the baselines and plots as in the full demo).
QUICK_OVERRIDES: dict[str, dict] = {
    "data": {"height": 8, "width": 8, "train_fraction": 0.1, "eval_stride": 4},
    "model": {"k": 4, "gcn_dims": [16]},
    "train": {"epochs": 1, "milestones": [], "identities_per_batch": 2, "focus_per_identity": 2},
}


def demo_overrides(quick: bool = False) -> dict:
    """The demo's overrides of the defaults (with the `--quick` ones over them when asked)."""
    if not quick:
        return DEMO_OVERRIDES
    return OmegaConf.to_container(OmegaConf.merge(DEMO_OVERRIDES, QUICK_OVERRIDES))


def demo_settings(quick: bool = False) -> DemoSettings:
    """The demo's settings (with the `--quick` overrides when asked)."""
    return load_settings(DemoSettings, base=demo_overrides(quick))
