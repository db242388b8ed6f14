"""The two models (paper Fig. 1): `HDML`, the whole multi-task model (shared HA-Net -> node
head, L1; RE-GCN on each F-Graph -> edge head, L2), and `HDMLOnFeatures`, its graph half on
given features (the paper's face clustering setting). Both answer the same calls (see
`FGraphLinkModel` for the shared graph half):

    model.input_kind                       # "images" or "features": what the rows are
    model.embed(rows [U, ...]) -> [U, out_dim]
    model(rows, nodes [B, k+1], adj [B, k+1, k+1]) -> HDMLOutput
    model.loss(output, labels [U], nodes) -> (total, {"node": L1, "link": L2} or {"link": L2})
    model.link_scores(z [B, k+1, out_dim], adj) -> [B, k]
    model.link_scores_of_nodes(table [N, out_dim], batches of (nodes, adj)) -> iterator of [B, k]
    model.to_config() / type(model).from_config(config); model.k, model.out_dim
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor
from torch.nn import functional

from .._checks import (
    require_float,
    require_floating,
    require_graph_adjacency,
    require_images,
    require_int,
    require_nodes,
    require_tensor,
)
from .base import FGraphLinkModel, HDMLOutput, config_from
from .hanet import HANet
from .heads import NodeHead

#: The graph half's config keys: what `HDMLOnFeatures` takes besides in_dim, and `HDML` with its own.
GRAPH_CONFIG_KEYS = ("k", "gcn_dims", "attention", "edge_input", "relative_input", "balanced_link_loss",
                     "cosine_prior", "overlap_prior")


class HDML(FGraphLinkModel):
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
        edge_input, relative_input, balanced_link_loss, cosine_prior, overlap_prior: the
            focus-aware link options of `FGraphLinkModel` (defaults: the paper's head, input and
            loss).

    `to_config()` records these (all but `weights`, which only initialises the backbone: a
    saved model's state dict carries the trained values); `from_config` rebuilds the model.
    """

    input_kind: ClassVar[str] = "images"
    _CONFIG_KEYS = ("num_classes", "backbone", "use_nfa", "nfe_stages", "node_weight", "link_weight",
                    "lo", "hi", *GRAPH_CONFIG_KEYS)

    def __init__(self, num_classes: int, *, backbone: str = "resnet50", k: int = 50, use_nfa: bool = True,
                 nfe_stages: Iterable[int] = (2, 3, 4), gcn_dims: Iterable[int] = (1536, 1536, 512, 256),
                 attention: bool = True, node_weight: float = 1.0, link_weight: float = 1.0,
                 lo: float = 0.3, hi: float = 0.9, weights: str | os.PathLike | None = None,
                 edge_input: str = "node", relative_input: bool = False,
                 balanced_link_loss: bool = False, cosine_prior: bool = False,
                 overlap_prior: bool = False) -> None:
        super().__init__()
        self.num_classes = require_int("num_classes", num_classes, minimum=1)
        k = require_int("k", k, minimum=1)
        self.node_weight = require_float("node_weight", node_weight)
        self.link_weight = require_float("link_weight", link_weight)
        self.hanet = HANet(backbone, use_nfa, nfe_stages, weights, lo, hi)
        self.node_head = NodeHead(self.hanet.out_dim, num_classes)
        self._build_graph_half(self.hanet.out_dim, k, gcn_dims, attention, edge_input, relative_input,
                               balanced_link_loss, cosine_prior, overlap_prior)
        self.out_dim = self.hanet.out_dim
        self._config = {
            "num_classes": self.num_classes, "backbone": backbone, "k": self.k, "use_nfa": self.hanet.use_nfa,
            "nfe_stages": list(self.hanet.nfe_stages), "gcn_dims": list(self.regcn.dims),
            "attention": self.regcn.attention, "node_weight": self.node_weight,
            "link_weight": self.link_weight, "lo": float(lo), "hi": float(hi), **self._graph_options(),
        }

    def to_config(self) -> dict[str, Any]:
        """The constructor arguments this model was built with (JSON-serialisable)."""
        return {key: (list(value) if isinstance(value, list) else value)
                for key, value in self._config.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HDML:
        """Build a model from `to_config()`'s dict (`weights` may be added to initialise the backbone)."""
        kwargs = config_from(cls, config, (*cls._CONFIG_KEYS, "weights"))
        if "num_classes" not in kwargs:
            raise ValueError("config should give num_classes")
        return cls(kwargs.pop("num_classes"), **kwargs)

    def embed(self, images: Tensor) -> Tensor:
        """HA-Net embeddings m of `images` [U, 3, H, W]: [U, out_dim] (inference and kNN)."""
        return self.hanet(images)

    def forward(self, images: Tensor, nodes: Tensor, adj: Tensor) -> HDMLOutput:
        """images [U, 3, H, W]; nodes int64 [B, k+1], rows of `images`, each graph's focus first;
        adj [B, k+1, k+1] bool/float, directed as `FGraphs.batch` gives it (a symmetric one
        raises with overlap_prior: `FGraphLinkModel`). Returns `HDMLOutput`."""
        require_images(images)
        require_nodes(nodes, images.shape[0], self.k, images.device)
        require_graph_adjacency(adj, nodes.shape[0], self.k, images.device)
        embeddings = self.hanet(images)
        node_logits = self.node_head(embeddings)
        return HDMLOutput(embeddings, node_logits, self._link_logits(embeddings, nodes, adj))

    def loss(self, output: HDMLOutput, labels: Tensor, nodes: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The joint loss node_weight * L1 + link_weight * L2.

        L1: cross entropy of all U images' node logits against `labels` [U] (class ids).
        L2: cross entropy of the link logits against "labels[nodes[:, i]] == labels[nodes[:, 0]]"
        for i = 1..k (class-balanced with balanced_link_loss). Returns (total, {"node": L1, "link": L2}).
        """
        self._check_loss_inputs(output, labels, nodes)
        node = functional.cross_entropy(output.node_logits.float(), labels)
        link = self._link_loss(output, labels, nodes)
        total = self.node_weight * node + self.link_weight * link
        return total, {"node": node, "link": link}


class HDMLOnFeatures(FGraphLinkModel):
    """RE-GCN + edge head on given node features (the paper's face clustering setting, where
    the embeddings come from a fixed ResNet-50): the rows are features, and they are their own
    embeddings.

    Args:
        in_dim: the features' width.
        k, gcn_dims, attention, edge_input, relative_input, balanced_link_loss, cosine_prior,
            overlap_prior:
            as in `HDML`.

    `forward(rows [U, in_dim], nodes [B, k+1], adj [B, k+1, k+1]) -> HDMLOutput(rows, None,
    link_logits [B, k, 2])`; `loss` is L2 alone.
    """

    input_kind: ClassVar[str] = "features"
    _CONFIG_KEYS = ("in_dim", *GRAPH_CONFIG_KEYS)

    def __init__(self, in_dim: int, *, k: int = 50, gcn_dims: Iterable[int] = (1536, 1536, 512, 256),
                 attention: bool = True, edge_input: str = "node", relative_input: bool = False,
                 balanced_link_loss: bool = False, cosine_prior: bool = False,
                 overlap_prior: bool = False) -> None:
        super().__init__()
        self.in_dim = require_int("in_dim", in_dim, minimum=1)
        self._build_graph_half(in_dim, require_int("k", k, minimum=1), gcn_dims, attention, edge_input,
                               relative_input, balanced_link_loss, cosine_prior, overlap_prior)
        self.out_dim = self.in_dim

    def to_config(self) -> dict[str, Any]:
        """The constructor arguments this model was built with (JSON-serialisable)."""
        return {"in_dim": self.in_dim, "k": self.k, "gcn_dims": list(self.regcn.dims),
                "attention": self.regcn.attention, **self._graph_options()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> HDMLOnFeatures:
        """Build a model from `to_config()`'s dict (keys added since an older config default)."""
        kwargs = config_from(cls, config, cls._CONFIG_KEYS)
        if "in_dim" not in kwargs:
            raise ValueError("config should give in_dim")
        return cls(kwargs.pop("in_dim"), **kwargs)

    def embed(self, rows: Tensor) -> Tensor:
        """The embeddings of feature rows [U, in_dim]: the rows themselves, checked."""
        require_tensor("rows", rows)
        if rows.dim() != 2 or rows.shape[1] != self.in_dim:
            raise ValueError(f"rows should be [U, {self.in_dim}] features, got shape {tuple(rows.shape)}")
        require_floating("rows", rows)
        return rows

    def forward(self, rows: Tensor, nodes: Tensor, adj: Tensor) -> HDMLOutput:
        """rows [U, in_dim] features; nodes int64 [B, k+1], rows of `rows`, each graph's focus
        first; adj [B, k+1, k+1] bool/float, directed as `FGraphs.batch` gives it (a symmetric
        one raises with overlap_prior: `FGraphLinkModel`). Returns `HDMLOutput` with node_logits
        None."""
        self.embed(rows)
        require_nodes(nodes, rows.shape[0], self.k, rows.device)
        require_graph_adjacency(adj, nodes.shape[0], self.k, rows.device)
        return HDMLOutput(rows, None, self._link_logits(rows, nodes, adj))

    def loss(self, output: HDMLOutput, labels: Tensor, nodes: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """L2 alone: cross entropy of the link logits against "labels[nodes[:, i]] ==
        labels[nodes[:, 0]]" (i = 1..k; class-balanced with balanced_link_loss), labels [U] the
        rows' class ids. Returns (L2, {"link": L2})."""
        self._check_loss_inputs(output, labels, nodes)
        link = self._link_loss(output, labels, nodes)
        return link, {"link": link}
