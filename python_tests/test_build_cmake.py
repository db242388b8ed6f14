"""The CMake build of csrc/ must keep working: configure and build it with the installed cmake,
then load the library in a fresh interpreter and check every schema has a CPU kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.utils

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def test_cmake_builds_the_cpu_kernels(tmp_path: Path) -> None:
    build = tmp_path / "build"
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")}
    subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
        check=True, capture_output=True, text=True, env=env,
    )
    subprocess.run(
        ["cmake", "--build", str(build), "-j2"], check=True, capture_output=True, text=True, env=env
    )
    library = build / "libhdml_ext_ops.so"
    assert library.is_file()
    probe = (
        "import re, sys, torch\n"
        f"torch.ops.load_library({str(library)!r})\n"
        f"names = re.findall(r'm\\.def\\(\\s*\"([a-z_]+)\\(', "
        f"open({str(ROOT / 'csrc' / 'ops.cpp')!r}).read())\n"
        "missing = [n for n in names\n"
        "           if not torch._C._dispatch_has_kernel_for_dispatch_key('hdml::' + n, 'CPU')]\n"
        "print(len(names), missing)\n"
        "sys.exit(1 if missing or not names else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
