"""The whole model (paper Fig. 1): shared HA-Net -> node head (L1), and RE-GCN on each F-Graph
-> edge head (L2); plus the RE-GCN + edge head alone on given features (face clustering)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from ..ops._validate import require_float, require_int
from ._checks import check_adjacency, check_graph_batch, check_images, check_labels, check_nodes
from .hanet import HANet
from .heads import EdgeHead, NodeHead
from .regcn import REGCN


class HDMLOutput(NamedTuple):
    """What `HDML.forward` returns.

    embeddings: [U, D] HA-Net embedding m of every distinct image (D = 512 * len(nfe_stages)).
    node_logits: [U, num_classes] node classification logits (the auxiliary task).
    link_logits: [B, k, 2] edge logits of each F-Graph's non-focus nodes 1..k (the main task).
    """

    embeddings: Tensor
    node_logits: Tensor
    link_logits: Tensor


def link_loss(link_logits: Tensor, same: Tensor) -> Tensor:
    """L2 (eq. 15): cross entropy of [B, k, 2] logits against bool [B, k] "same identity" targets."""
    return functional.cross_entropy(link_logits.reshape(-1, 2).float(), same.reshape(-1).long())


def _config_from(cls: type, config: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise TypeError(f"config should be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"config has keys {cls.__name__} does not take: {', '.join(unknown)}")
    return dict(config)


class HDML(nn.Module):
    """Hierarchical deep multi-task learning with attention (the paper's full model).

    `forward` runs HA-Net once per distinct image of the batch (F-Graphs of one batch share
    images), and RE-GCN's first projection once per distinct image too, before gathering each
    F-Graph's nodes; then the rest of RE-GCN and both heads.

    Args:
        num_classes: identities of the node classification task.
        backbone, use_nfa, nfe_stages, weights, lo, hi: see `HANet`.
        k: neighbours per F-Graph; each graph has k+1 nodes, the focus first.
        gcn_dims, attention: see `REGCN` (layer widths, RE-GCN vs plain GCN).
        node_weight, link_weight: the joint loss is node_weight * L1 + link_weight * L2.

    `to_config()` records these (all but `weights`, which only initialises the backbone: a
    saved model's state dict carries the trained values); `from_config` rebuilds the model.
    """

    input_kind = "images"
    _CONFIG_KEYS = ("num_classes", "backbone", "k", "use_nfa", "nfe_stages", "gcn_dims", "attention",
                    "node_weight", "link_weight", "lo", "hi")

    def __init__(self, num_classes: int, *, backbone: str = "resnet50", k: int = 50, use_nfa: bool = True,
                 nfe_stages: Iterable[int] = (2, 3, 4), gcn_dims: Iterable[int] = (1536, 1536, 512, 256),
                 attention: bool = True, node_weight: float = 1.0, link_weight: float = 1.0,
                 lo: float = 0.3, hi: float = 0.9, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.num_classes = require_int("num_classes", num_classes, minimum=1)
        self.k = require_int("k", k, minimum=1)
        self.node_weight = require_float("node_weight", node_weight)
        self.link_weight = require_float("link_weight", link_weight)
        self.hanet = HANet(backbone, use_nfa, nfe_stages, weights, lo, hi)
        self.node_head = NodeHead(self.hanet.out_dim, num_classes)
        self.regcn = REGCN(self.hanet.out_dim, gcn_dims, attention)
        self.edge_head = EdgeHead(self.regcn.out_dim)
        self.out_dim = self.hanet.out_dim
        self._config = {
            "num_classes": self.num_classes, "backbone": backbone, "k": self.k, "use_nfa": self.hanet.use_nfa,
            "nfe_stages": list(self.hanet.nfe_stages), "gcn_dims": list(self.regcn.dims),
            "attention": self.regcn.attention, "node_weight": self.node_weight,
            "link_weight": self.link_weight, "lo": float(lo), "hi": float(hi),
        }

    def to_config(self) -> dict[str, Any]:
        """The constructor arguments this model was built with (JSON-serialisable)."""
        return {key: (list(value) if isinstance(value, list) else value)
                for key, value in self._config.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HDML:
        """Build a model from `to_config()`'s dict (`weights` may be added to initialise the backbone)."""
        kwargs = _config_from(cls, config, (*cls._CONFIG_KEYS, "weights"))
        if "num_classes" not in kwargs:
            raise ValueError("config should give num_classes")
        return cls(kwargs.pop("num_classes"), **kwargs)

    def embed(self, images: Tensor) -> Tensor:
        """HA-Net embeddings m of `images` [U, 3, H, W]: [U, out_dim] (inference and kNN)."""
        return self.hanet(images)

    def forward(self, images: Tensor, nodes: Tensor, adj: Tensor) -> HDMLOutput:
        """images [U, 3, H, W]; nodes int64 [B, k+1], rows of `images`, each graph's focus first;
        adj [B, k+1, k+1] bool/float. Returns `HDMLOutput`."""
        check_images(images)
        check_nodes(nodes, images.shape[0], self.k, images.device)
        check_adjacency(adj, nodes.shape[0], self.k, images.device)
        embeddings = self.hanet(images)
        node_logits = self.node_head(embeddings)
        link_logits = self.edge_head(self.regcn(embeddings, adj, index=nodes)[:, 1:])
        return HDMLOutput(embeddings, node_logits, link_logits)

    def loss(self, output: HDMLOutput, labels: Tensor, nodes: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The joint loss node_weight * L1 + link_weight * L2.

        L1: cross entropy of all U images' node logits against `labels` [U] (class ids).
        L2: cross entropy of the link logits against "labels[nodes[:, i]] == labels[nodes[:, 0]]"
        for i = 1..k. Returns (total, {"node": L1, "link": L2}).
        """
        num_images = output.node_logits.shape[0]
        check_labels("labels", labels, (num_images,))
        check_nodes(nodes, num_images, self.k, output.node_logits.device)
        if nodes.shape[0] != output.link_logits.shape[0]:
            raise ValueError(f"nodes should have one row per F-Graph of output "
                             f"({output.link_logits.shape[0]}), got {nodes.shape[0]}")
        node = functional.cross_entropy(output.node_logits.float(), labels)
        graph_labels = labels[nodes]
        link = link_loss(output.link_logits, graph_labels[:, 1:] == graph_labels[:, :1])
        total = self.node_weight * node + self.link_weight * link
        return total, {"node": node, "link": link}

    def link_scores(self, z: Tensor, adj: Tensor) -> Tensor:
        """S_f (eq. 14) of F-Graphs whose nodes are already embedded: z [B, k+1, out_dim] (focus
        first), adj [B, k+1, k+1] -> [B, k], the probability each node shares the focus's identity."""
        check_graph_batch(z, adj, self.out_dim)
        check_adjacency(adj, z.shape[0], self.k, z.device)
        logits = self.edge_head(self.regcn(z, adj)[:, 1:])
        return torch.softmax(logits.float(), dim=-1)[..., 1]


class HDMLOnFeatures(nn.Module):
    """RE-GCN + edge head on given node features (the paper's face clustering setting, where
    the embeddings come from a fixed ResNet-50).

    Args:
        in_dim: the features' width.
        k, gcn_dims, attention: as in `HDML`.

    `forward(z [B, k+1, in_dim], adj [B, k+1, k+1]) -> link_logits [B, k, 2]`.
    """

    input_kind = "features"
    _CONFIG_KEYS = ("in_dim", "k", "gcn_dims", "attention")

    def __init__(self, in_dim: int, *, k: int = 50, gcn_dims: Iterable[int] = (1536, 1536, 512, 256),
                 attention: bool = True) -> None:
        super().__init__()
        self.in_dim = require_int("in_dim", in_dim, minimum=1)
        self.out_dim = self.in_dim
        self.k = require_int("k", k, minimum=1)
        self.regcn = REGCN(in_dim, gcn_dims, attention)
        self.edge_head = EdgeHead(self.regcn.out_dim)

    def to_config(self) -> dict[str, Any]:
        """The constructor arguments this model was built with (JSON-serialisable)."""
        return {"in_dim": self.in_dim, "k": self.k, "gcn_dims": list(self.regcn.dims),
                "attention": self.regcn.attention}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HDMLOnFeatures:
        """Build a model from `to_config()`'s dict."""
        kwargs = _config_from(cls, config, cls._CONFIG_KEYS)
        if "in_dim" not in kwargs:
            raise ValueError("config should give in_dim")
        return cls(kwargs.pop("in_dim"), **kwargs)

    def forward(self, z: Tensor, adj: Tensor) -> Tensor:
        check_graph_batch(z, adj, self.in_dim)
        check_adjacency(adj, z.shape[0], self.k, z.device)
        return self.edge_head(self.regcn(z, adj)[:, 1:])

    def loss(self, link_logits: Tensor, labels_of_nodes: Tensor) -> Tensor:
        """L2: cross entropy of link_logits [B, k, 2] against "labels_of_nodes[:, i] ==
        labels_of_nodes[:, 0]" (i = 1..k); labels_of_nodes: [B, k+1] class ids of each graph's nodes."""
        if not isinstance(link_logits, Tensor):
            raise TypeError(f"link_logits should be a torch.Tensor, got {type(link_logits).__name__}")
        if link_logits.dim() != 3 or tuple(link_logits.shape[1:]) != (self.k, 2):
            raise ValueError(f"link_logits should be [B, k, 2] = [B, {self.k}, 2], "
                             f"got shape {tuple(link_logits.shape)}")
        check_labels("labels_of_nodes", labels_of_nodes, (link_logits.shape[0], self.k + 1))
        return link_loss(link_logits, labels_of_nodes[:, 1:] == labels_of_nodes[:, :1])

    def link_scores(self, z: Tensor, adj: Tensor) -> Tensor:
        """S_f (eq. 14): [B, k], the probability each non-focus node shares the focus's identity."""
        return torch.softmax(self.forward(z, adj).float(), dim=-1)[..., 1]
