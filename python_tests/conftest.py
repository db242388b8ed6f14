"""Shared fixtures: the device list every op test is parametrised over.

CUDA cases are collected everywhere and skip, saying why, where no GPU is present.
"""

from __future__ import annotations

import pytest
import torch

import hdml_ext  # noqa: F401  (registers torch.ops.hdml.*)

_NO_CUDA_REASON = "no CUDA GPU present: the CUDA kernels are compiled but cannot run here"

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=_NO_CUDA_REASON)],
    ),
]


def cuda_built() -> bool:
    """Whether this build of hdml_ext._C carries CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("hdml::knn", "CUDA")
