"""Conversion and checks for the numpy-side APIs (metrics, readers, propagation).

They accept numpy arrays, torch tensors (any device; detached and copied to host) and
sequences; messages name the argument, what was expected and what came.
"""

from __future__ import annotations

import numpy as np
import torch


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
