"""Shared HA-Net (paper III-C, Fig. 3): a torchvision ResNet with NFA after every stage and
NFE on the chosen stages, concatenated into the node embedding m (eq. 10)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Callable

import torch
import torch.hub
import torchvision.models as tvm
from torch import Tensor, nn

from .._checks import require_images
from ..ops.nfa_gate import require_gate_bounds
from .nfa import NFA
from .nfe import NFE

#: The torchvision ResNets HA-Net can be built on (all share the conv1/bn1/layer1..4 layout).
BACKBONES: dict[str, Callable[..., tvm.ResNet]] = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "resnet101": tvm.resnet101,
    "resnet152": tvm.resnet152,
    "resnext50_32x4d": tvm.resnext50_32x4d,
    "resnext101_32x8d": tvm.resnext101_32x8d,
    "resnext101_64x4d": tvm.resnext101_64x4d,
    "wide_resnet50_2": tvm.wide_resnet50_2,
    "wide_resnet101_2": tvm.wide_resnet101_2,
}

#: The NFE width (the paper's FC_1 of 512 neurons, eq. 9).
NFE_DIM = 512

#: The `weights` value that starts the backbone from torchvision's ImageNet weights.
IMAGENET = "imagenet"


class PretrainedWeightsError(ValueError):
    """torchvision's ImageNet weights could not be fetched (no network and no cached copy)."""


def imagenet_state_dict(name: str, *, progress: bool = False) -> Mapping[str, Tensor]:
    """torchvision's ImageNet-1k state dict of backbone `name` (its IMAGENET1K_V1 weights, the
    original recipe the Re-ID literature starts from), read from torch.hub's cache
    (`torch.hub.get_dir()`/checkpoints) or downloaded there on first use.

    Raises PretrainedWeightsError, one line saying how to give a local file instead, when the
    file cannot be had (no network, a failed download or hash check).
    """
    entry = tvm.get_model_weights(name)["IMAGENET1K_V1"]
    try:
        return torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", progress=progress,
                                                  check_hash=True)
    except Exception as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        file_name = os.path.basename(entry.url)
        raise PretrainedWeightsError(
            f"model.weights={IMAGENET}: could not fetch torchvision's ImageNet weights of {name} from "
            f"{entry.url} ({reason}); download that file where there is network and give it with "
            f"--set model.weights=/path/to/{file_name} (or copy it into "
            f"{os.path.join(torch.hub.get_dir(), 'checkpoints')})"
        ) from None


def check_nfe_stages(nfe_stages: object) -> tuple[int, ...]:
    """The NFE stages as a sorted tuple; raise unless a non-empty subset of {1, 2, 3, 4}."""
    if isinstance(nfe_stages, (str, bytes)) or not isinstance(nfe_stages, Iterable):
        raise TypeError(f"nfe_stages should be a sequence of stage numbers, got {nfe_stages!r}")
    stages = tuple(nfe_stages)
    if (not stages or len(set(stages)) != len(stages)
            or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 4 for s in stages)):
        raise ValueError(f"nfe_stages should be a non-empty set of distinct stages from (1, 2, 3, 4), "
                         f"got {nfe_stages!r}")
    return tuple(sorted(stages))


class ResNetTrunk(nn.Module):
    """The first `depth` stages of a torchvision ResNet, without pooling and classifier, under
    torchvision's own parameter names (conv1, bn1, layer1..), so its state dicts load unchanged."""

    def __init__(self, name: str, depth: int = 4) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"backbone should be one of {', '.join(BACKBONES)}, got {name!r}")
        if not 1 <= depth <= 4:
            raise ValueError(f"depth should be in [1, 4], got {depth}")
        resnet = BACKBONES[name](weights=None)
        self.name = name
        self.depth = depth
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        for i in range(1, depth + 1):
            setattr(self, f"layer{i}", getattr(resnet, f"layer{i}"))

    @property
    def stages(self) -> list[nn.Sequential]:
        """layer1..layer{depth}, in order."""
        return [getattr(self, f"layer{i}") for i in range(1, self.depth + 1)]

    def stage_channels(self) -> list[int]:
        """Each stage's output channels, read off its last block (64..512 for resnet18/34,
        256..2048 for resnet50 and deeper)."""
        return [[m for m in stage[-1].modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
                for stage in self.stages]

    def stem(self, images: Tensor) -> Tensor:
        """conv1 -> bn1 -> relu -> maxpool: [N, 3, H, W] -> [N, 64, H/4, W/4]."""
        return self.maxpool(self.relu(self.bn1(self.conv1(images))))

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a torchvision ResNet state dict from the local file `path`, or torchvision's
        ImageNet weights of this backbone when `path` is "imagenet" (`imagenet_state_dict`:
        torch.hub's cache, else a download).

        Keys of the classifier (fc.*) and of stages beyond `depth` are ignored, a "module." prefix
        (DataParallel) is stripped; every other key must match this backbone's names and shapes,
        else ValueError says which.
        """
        path = os.fspath(path)
        if path == IMAGENET:
            state = imagenet_state_dict(self.name)
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"weights should be {IMAGENET!r} or the path of a local state-dict "
                                    f"file, no file at {path!r}")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ValueError(f"weights: {path!r} should hold a state dict (a mapping of names to tensors), "
                             f"got {type(state).__name__}")
        state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
        skipped = ("fc.", *(f"layer{i}." for i in range(self.depth + 1, 5)))
        state = {k: v for k, v in state.items() if not k.startswith(skipped)}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = [f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(own[k].shape)}"
                      for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
        if problems:
            raise ValueError(f"weights: {path!r} does not fit this backbone: " + "; ".join(problems))
        self.load_state_dict(state, strict=True)


class HANet(nn.Module):
    """Shared HA-Net: ResNet stages, each followed by NFA (the gated map feeds the next stage),
    and NFE on `nfe_stages`, concatenated.

    NFE reads a stage's gated (post-NFA) map, so the fourth NFA shapes the embedding too.
    Stages after the last NFE stage would feed nothing and are not built.
    Channel counts are the backbone's own (the paper's 64/256/512/1024 do not match ResNet-50).

    Args:
        backbone: a torchvision ResNet name, one of `BACKBONES`.
        use_nfa: False drops the four NFA blocks (the paper's Table II ablation).
        nfe_stages: the stages (from 1..4) whose NFE outputs are concatenated; (2, 3, 4) in the paper.
        weights: None (random init), "imagenet" (torchvision's ImageNet weights, downloaded once
            into torch.hub's cache) or the path of a local torchvision state dict for the backbone.
        lo, hi: the NFA gate's floor and saturation threshold.

    Shapes:
        forward(images [N, 3, H, W]) -> [N, out_dim], out_dim = 512 * len(nfe_stages).
    """

    def __init__(self, backbone: str = "resnet50", use_nfa: bool = True,
                 nfe_stages: Iterable[int] = (2, 3, 4), weights: str | os.PathLike | None = None,
                 lo: float = 0.3, hi: float = 0.9) -> None:
        super().__init__()
        if not isinstance(backbone, str) or backbone not in BACKBONES:
            raise ValueError(f"backbone should be one of {', '.join(BACKBONES)}, got {backbone!r}")
        self.nfe_stages = check_nfe_stages(nfe_stages)
        lo, hi = require_gate_bounds(lo, hi)
        self.backbone_name = backbone
        self.use_nfa = bool(use_nfa)
        self.backbone = ResNetTrunk(backbone, depth=self.nfe_stages[-1])
        if weights is not None:
            self.backbone.load_weights(weights)
        channels = self.backbone.stage_channels()
        self.stage_channels = tuple(channels)
        self.nfa = nn.ModuleList([NFA(c, lo, hi) for c in channels]) if self.use_nfa else None
        self.nfe = nn.ModuleDict({str(s): NFE(channels[s - 1], NFE_DIM) for s in self.nfe_stages})
        self.out_dim = NFE_DIM * len(self.nfe_stages)

    def forward(self, images: Tensor) -> Tensor:
        x = self.backbone.stem(require_images(images))
        parts = []
        for i, stage in enumerate(self.backbone.stages):
            x = stage(x)
            if self.nfa is not None:
                x = self.nfa[i](x)
            if str(i + 1) in self.nfe:
                parts.append(self.nfe[str(i + 1)](x))
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return (f"backbone={self.backbone_name!r}, use_nfa={self.use_nfa}, nfe_stages={self.nfe_stages}, "
                f"out_dim={self.out_dim}")
