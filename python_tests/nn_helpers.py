"""Small builders shared by the test_nn_* files: synthetic clustered features, F-Graphs from
them, and a check that a backward pass reached every parameter."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hdml_ext.ops import reference


def clustered_features(num_clusters: int, per_cluster: int, dim: int, *, spread: float = 0.3,
                       seed: int = 0) -> tuple[Tensor, Tensor]:
    """Features [C * per_cluster, dim] around C random unit centres, and their int64 labels."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(num_clusters, dim, generator=gen), dim=1)
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=gen) / dim ** 0.5
    return features, labels


def knn_fgraphs(features: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """F-Graphs of every point: nodes int64 [N, k+1] (focus first) and bool adjacency [N, k+1, k+1],
    from an exact kNN written in plain torch and the reference adjacency."""
    dist = torch.cdist(features, features)
    dist.fill_diagonal_(float("inf"))
    knn_idx = dist.topk(k, dim=1, largest=False).indices
    return reference.fgraph_nodes(knn_idx), reference.fgraph_adjacency(knn_idx)


def assert_every_parameter_has_a_finite_grad(module: nn.Module) -> None:
    """After a backward pass: every parameter that requires grad got a finite gradient."""
    missing = [name for name, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == [], f"no gradient reached {missing}"
    bad = [name for name, p in module.named_parameters()
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert bad == [], f"non-finite gradients in {bad}"
