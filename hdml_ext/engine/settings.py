"""Settings: typed sections (OmegaConf structured configs) with one set of defaults.

A run's settings are a `Settings` (sections data, model, train, eval, cluster); the demo's are a
`hdml_ext.demo.DemoSettings`. `load_settings(schema, config_path, overrides)` starts from
the schema's defaults, merges a YAML/JSON file, then each "section.key=value" override (the
value read as YAML: "2", "1e-3", "true", "[12, 16]", "null"), and returns the typed object.
A bad key, type or range raises `SettingsError` naming the key, what was expected and the value.
A renamed key (`RENAMED`: train.backend is train.dist_backend) is read under its new name with
a FutureWarning. See docs/settings.md.
"""

import copy
import dataclasses
import inspect
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..cluster.config import ClusterConfig
from ..data.open import DataSettings
from ..graph import KNN_BACKENDS
from ..nn import EDGE_INPUTS, HDML
from ..reid.link_rerank import LinkRerankSettings
from .distributed import BACKENDS as PROCESS_GROUP_BACKENDS
from .settings_errors import describe_error

AMP_MODES = ("none", "bf16", "fp16")

Schema = TypeVar("Schema")

#: Settings that were renamed: (section, old key) -> new key. Files and --set may still use the
#: old key (read as the new one, with a FutureWarning); giving both with different values is
#: an error.
RENAMED = {("train", "backend"): "dist_backend"}


class SettingsError(ValueError):
    """A bad setting; `option` names the command-line option it came from (--config or --set)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


_HDML_DEFAULTS = {name: p.default for name, p in inspect.signature(HDML).parameters.items()}


@dataclass
class ModelSettings:
    """HDML's constructor arguments (its own defaults); HDMLOnFeatures takes the graph half's: k,
    gcn_dims, attention, edge_input, relative_input, balanced_link_loss, cosine_prior,
    overlap_prior."""

    backbone: str = _HDML_DEFAULTS["backbone"]
    k: int = _HDML_DEFAULTS["k"]
    use_nfa: bool = _HDML_DEFAULTS["use_nfa"]
    nfe_stages: list[int] = field(default_factory=lambda: list(_HDML_DEFAULTS["nfe_stages"]))
    gcn_dims: list[int] = field(default_factory=lambda: list(_HDML_DEFAULTS["gcn_dims"]))
    attention: bool = _HDML_DEFAULTS["attention"]
    node_weight: float = _HDML_DEFAULTS["node_weight"]
    link_weight: float = _HDML_DEFAULTS["link_weight"]
    lo: float = _HDML_DEFAULTS["lo"]
    hi: float = _HDML_DEFAULTS["hi"]
    edge_input: Literal[EDGE_INPUTS] = _HDML_DEFAULTS["edge_input"]  # type: ignore[valid-type]
    relative_input: bool = _HDML_DEFAULTS["relative_input"]
    balanced_link_loss: bool = _HDML_DEFAULTS["balanced_link_loss"]
    cosine_prior: bool = _HDML_DEFAULTS["cosine_prior"]
    overlap_prior: bool = _HDML_DEFAULTS["overlap_prior"]
    weights: Optional[str] = _HDML_DEFAULTS["weights"]


@dataclass
class TrainConfig:
    """Training settings; the defaults are the paper's (IV-B).

    epochs: passes over the training set (each row is a focus node once per epoch).
    lr, momentum, weight_decay: SGD.
    milestones, gamma: lr x gamma after each listed epoch (MultiStepLR, stepped per epoch).
    identities_per_batch, focus_per_identity: P and K of the PK focus batches.
    drop_last: skip an epoch's last batches when they hold fewer than P identities, and the
        batches past the last multiple of world_size * accumulate (without it, those are
        topped up by repeating the epoch's first batches).
    accumulate: PK batches per optimiser step in each process (gradient accumulation); the
        gradient is the mean over the step's batches of all processes.
    graph_lr_mult: the RE-GCN and edge head learn at lr * graph_lr_mult (1: the paper's single lr).
    rebuild_every: rebuild the F-Graphs from the current embeddings every this many epochs.
    max_positive_share: null (the paper: the k nearest neighbours) or a share in [0, 1]: each
        training F-Graph row keeps at most ceil(share * k) neighbours of its own identity, the
        nearest other identities filling the rest (hard negatives, as in graphs of unseen
        identities; `hdml_ext.graph.cap_positive_neighbours`).
    flip: random horizontal flip of each distinct image of a batch (p = 0.5).
    embed_batch_size: images per forward pass when embedding the training set for a rebuild.
    seed: seeds the batch order (with the epoch); the caller seeds model initialisation.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...; under torchrun "auto"
        and "cuda" mean cuda:LOCAL_RANK.
    num_workers: DataLoader workers loading a batch's images (0: in the main process).
    progress: show tqdm progress bars (rank 0 only).
    amp: mixed precision of the forward passes: "none" (float32), "bf16" (autocast to bfloat16,
        CPU or CUDA) or "fp16" (autocast to float16 with a GradScaler, CUDA only).
    channels_last: keep the model's conv weights and the image batches in channels_last memory
        format (faster convolutions on recent GPUs and oneDNN CPUs; no effect on features).
    sync_bn: with several processes, BatchNorm layers become nn.SyncBatchNorm (statistics
        pooled across ranks; CUDA only). No effect in one process.
    dist_backend: the torch.distributed process-group backend under torchrun: "auto" (nccl on
        CUDA, gloo on the CPU), "gloo" or "nccl" (called train.backend before; still read).
    knn_backend: the kNN backend of every F-Graph rebuild (`hdml_ext.graph.KNN_BACKENDS`):
        "exact" (the paper; O(N^2) pairs), or "auto", "ivf", "faiss-*" for large training sets.
    """

    epochs: int = 20
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [12, 16, 18])
    gamma: float = 0.1
    identities_per_batch: int = 4
    focus_per_identity: int = 4
    drop_last: bool = False
    graph_lr_mult: float = 1.0
    rebuild_every: int = 1
    max_positive_share: Optional[float] = None
    flip: bool = True
    embed_batch_size: int = 128
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    accumulate: int = 1
    amp: Literal[AMP_MODES] = "none"  # type: ignore[valid-type]
    channels_last: bool = False
    sync_bn: bool = False
    dist_backend: Literal[PROCESS_GROUP_BACKENDS] = "auto"  # type: ignore[valid-type]
    knn_backend: Literal[KNN_BACKENDS] = "exact"  # type: ignore[valid-type]

    def __post_init__(self) -> None:
        check_types(self, "train")
        self.milestones = list(self.milestones)
        check_ranges(self, "train")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict; an unknown key or a bad value raises ValueError naming it."""
        return _typed(cls, values, "train")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class EvalSettings:
    """Re-ID inference: ranking (`hdml_ext.reid.RANKINGS`), the F-Graph k (None: the
    model's; `hdml evaluate` refuses another, the model was trained on its own), batch sizes,
    device; link_*: the settings of the link_rerank rankings (`hdml_ext.reid.LinkRerankSettings`,
    whose validated defaults they take: link_power, link_normalise, link_k2, link_lambda). The
    default ranking is re-ranking with learned edges of each query alone, which beat the paper's
    graph rule on the validation identities of every demo seed (docs/reid.md); "graph" is the
    paper's rule."""

    ranking: Literal["graph", "distance", "k_reciprocal", "k_reciprocal_per_query", "link_rerank",
                     "link_rerank_together"] = "link_rerank"
    k: Optional[int] = None
    batch_size: int = 256
    embed_batch_size: int = 128
    max_rank: int = 50
    device: str = "auto"
    link_power: float = LinkRerankSettings.power
    link_normalise: bool = LinkRerankSettings.normalise
    link_k2: int = LinkRerankSettings.k2
    link_lambda: float = LinkRerankSettings.lambda_value

    def link_rerank(self) -> LinkRerankSettings:
        """The link_* fields as `LinkRerankSettings` (queries_together follows `ranking`)."""
        return LinkRerankSettings(power=self.link_power, normalise=self.link_normalise, k2=self.link_k2,
                                  lambda_value=self.link_lambda,
                                  queries_together=self.ranking == "link_rerank_together")


@dataclass
class ClusterSettings(ClusterConfig):
    """The `cluster` section of a run's settings: every `ClusterConfig` field (declared there
    only: k, threshold, max_size, step, max_iter, batch_size, backend, target_recall), and
    method, the clustering over the link scores (`hdml_ext.cluster.choice.METHODS`: propagation,
    or Infomap over the edges scoring >= threshold), and device. `cluster_config()` is the
    `ClusterConfig` part. A model's stored clustering choice replaces method, threshold,
    max_size, step and max_iter where they are not set explicitly (`hdml cluster`). The demo's
    `DemoClusterSettings` extends this class."""

    method: Literal["propagation", "infomap"] = "propagation"
    device: str = "auto"


@dataclass
class Settings:
    """Settings of `hdml train`, `evaluate` and `cluster`."""

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalSettings = field(default_factory=EvalSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


def _at_least(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= minimum), f"an int >= {minimum}"


_FINITE = (lambda value: math.isfinite(value) and value >= 0), "a finite number >= 0"
_DEVICE = (
    lambda value: re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value) is not None,
    "auto, cpu, mps, cuda or cuda:INDEX",
)
_FRACTION = (lambda value: 0 < value < 1), "a fraction in (0, 1)"
_UNIT = (lambda value: value is None or 0 <= value <= 1), "a number in [0, 1]"

#: Range checks (the types are the schemas'): section -> [(key, test, what the value should be)],
#: checked in order.
RANGES: dict[str, list[tuple[str, Callable[[Any], bool], str]]] = {
    "train": [
        *(
            (key, *_at_least(1))
            for key in (
                "epochs",
                "identities_per_batch",
                "focus_per_identity",
                "rebuild_every",
                "embed_batch_size",
                "accumulate",
            )
        ),
        *((key, *_at_least(0)) for key in ("seed", "num_workers")),
        *((key, *_FINITE) for key in ("lr", "momentum", "weight_decay", "gamma", "graph_lr_mult")),
        ("lr", lambda value: value > 0, "> 0"),
        ("milestones", lambda value: all(m >= 1 for m in value), "a list of epochs >= 1"),
        ("max_positive_share", *_UNIT),
        ("device", *_DEVICE),
    ],
    "data": [
        *((key, *_at_least(1)) for key in ("height", "width", "num_cameras")),
        *((key, *_at_least(0)) for key in ("seed", "num_workers")),
        *((key, *_FRACTION) for key in ("train_fraction", "query_fraction")),
    ],
    "eval": [
        ("k", lambda value: value is None or value >= 1, "an int >= 1 or null (the model's k)"),
        *((key, *_at_least(1)) for key in ("batch_size", "embed_batch_size", "max_rank", "link_k2")),
        ("link_power", lambda value: value > 0, "> 0"),
        ("link_lambda", *_UNIT),
        ("device", *_DEVICE),
    ],
    "cluster": [
        ("k", lambda value: value is None or value >= 1, "an int >= 1 or null (the model's k)"),
        ("threshold", *_UNIT),
        ("step", lambda value: 0 < value <= 1, "a number in (0, 1]"),
        ("max_size", lambda value: value is None or value >= 1, "an int >= 1 or null"),
        ("target_recall", lambda value: 0 < value <= 1, "a number in (0, 1]"),
        ("max_iter", *_at_least(1)),
        ("batch_size", lambda value: value is None or value >= 1, "an int >= 1 or null (for the device)"),
        ("device", *_DEVICE),
    ],
}


def check_ranges(values: object, section: str) -> None:
    """Raise ValueError naming the first field of `values` outside its `RANGES[section]` range
    (fields `values` does not have are skipped: the demo's sections hold fewer)."""
    for key, test, expected in RANGES.get(section, []):
        if not hasattr(values, key):
            continue
        value = getattr(values, key)
        if not test(value):
            raise ValueError(f"{section}.{key} should be {expected}, got {value!r}")


def check_types(values: object, section: str) -> None:
    """Raise ValueError when a field of the dataclass `values` does not have its declared type
    (strict: "yes" is not a bool, "2" not an int; an int is taken for a float and converted)."""
    for item in dataclasses.fields(values):
        value = getattr(values, item.name)
        if item.type is float and type(value) is int:
            setattr(values, item.name, float(value))
    try:
        OmegaConf.create({section: values}, flags={"convert": False})
    except OmegaConfBaseException as error:
        raise ValueError(describe_error(error, type(values), section, values)) from None


def load_settings(
    schema: type[Schema],
    config_path: Union[str, os.PathLike, None] = None,
    overrides: Optional[list[str]] = None,
    base: Optional[dict] = None,
) -> Schema:
    """`schema`'s defaults, then `base` (a program's own overrides, e.g. the demo's), then the
    settings file at `config_path`, then each "section.key=value" of `overrides`."""
    merged = OmegaConf.structured(schema)
    steps: list[tuple[str, Any]] = [("--set", base)] if base else []
    if config_path is not None:
        steps.append(("--config", _read_file(config_path)))
    steps += [("--set", _parse_override(item)) for item in overrides or []]
    for option, values in steps:
        values = _renamed_keys(option, values)
        try:
            merged = OmegaConf.merge(merged, values)
            _check_sections(OmegaConf.to_object(merged))
        except OmegaConfBaseException as error:
            raise SettingsError(option, describe_error(error, schema)) from None
        except ValueError as error:
            raise SettingsError(option, str(error)) from None
    return OmegaConf.to_object(merged)


def _renamed_keys(option: str, values: Any) -> Any:
    """`values` (a mapping of sections) with each `RENAMED` key under its new name, warned
    about; SettingsError naming `option` when the old and the new key disagree."""
    used = [(section, old) for section, old in RENAMED
            if OmegaConf.is_dict(values.get(section)) or isinstance(values.get(section), dict)
            if old in values[section]]
    if not used:
        return values
    values = OmegaConf.to_container(values) if OmegaConf.is_config(values) else copy.deepcopy(dict(values))
    for section, old in used:
        new, part = RENAMED[section, old], values[section]
        value = part.pop(old)
        if new in part and part[new] != value:
            raise SettingsError(option, f"{section}.{old} is the old name of {section}.{new}; give one, "
                                        f"got {section}.{old}={value!r} and {section}.{new}={part[new]!r}")
        part[new] = value
        warnings.warn(f"the setting {section}.{old} is now {section}.{new} (read as it); rename it",
                      FutureWarning, stacklevel=3)
    return values


def _check_sections(settings: object) -> None:
    """`check_ranges` of every section of `settings` that has ranges (train checks its own)."""
    for section in ("data", "eval", "cluster"):
        if hasattr(settings, section):
            check_ranges(getattr(settings, section), section)


def dump_settings(settings: object) -> str:
    """The settings as YAML text (what --print-config shows and runs save)."""
    return OmegaConf.to_yaml(OmegaConf.structured(settings), sort_keys=False)


def _typed(schema: type[Schema], values: dict, section: str) -> Schema:
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except OmegaConfBaseException as error:
        raise ValueError(describe_error(error, schema, section)) from None


def _read_file(path: Union[str, os.PathLike]) -> Any:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SettingsError("--config", f"no settings file at {path!r}")
    try:
        loaded = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as error:
        raise SettingsError("--config", f"{path!r} is not valid YAML or JSON: {_one_line(error)}") from None
    if not OmegaConf.is_dict(loaded):
        raise SettingsError("--config", f"{path!r} should hold a mapping of sections, got a list")
    return loaded


def _parse_override(item: str) -> Any:
    name, sep, _ = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise SettingsError("--set", f"expected SECTION.KEY=VALUE (e.g. train.epochs=2), got {item!r}")
    try:
        return OmegaConf.from_dotlist([item.strip()])
    except (yaml.YAMLError, OmegaConfBaseException) as error:
        message = f"the value of {name.strip()!r} is not valid YAML: {_one_line(error)}"
        raise SettingsError("--set", message) from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
