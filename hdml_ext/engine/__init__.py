"""Training, checkpoints, inference (embedding rows), distributed set-up and run settings."""

from .checkpoint import atomic_save, load_model, read_checkpoint, seed_everything
from .inference import embed_rows
from .models import new_model
from .settings import (
    ClusterSettings,
    EvalSettings,
    ModelSettings,
    Settings,
    SettingsError,
    TrainConfig,
    dump_settings,
    load_settings,
)
from .trainer import Trainer

__all__ = [
    "ClusterSettings",
    "EvalSettings",
    "ModelSettings",
    "Settings",
    "SettingsError",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "dump_settings",
    "embed_rows",
    "load_model",
    "load_settings",
    "new_model",
    "read_checkpoint",
    "seed_everything",
]
