"""Shared fixtures: the device list every op test is parametrised over.

CUDA cases are collected everywhere and skip, saying why, where no GPU is present.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_with_cpu_capability(script: str, capability: str = "default") -> str:
    """Run `script` in a fresh Python with ATEN_CPU_CAPABILITY=`capability` (read once per
    process; "default" selects the kernels' portable CPU paths, csrc/utils.h cpu_isa), with the
    repository and python_tests importable (sys.argv[1] is python_tests). Returns its stdout;
    fails the calling test with the end of its stderr."""
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability,
           "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script, str(tests)], env=env, cwd=tests.parent,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
