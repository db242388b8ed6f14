"""Argument checks of the model's public entry points: each error names the argument, what
was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor


def check_ids_in_range(name: str, ids: Tensor, upper: int, what: str) -> None:
    """Raise unless every value of the int64 tensor `ids` lies in [0, upper).

    Reads the values (a device sync on CUDA); skipped while torch.compile traces, where an
    out-of-range id fails in the indexing kernel instead.
    """
    if torch.compiler.is_compiling() or ids.numel() == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= upper:
        raise ValueError(f"{name} should index the {upper} {what}, i.e. lie in [0, {upper}), "
                         f"got values in [{lo}, {hi}]")


def check_images(images: object) -> Tensor:
    """Raise unless `images` is a floating-point [U, 3, H, W] tensor with U >= 1."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images should be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images should be [U, 3, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images should be a floating-point tensor, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images should hold at least one image, got U = 0")
    return images


def _check_square_adjacency(adj: object, num_graphs: int, n: int, against: str) -> None:
    if not isinstance(adj, Tensor):
        raise TypeError(f"adj should be a torch.Tensor, got {type(adj).__name__}")
    if tuple(adj.shape) != (num_graphs, n, n):
        raise ValueError(f"adj should be [B, n, n] = [{num_graphs}, {n}, {n}] to match {against}, "
                         f"got shape {tuple(adj.shape)}")
    if adj.dtype != torch.bool and not adj.is_floating_point():
        raise TypeError(f"adj should be a bool or floating-point tensor, got dtype {adj.dtype}")


def check_graph_batch(z: object, adj: object, in_dim: int) -> None:
    """Raise unless z is a float [B, n, in_dim] tensor and adj a bool/float [B, n, n] one."""
    if not isinstance(z, Tensor):
        raise TypeError(f"z should be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 3 or z.shape[2] != in_dim:
        raise ValueError(f"z should be [B, n, {in_dim}] node features, got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"z should be a floating-point tensor, got dtype {z.dtype}")
    _check_square_adjacency(adj, z.shape[0], z.shape[1], "z")


def check_node_table(table: object, index: object, adj: object, in_dim: int) -> None:
    """Raise unless table is a float [U, in_dim] tensor, index an int64 [B, n] tensor of rows
    of it on its device, and adj a bool/float [B, n, n] tensor."""
    if not isinstance(table, Tensor):
        raise TypeError(f"z should be a torch.Tensor, got {type(table).__name__}")
    if not isinstance(index, Tensor):
        raise TypeError(f"index should be a torch.Tensor, got {type(index).__name__}")
    if table.dim() != 2 or table.shape[1] != in_dim:
        raise ValueError(f"z should be a [U, {in_dim}] table of node features when index is given, "
                         f"got shape {tuple(table.shape)}")
    if not table.is_floating_point():
        raise TypeError(f"z should be a floating-point tensor, got dtype {table.dtype}")
    if index.dtype != torch.int64 or index.dim() != 2:
        raise TypeError(f"index should be an int64 [B, n] tensor, got dtype {index.dtype} "
                        f"and shape {tuple(index.shape)}")
    if index.device != table.device:
        raise ValueError(f"index should be on {table.device} like z, got {index.device}")
    check_ids_in_range("index", index, table.shape[0], "rows of z")
    _check_square_adjacency(adj, index.shape[0], index.shape[1], "index")


def check_nodes(nodes: object, num_images: int, k: int, device: torch.device) -> Tensor:
    """Raise unless `nodes` is an int64 [B, k+1] tensor on `device` of ids in [0, num_images)."""
    if not isinstance(nodes, Tensor):
        raise TypeError(f"nodes should be a torch.Tensor, got {type(nodes).__name__}")
    if nodes.dtype != torch.int64:
        raise TypeError(f"nodes should have dtype torch.int64, got {nodes.dtype}")
    if nodes.dim() != 2 or nodes.shape[1] != k + 1:
        raise ValueError(f"nodes should be [B, k+1] = [B, {k + 1}] (k = {k}), got shape {tuple(nodes.shape)}")
    if nodes.device != device:
        raise ValueError(f"nodes should be on {device} like the images, got {nodes.device}")
    check_ids_in_range("nodes", nodes, num_images, "images")
    return nodes


def check_adjacency(adj: object, num_graphs: int, k: int, device: torch.device) -> Tensor:
    """Raise unless `adj` is a bool or float [B, k+1, k+1] tensor on `device`."""
    if not isinstance(adj, Tensor):
        raise TypeError(f"adj should be a torch.Tensor, got {type(adj).__name__}")
    expected = (num_graphs, k + 1, k + 1)
    if tuple(adj.shape) != expected:
        raise ValueError(f"adj should be [B, k+1, k+1] = {list(expected)}, got shape {tuple(adj.shape)}")
    if adj.dtype != torch.bool and not adj.is_floating_point():
        raise TypeError(f"adj should be a bool or floating-point tensor, got dtype {adj.dtype}")
    if adj.device != device:
        raise ValueError(f"adj should be on {device} like the node features, got {adj.device}")
    return adj


def check_labels(name: str, labels: object, shape: tuple[int, ...]) -> Tensor:
    """Raise unless `labels` is an integer tensor of `shape`."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} should be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != shape:
        raise ValueError(f"{name} should have shape {list(shape)}, got {tuple(labels.shape)}")
    return labels
