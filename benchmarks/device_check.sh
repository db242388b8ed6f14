#!/usr/bin/env bash
# One call on a lent CUDA machine: build with the CUDA kernels, run the CUDA tests, then the GPU
# benchmarks. Every stage has its own time limit and writes its log under results/device; after
# each stage that folder is packed into $OUT/device.tgz (the device tool returns few files), so a
# late stage running out of time still leaves the earlier ones' results.
#
#   bash benchmarks/device_check.sh            # carry .whl (omegaconf, faiss-cpu wheels) along
#
# Stages, most important first: build, cuda tests (pytest -m cuda), knn_cuda_scale (exact ops.knn,
# the "ivf" backend at N = 1e6, ops.knn_ivf's row kernel against the tiled join), bench_cluster's
# whole pipeline at 1e6 on the GPU, bench_scoring on the GPU, bench_model's paper-sized training
# step, and the ablation's overlap prior row trained on the GPU.
set -u
LOG=results/device
OUT=${OUT:-$LOG}
mkdir -p "$LOG" "$OUT"
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
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - started)) s" | tee -a "$LOG/stages.txt"
  tail -n 12 "$LOG/$name.log"
  tar czf "$OUT/device.tgz" "$LOG"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$LOG/gpu.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)" >>"$LOG/gpu.txt" 2>&1
nproc >>"$LOG/gpu.txt"
cat "$LOG/gpu.txt"
# The system compilers: the lent machines set CXX to a g++ wrapper that links a private copy of
# libstdc++ into _C, and every error message holding a number then crashes the process
# (python_tests/test_build.py guards against such a build).
export CC=/usr/bin/gcc CXX=/usr/bin/g++ NVCC_PREPEND_FLAGS="-ccbin /usr/bin/g++"
export MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1
stage build "${BUILD_LIMIT:-200}" python3 setup.py build_ext --inplace
python3 -c "import hdml_ext, torch; print('CUDA kernels:', torch._C._dispatch_has_kernel_for_dispatch_key('hdml::knn_ivf', 'CUDA'))"
stage cuda_tests "${TEST_LIMIT:-130}" python3 -m pytest python_tests -m cuda -q --maxfail=40 -n 8 -p no:cacheprovider \
  --durations=15
stage knn_scale "${KNN_LIMIT:-100}" python3 benchmarks/knn_cuda_scale.py --sizes 1e6 --faiss-nprobe 0 --out "$LOG/knn_cuda"
stage cluster "${CLUSTER_LIMIT:-90}" python3 benchmarks/bench_cluster.py --sizes 1e6 --device cuda --backend ivf \
  --alternatives "" --stage-limit 60 --out "$LOG/cluster"
stage scoring "${SCORING_LIMIT:-40}" python3 benchmarks/bench_scoring.py --device cuda --nodes 200000 \
  --batch-size 4096 --processes 2 --passes 2 --out "$LOG/scoring"
stage model "${MODEL_LIMIT:-35}" python3 benchmarks/bench_model.py --device cuda --only step --out "$LOG/model"
stage ablation "${ABLATION_LIMIT:-40}" python3 benchmarks/bench_ablation.py --device cuda \
  --only paper+cosine_prior,paper+cosine_prior+overlap_prior --seeds 0 --size 16 --max-identities 400 \
  --epochs 6 --out "$LOG/ablation"
cat "$LOG/stages.txt"
