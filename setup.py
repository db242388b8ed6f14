"""Build hdml_ext._C: C++ CPU kernels always, CUDA kernels when torch and a toolkit allow.

Environment switches (the usual ones of PyTorch extension packages):

    FORCE_CUDA=1            build the CUDA kernels even when no GPU is visible (CI does this)
    FORCE_CPU=1             build the CPU kernels only, even when CUDA is available
    DEBUG=1                 -O0 -g, device debug info for CUDA
    MAX_JOBS=N              parallel compile jobs (ninja)
    TORCH_CUDA_ARCH_LIST    e.g. "9.0" or "8.0;9.0"; defaults to the visible GPUs, else "9.0"
    CUDA_HOME               the CUDA toolkit; found automatically when unset
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _log(message: str) -> None:
    print(f"hdml_ext build: {message}", file=sys.stderr, flush=True)


def _is_toolkit(prefix: Path) -> bool:
    """A CUDA toolkit prefix holds bin/nvcc and the runtime library under lib64 or lib."""
    has_nvcc = (prefix / "bin" / "nvcc").is_file()
    has_cudart = any(glob.glob(str(prefix / libdir / "libcudart.so*")) for libdir in ("lib64", "lib"))
    return has_nvcc and has_cudart


def _nvcc_wrapper_target(nvcc: Path) -> Path | None:
    """If `nvcc` is a small shell wrapper (`exec /real/prefix/bin/nvcc "$@"`), the real nvcc."""
    try:
        if nvcc.stat().st_size > 4096:
            return None
        text = nvcc.read_text(errors="ignore")
    except OSError:
        return None
    match = re.search(r"exec\s+(\S+/nvcc)\b", text)
    return Path(match.group(1)) if match else None


def find_cuda_toolkit() -> Path | None:
    """Locate the real CUDA toolkit, even when the nvcc on PATH lives outside it.

    torch guesses CUDA_HOME as the parent of the folder holding the first nvcc on PATH; where
    that nvcc is a link or wrapper in /usr/local/bin, the guess (/usr/local) is wrong. We accept
    a prefix only if it holds both bin/nvcc and lib64/libcudart.
    """
    candidates: list[Path] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
    nvcc_on_path = shutil.which("nvcc")
    if nvcc_on_path:
        nvcc = Path(nvcc_on_path)
        candidates.append(nvcc.resolve().parent.parent)
        wrapped = _nvcc_wrapper_target(nvcc)
        if wrapped is not None:
            candidates.append(wrapped.resolve().parent.parent)
        candidates.append(nvcc.parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    candidates.extend(sorted(Path(p) for p in glob.glob("/usr/local/cuda-*")))
    for prefix in candidates:
        if _is_toolkit(prefix):
            return prefix.resolve()
    return None


# Headers that torch's CUDA headers (ATen/cuda/CUDAContext.h) include. A minimal toolkit may
# lack them; torch's CUDA wheels ship them under site-packages/nvidia/*/include.
CUDA_LIBRARY_HEADERS = ("cublas_v2.h", "cusparse.h", "cusolverDn.h")


def cuda_library_include_dirs(toolkit: Path) -> list[str]:
    """Include folders for the CUDA math-library headers missing from `toolkit`/include."""
    missing = [h for h in CUDA_LIBRARY_HEADERS if not (toolkit / "include" / h).is_file()]
    if not missing:
        return []
    import site

    roots = [Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()]]
    found: list[str] = []
    for root in roots:
        for include in sorted(root.glob("nvidia/*/include")):
            if any((include / h).is_file() for h in missing) and str(include) not in found:
                found.append(str(include))
    still_missing = [h for h in missing if not any((Path(d) / h).is_file() for d in found)]
    if still_missing:
        _log(f"warning: {', '.join(still_missing)} found neither in {toolkit}/include nor in "
             "site-packages/nvidia/*/include; the CUDA build may fail")
    return found


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


FORCE_CUDA = _flag("FORCE_CUDA")
FORCE_CPU = _flag("FORCE_CPU")
DEBUG = _flag("DEBUG")

if FORCE_CUDA and FORCE_CPU:
    sys.exit("hdml_ext build: FORCE_CUDA=1 and FORCE_CPU=1 contradict each other; set one")

CUDA_TOOLKIT = None if FORCE_CPU else find_cuda_toolkit()
if CUDA_TOOLKIT is not None:
    # Must happen before torch.utils.cpp_extension is imported: it reads CUDA_HOME once.
    os.environ["CUDA_HOME"] = str(CUDA_TOOLKIT)

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda() -> bool:
    if FORCE_CPU:
        _log("FORCE_CPU=1: building CPU kernels only")
        return False
    if torch.version.cuda is None:
        if FORCE_CUDA:
            sys.exit("hdml_ext build: FORCE_CUDA=1 but the installed torch has no CUDA support")
        _log("torch was built without CUDA: building CPU kernels only")
        return False
    if CUDA_TOOLKIT is None:
        if FORCE_CUDA:
            sys.exit(
                "hdml_ext build: FORCE_CUDA=1 but no CUDA toolkit was found "
                "(set CUDA_HOME to the prefix holding bin/nvcc and lib64/libcudart.so)"
            )
        _log("no CUDA toolkit found: building CPU kernels only")
        return False
    if not torch.cuda.is_available() and not FORCE_CUDA:
        _log(f"CUDA toolkit at {CUDA_TOOLKIT} and no GPU visible: building CUDA kernels too "
             "(set FORCE_CPU=1 to skip them)")
    return True


def _arch_list() -> str:
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if arch:
        return arch
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        arch = ";".join(f"{major}.{minor}" for major, minor in caps)
    else:
        arch = "9.0"
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    return arch


def _version() -> str:
    text = (ROOT / "hdml_ext" / "_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if match is None:
        sys.exit("hdml_ext build: no __version__ in hdml_ext/_version.py")
    return match.group(1)


def _sources(pattern: str) -> list[str]:
    return sorted(str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / pattern), recursive=True))


def extensions() -> list:
    with_cuda = _want_cuda()
    sources = _sources("csrc/python_module.cpp") + _sources("csrc/ops.cpp") + _sources("csrc/*/*_cpu.cpp")
    cxx_flags = ["-O0", "-g"] if DEBUG else ["-O3"]
    cxx_flags += ["-fdiagnostics-color=always", "-fopenmp"]
    link_flags = ["-fopenmp"]  # at::parallel_for runs the kernels' loops on OpenMP threads
    if not with_cuda:
        _log(f"building CPU kernels ({len(sources)} sources)")
        return [CppExtension("hdml_ext._C", sources, extra_compile_args={"cxx": cxx_flags},
                             extra_link_args=link_flags, py_limited_api=True)]
    cuda_sources = _sources("csrc/*/*_cuda.cu")
    arch = _arch_list()
    nvcc_flags = ["-G", "-g", "-O0"] if DEBUG else ["-O3", "-lineinfo"]
    nvcc_flags += ["--expt-relaxed-constexpr"]
    include_dirs = cuda_library_include_dirs(CUDA_TOOLKIT)
    _log(f"building CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST={arch} with the toolkit at "
         f"{CUDA_TOOLKIT} ({len(sources)} C++ and {len(cuda_sources)} CUDA sources)")
    if include_dirs:
        _log(f"CUDA library headers from {', '.join(include_dirs)}")
    return [CUDAExtension("hdml_ext._C", sources + cuda_sources, include_dirs=include_dirs,
                          extra_compile_args={"cxx": [*cxx_flags, "-DWITH_CUDA"], "nvcc": nvcc_flags},
                          extra_link_args=link_flags, py_limited_api=True)]


setup(
    version=_version(),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
