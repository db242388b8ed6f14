"""Guards on the build: source layout that keeps one op = one schema + one CPU file + one CUDA
file + one wrapper + one reference + one test file, and unique object names."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import torch

import hdml_ext
from hdml_ext.ops import reference

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"


def _schemas() -> list[str]:
    text = (CSRC / "ops.cpp").read_text()
    return re.findall(r'm\.def\(\s*"([a-z_]+)\(', text)


def _ops() -> list[str]:
    return sorted(p.name for p in CSRC.iterdir() if p.is_dir())


def test_source_file_names_are_unique():
    # Object files are named after their sources: two `kernel.cpp` would collide silently.
    stems = Counter(p.stem for p in CSRC.rglob("*") if p.suffix in (".cpp", ".cu"))
    assert [s for s, n in stems.items() if n > 1] == []


def test_every_op_has_all_its_parts():
    schemas = set(_schemas())
    for op in _ops():
        assert op in schemas, f"csrc/{op}/ has no schema in csrc/ops.cpp"
        for part in (f"{op}.h", f"{op}_cpu.cpp", f"{op}_cuda.cu"):
            assert (CSRC / op / part).is_file(), f"csrc/{op}/{part} is missing"
        assert (ROOT / "hdml_ext" / "ops" / f"{op}.py").is_file()
        assert callable(getattr(hdml_ext.ops, op))
        assert callable(getattr(reference, op))
        assert (ROOT / "python_tests" / f"test_ops_{op}.py").is_file()


def test_every_source_belongs_to_its_op_folder():
    # Helper headers of a kernel (csrc/knn/knn_cpu_select.h) live beside it, named after the op;
    # shared helpers live in csrc/ itself (csrc/utils.h).
    for op in _ops():
        strays = [p.name for p in (CSRC / op).iterdir() if not p.name.startswith(op)]
        assert strays == [], f"csrc/{op}/ holds files not named after the op: {strays}"


def test_every_schema_has_a_cpu_kernel():
    for name in _schemas():
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"hdml::{name}", "CPU"), name


def test_extension_takes_the_cxx_library_from_libstdcxx():
    # A compiler wrapper that links its own copy of libstdc++ into _C (seen on a GPU machine
    # whose CXX was such a wrapper) builds a library in which every error message holding a
    # number crashes the process: the stream is made by one copy of the library and written by
    # the other. A healthy build leaves the stream code undefined, for libstdc++.so to supply.
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm (binutils) to read the extension's symbol table")
    symbols = subprocess.run(
        [nm, "-D", "--defined-only", "-C", hdml_ext._C.__file__], capture_output=True, text=True, check=True
    ).stdout
    stream_code = re.compile(r"std::(basic_ostream|ostream::|codecvt)")
    carried = [line for line in symbols.splitlines() if stream_code.search(line)]
    assert carried == [], f"_C carries its own C++ stream library: {carried[:3]}"
