"""Argument checks for the whole package: each error names the argument, what was expected and
what came.

- Numbers: `require_int`, `require_float`, `require_fraction`, `require_int_in_range`,
  `require_model_k` (an F-Graph k that must be the model's).
- Tensors: `require_tensor`, `require_floating`, `require_index`, `require_dim`,
  `require_same_device`, `require_device`, `require_ids_in_range`, `require_labels`,
  `require_class_labels`.
- Model inputs (`hdml_ext.nn`): `require_images`, `require_graph_batch`, `require_node_table`,
  `require_nodes`, `require_adjacency`; Re-ID embeddings: `require_query_gallery`.
- numpy-side inputs (metrics, propagation): `as_array`, `as_int_vector`, `as_float_array`,
  `same_length`. They accept numpy arrays, torch tensors (any device; detached and copied to
  host) and sequences.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# Numbers


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Raise TypeError unless `value` is an int or numpy integer (not bool), ValueError if below
    `minimum`; return it as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be an int, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} should be >= {minimum}, got {value}")
    return int(value)


def require_int_in_range(name: str, value: object, low: int, high: int) -> int:
    """Raise unless `value` is an int in low..high (both included); return it."""
    require_int(name, value)
    if not low <= value <= high:
        raise ValueError(f"{name} should be in {low}..{high}, got {value}")
    return int(value)


def require_model_k(name: str, k: object, model_k: int) -> int:
    """`k`, or `model_k` when None. Raise ValueError naming `name` unless it equals the model's
    k: a model is trained on F-Graphs of its own k and takes no other (`require_nodes`), so a
    caller checks this before any kNN work."""
    if k is None:
        return int(model_k)
    require_int(name, k, minimum=1)
    if k != model_k:
        raise ValueError(f"{name} should be None or the model's k = {model_k} (its F-Graphs' size: the "
                         f"model takes no other), got {k}")
    return int(k)


def require_float(name: str, value: object) -> float:
    """Raise TypeError unless `value` is a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, got {type(value).__name__} ({value!r})")
    return float(value)


def require_fraction(name: str, value: object) -> float:
    """Raise ValueError unless `value` is a number strictly between 0 and 1; return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} should be a number strictly between 0 and 1, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Tensors


def require_tensor(name: str, value: object) -> Tensor:
    """Raise TypeError unless `value` is a torch.Tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    return value


def require_floating(name: str, tensor: Tensor) -> None:
    """Raise TypeError unless `tensor` has a floating-point dtype."""
    if not tensor.is_floating_point():
        raise TypeError(f"{name} should be a floating-point tensor, got dtype {tensor.dtype}")


def require_index(name: str, tensor: Tensor) -> None:
    """Raise TypeError unless `tensor` has dtype int64."""
    if tensor.dtype != torch.int64:
        raise TypeError(f"{name} should have dtype torch.int64, got {tensor.dtype}")


def require_dim(name: str, tensor: Tensor, ndim: int) -> None:
    """Raise ValueError unless `tensor` has `ndim` dimensions."""
    if tensor.dim() != ndim:
        raise ValueError(f"{name} should be {ndim}-D, got {tensor.dim()}-D with shape {tuple(tensor.shape)}")


def require_same_device(name: str, tensor: Tensor, reference_name: str, reference: Tensor) -> None:
    """Raise ValueError unless `tensor` is on `reference`'s device.

    A kernel runs on one device and reads every tensor argument there; mixed devices would
    otherwise reach a kernel (or a meta stand-in) that cannot read the other tensor.
    """
    if tensor.device != reference.device:
        raise ValueError(f"{name} should be on {reference_name}'s device {reference.device}, "
                         f"got {tensor.device}")


def require_device(name: str, tensor: Tensor, device: torch.device, like: str) -> None:
    """Raise ValueError unless `tensor` is on `device`, the device of what `like` names."""
    if tensor.device != device:
        raise ValueError(f"{name} should be on {device} like {like}, got {tensor.device}")


def require_ids_in_range(name: str, ids: Tensor, upper: int, what: str) -> None:
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


def require_labels(name: str, labels: object, shape: tuple[int, ...]) -> Tensor:
    """Raise unless `labels` is an integer tensor of `shape`."""
    require_tensor(name, labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} should be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != shape:
        raise ValueError(f"{name} should have shape {list(shape)}, got {tuple(labels.shape)}")
    return labels


def require_class_labels(name: str, labels: object, num_rows: int, num_classes: int | None) -> Tensor:
    """Raise unless `labels` is an integer [num_rows] tensor of class ids in [0, num_classes)
    (num_classes None: a model without a node head, ids >= 0); the error names the first row
    outside. Checked before any loss: out of range, the node head's cross entropy is a CUDA
    device-side assert, not an error."""
    require_tensor(name, labels)
    if labels.dim() != 1 or labels.shape[0] != num_rows:
        raise ValueError(f"{name} should be [N] = [{num_rows}] to match the training rows, got "
                         f"{tuple(labels.shape)}")
    require_labels(name, labels, (num_rows,))
    upper = "" if num_classes is None else f", {num_classes}"
    outside = labels < 0 if num_classes is None else (labels < 0) | (labels >= num_classes)
    if bool(outside.any()):
        row = int(torch.nonzero(outside)[0, 0])
        raise ValueError(f"{name} should hold class ids in [0{upper}) (the model's num_classes), got "
                         f"{int(labels[row])} at row {row}")
    return labels


# ---------------------------------------------------------------------------------------------
# Model inputs


def require_images(images: object) -> Tensor:
    """Raise unless `images` is a floating-point [U, 3, H, W] tensor with U >= 1."""
    require_tensor("images", images)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images should be [U, 3, H, W], got shape {tuple(images.shape)}")
    require_floating("images", images)
    if images.shape[0] == 0:
        raise ValueError("images should hold at least one image, got U = 0")
    return images


def require_adjacency(adj: object, shape: tuple[int, int, int], described: str) -> Tensor:
    """Raise unless `adj` is a bool or floating-point tensor of `shape`; `described` says the
    expected shape in the message (e.g. "[B, k+1, k+1] = [4, 6, 6]")."""
    require_tensor("adj", adj)
    if tuple(adj.shape) != shape:
        raise ValueError(f"adj should be {described}, got shape {tuple(adj.shape)}")
    if adj.dtype != torch.bool and not adj.is_floating_point():
        raise TypeError(f"adj should be a bool or floating-point tensor, got dtype {adj.dtype}")
    return adj


def _require_square_adjacency(adj: object, num_graphs: int, n: int, against: str) -> None:
    shape = (num_graphs, n, n)
    require_adjacency(adj, shape, f"[B, n, n] = {list(shape)} to match {against}")


def require_graph_batch(z: object, adj: object, in_dim: int) -> None:
    """Raise unless z is a float [B, n, in_dim] tensor and adj a bool/float [B, n, n] one."""
    require_tensor("z", z)
    if z.dim() != 3 or z.shape[2] != in_dim:
        raise ValueError(f"z should be [B, n, {in_dim}] node features, got shape {tuple(z.shape)}")
    require_floating("z", z)
    _require_square_adjacency(adj, z.shape[0], z.shape[1], "z")


def require_node_table(table: object, index: object, adj: object, in_dim: int) -> None:
    """Raise unless table is a float [U, in_dim] tensor, index an int64 [B, n] tensor of rows
    of it on its device, and adj a bool/float [B, n, n] tensor."""
    require_tensor("z", table)
    require_tensor("index", index)
    if table.dim() != 2 or table.shape[1] != in_dim:
        raise ValueError(f"z should be a [U, {in_dim}] table of node features when index is given, "
                         f"got shape {tuple(table.shape)}")
    require_floating("z", table)
    if index.dtype != torch.int64 or index.dim() != 2:
        raise TypeError(f"index should be an int64 [B, n] tensor, got dtype {index.dtype} "
                        f"and shape {tuple(index.shape)}")
    require_device("index", index, table.device, "z")
    require_ids_in_range("index", index, table.shape[0], "rows of z")
    _require_square_adjacency(adj, index.shape[0], index.shape[1], "index")


def require_nodes(nodes: object, num_images: int, k: int, device: torch.device) -> Tensor:
    """Raise unless `nodes` is an int64 [B, k+1] tensor on `device` of ids in [0, num_images)."""
    require_tensor("nodes", nodes)
    require_index("nodes", nodes)
    if nodes.dim() != 2 or nodes.shape[1] != k + 1:
        raise ValueError(f"nodes should be [B, k+1] = [B, {k + 1}] (k = {k}), got shape {tuple(nodes.shape)}")
    require_device("nodes", nodes, device, "the images")
    require_ids_in_range("nodes", nodes, num_images, "images")
    return nodes


def require_graph_adjacency(adj: object, num_graphs: int, k: int, device: torch.device) -> Tensor:
    """Raise unless `adj` is a bool or float [B, k+1, k+1] tensor on `device`."""
    shape = (num_graphs, k + 1, k + 1)
    require_adjacency(adj, shape, f"[B, k+1, k+1] = {list(shape)}")
    require_device("adj", adj, device, "the node features")
    return adj


def require_query_gallery(query: object, gallery: object) -> None:
    """Raise unless query [Q, D] and gallery [G, D] are non-empty 2-D tensors of one width D."""
    require_tensor("query", query)
    require_tensor("gallery", gallery)
    require_dim("query", query, 2)
    require_dim("gallery", gallery, 2)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query should have D = {gallery.shape[1]} columns like gallery, got {query.shape[1]}"
        )
    if query.shape[0] == 0 or gallery.shape[0] == 0:
        raise ValueError(
            f"query and gallery should be non-empty, got {query.shape[0]} and {gallery.shape[0]} rows"
        )


# ---------------------------------------------------------------------------------------------
# numpy-side inputs


def as_array(name: str, value: object) -> np.ndarray:
    """Return `value` as a numpy array (a tensor is detached and moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if value is None:
        raise TypeError(f"{name} should be an array or a tensor, got None")
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} should be an array or a tensor, got {type(value).__name__}") from error


def as_int_vector(name: str, value: object, *, allow_empty: bool = False) -> np.ndarray:
    """Return `value` as a 1-D int64 array; integer (or bool) dtypes only."""
    array = as_array(name, value)
    if array.ndim != 1:
        raise ValueError(f"{name} should be 1-D, got {array.ndim}-D with shape {array.shape}")
    if array.size == 0:
        if not allow_empty:
            raise ValueError(f"{name} should not be empty, got shape {array.shape}")
        return array.astype(np.int64)
    if array.dtype.kind not in "iub":
        raise TypeError(f"{name} should hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def as_float_array(name: str, value: object, ndim: int, *, allow_inf: bool = False) -> np.ndarray:
    """Return `value` as a floating array of rank `ndim` with no NaN (and no inf unless allowed).

    Floating inputs keep their dtype (no copy of a large float32 matrix); integer ones become float64.
    """
    array = as_array(name, value)
    if array.ndim != ndim:
        raise ValueError(f"{name} should be {ndim}-D, got {array.ndim}-D with shape {array.shape}")
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name} should hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    bad = np.isnan(array) if allow_inf else ~np.isfinite(array)
    if bad.any():
        what = "NaN" if allow_inf else "NaN or inf"
        raise ValueError(f"{name} should hold no {what}, got {int(bad.sum())} such entries")
    return array


def same_length(names: tuple[str, str], arrays: tuple[np.ndarray, np.ndarray]) -> None:
    """Raise ValueError unless the two 1-D arrays have the same length."""
    if arrays[0].shape[0] != arrays[1].shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} should have the same length, "
            f"got {arrays[0].shape[0]} and {arrays[1].shape[0]}"
        )
