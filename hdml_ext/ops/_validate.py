"""Argument checks shared by the op wrappers: messages name the argument, what was expected
and what came."""

from __future__ import annotations

import torch
from torch import Tensor


def require_tensor(name: str, value: object) -> Tensor:
    """Raise TypeError unless `value` is a torch.Tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(value).__name__}")
    return value


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Raise TypeError unless `value` is an int (not bool), ValueError if below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be an int, got {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} should be >= {minimum}, got {value}")
    return value


def require_float(name: str, value: object) -> float:
    """Raise TypeError unless `value` is a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, got {type(value).__name__} ({value!r})")
    return float(value)


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
