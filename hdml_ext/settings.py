"""Settings of the `hdml` command: built-in defaults, a YAML/JSON file, then KEY=VALUE overrides.

Settings are a two-level mapping, section -> key -> value:

    data:    image size and the digits split (height, width, seed, train_fraction, ...)
    model:   HDML's constructor arguments (backbone, k, gcn_dims, ...)
    train:   hdml_ext.engine.TrainConfig
    eval:    Re-ID inference (ranking, k, batch sizes, device)
    cluster: hdml_ext.engine.ClusterConfig and the device

`merge_settings(defaults, config_path, overrides)` applies the file (only known sections and
keys, with values of the default's type) and then each "section.key=value" override, whose
value is parsed as YAML ("2", "0.01", "true", "[12, 16]", "null").
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

import yaml

from .engine.clustering import ClusterConfig
from .engine.trainer import TrainConfig


class SettingsError(ValueError):
    """A bad setting; `option` names the command-line option it came from."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


MODEL_DEFAULTS: dict[str, Any] = {
    "backbone": "resnet50",
    "k": 50,
    "use_nfa": True,
    "nfe_stages": [2, 3, 4],
    "gcn_dims": [1536, 1536, 512, 256],
    "attention": True,
    "node_weight": 1.0,
    "link_weight": 1.0,
    "lo": 0.3,
    "hi": 0.9,
    "weights": None,
}

DATA_DEFAULTS: dict[str, Any] = {
    "height": 256,
    "width": 128,
    "seed": 0,
    "train_fraction": 0.5,
    "query_fraction": 0.2,
    "num_cameras": 6,
    "num_workers": 0,
}

EVAL_DEFAULTS: dict[str, Any] = {
    "ranking": "graph",
    "k": None,
    "batch_size": 256,
    "embed_batch_size": 128,
    "max_rank": 50,
    "device": "auto",
}


def default_settings() -> dict[str, dict[str, Any]]:
    """The paper's settings (DESIGN.md), one section per part of the pipeline."""
    train = TrainConfig().to_dict()
    cluster = {f.name: getattr(ClusterConfig(), f.name) for f in dataclasses.fields(ClusterConfig)}
    cluster["device"] = "auto"
    return {
        "data": dict(DATA_DEFAULTS),
        "model": dict(MODEL_DEFAULTS),
        "train": train,
        "eval": dict(EVAL_DEFAULTS),
        "cluster": cluster,
    }


def _coerce(option: str, key: str, value: Any, default: Any) -> Any:
    """`value` checked against the default's type (ints accepted for floats; None where the
    default is None accepts anything)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(option, f"{key} should be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(option, f"{key} should be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(option, f"{key} should be a number, got {value!r}")
        return float(value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(option, f"{key} should be a list like [1, 2], got {value!r}")
        return list(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise SettingsError(option, f"{key} should be a string, got {value!r}")
    return value


def _set(settings: dict, option: str, section: str, key: str, value: Any) -> None:
    if section not in settings:
        raise SettingsError(
            option, f"unknown settings section {section!r}; known sections: {', '.join(settings)}"
        )
    if key not in settings[section]:
        raise SettingsError(
            option,
            f"unknown setting '{section}.{key}'; known {section} settings: {', '.join(settings[section])}",
        )
    settings[section][key] = _coerce(option, f"{section}.{key}", value, settings[section][key])


def read_settings_file(path: str | os.PathLike) -> dict:
    """A settings file (YAML or JSON) as a mapping."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SettingsError("--config", f"no settings file at {path!r}")
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise SettingsError("--config", f"{path!r} is not valid YAML or JSON: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(
            "--config", f"{path!r} should hold a mapping of sections, got {type(loaded).__name__}"
        )
    return loaded


def merge_settings(
    defaults: dict, config_path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> dict:
    """defaults, then the file at `config_path`, then each "section.key=value" of `overrides`."""
    settings = copy.deepcopy(defaults)
    if config_path is not None:
        for section, values in read_settings_file(config_path).items():
            if not isinstance(values, dict):
                raise SettingsError(
                    "--config",
                    f"section {section!r} of {os.fspath(config_path)!r} should be a "
                    f"mapping of settings, got {values!r}",
                )
            for key, value in values.items():
                _set(settings, "--config", str(section), str(key), value)
    for item in overrides or []:
        name, sep, text = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise SettingsError("--set", f"expected SECTION.KEY=VALUE (e.g. train.epochs=2), got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as error:
            raise SettingsError("--set", f"the value of {name!r} is not valid YAML: {error}") from error
        _set(settings, "--set", section, key, value)
    return settings


def dump_settings(settings: dict) -> str:
    """The settings as YAML text (what --print-config shows and runs save)."""
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=None)
