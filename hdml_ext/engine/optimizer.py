"""The optimiser and learning-rate schedule of `Trainer` (paper IV-B by default): SGD with one
parameter group, or two when the graph half learns at its own rate, and MultiStepLR."""

from __future__ import annotations

import torch
from torch import nn

from .settings import TrainConfig

#: Parameter name prefixes of the graph half of either model (RE-GCN and edge head).
GRAPH_PREFIXES = ("regcn.", "edge_head.")


def param_groups(model: nn.Module, lr: float, graph_lr_mult: float) -> list[dict]:
    """One SGD group at `lr`, or two when graph_lr_mult != 1: the graph half at lr * graph_lr_mult."""
    if graph_lr_mult == 1.0:
        return [{"params": list(model.parameters())}]
    graph, rest = [], []
    for name, param in model.named_parameters():
        (graph if name.startswith(GRAPH_PREFIXES) else rest).append(param)
    groups = [{"params": rest}] if rest else []
    return [*groups, {"params": graph, "lr": lr * graph_lr_mult}]


def build_optimizer(model: nn.Module, config: TrainConfig
                    ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD over `param_groups` with config's lr, momentum and weight decay, and its MultiStepLR
    (lr x gamma after each of config.milestones, stepped per epoch)."""
    optimizer = torch.optim.SGD(
        param_groups(model, config.lr, config.graph_lr_mult),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), gamma=config.gamma)
    return optimizer, scheduler
