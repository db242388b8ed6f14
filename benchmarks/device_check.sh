#!/usr/bin/env bash
# One call on a lent CUDA machine: build with the CUDA kernels, run the CUDA tests, then the GPU
# benchmarks. Every stage has its own time limit and writes its log under $OUT (default
# results/device), so a late stage running out of time still leaves the earlier ones' results.
#
#   bash benchmarks/device_check.sh            # carry .whl (omegaconf, faiss-cpu wheels) along
#
# Stages: build, cuda tests (pytest -m cuda), bench_ops --device cuda, knn_cuda_scale (N = 1e5,
# 1e6), the ablation bench's demo-sized row trained on the GPU.
set -u
OUT=${OUT:-results/device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
stage() {  # stage NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - started)) s" | tee -a "$OUT/stages.txt"
  tail -n 25 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" >>"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
# The system compilers: the lent machines set CXX to a g++ wrapper that links a private copy of
# libstdc++ into _C, and every error message holding a number then crashes the process
# (python_tests/test_build.py guards against such a build).
export CC=/usr/bin/gcc CXX=/usr/bin/g++ NVCC_PREPEND_FLAGS="-ccbin /usr/bin/g++"
export MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1
stage build "${BUILD_LIMIT:-150}" python3 setup.py build_ext --inplace
python3 -c "import hdml_ext, torch; print('CUDA kernels:', torch._C._dispatch_has_kernel_for_dispatch_key('hdml::knn', 'CUDA'))"
stage cuda_tests "${TEST_LIMIT:-170}" python3 -m pytest python_tests -m cuda -q --maxfail=40 -n 8 -p no:cacheprovider \
  --durations=15
stage bench_ops "${OPS_LIMIT:-40}" python3 benchmarks/bench_ops.py --device cuda --out "$OUT/bench_ops"
stage knn_scale "${KNN_LIMIT:-70}" python3 benchmarks/knn_cuda_scale.py --out "$OUT/knn_cuda"
stage ablation "${ABLATION_LIMIT:-90}" python3 benchmarks/bench_ablation.py --device cuda --only paper \
  --seeds 0 --size 16 --max-identities 400 --epochs 6 --out "$OUT/ablation"
cat "$OUT/stages.txt"
