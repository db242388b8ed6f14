"""hdml_ext.ops.knn against the float64 direct-difference reference (reference.knn)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import DEVICES, cuda_built, run_with_cpu_capability
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext import ops
from hdml_ext.ops import reference

DTYPES = [torch.float32, torch.float64]
# Reference distances closer than this (relative) count as tied: either order is right.
TIE_RTOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]


def _dist_tol(dtype: torch.dtype) -> dict:
    # Both sides compute in double and round once; only the summation order differs.
    return {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


def assert_knn_matches(x: torch.Tensor, k: int, queries: torch.Tensor | None, dist: torch.Tensor,
                       idx: torch.Tensor) -> None:
    """Distances equal the reference's; indices equal it except among (near-)tied distances."""
    num_queries = x.shape[0] if queries is None else queries.shape[0]
    assert dist.shape == (num_queries, k) and idx.shape == (num_queries, k)
    assert dist.dtype == x.dtype and idx.dtype == torch.int64
    assert dist.device == x.device and idx.device == x.device
    # One reference call with one more neighbour than asked, when there is one: its first k
    # columns are the reference for k, and the extra distance tells ties across the cut.
    limit = x.shape[0] - 1 if queries is None else x.shape[0]
    ext_dist, ext_idx = reference.knn(x.cpu(), min(k + 1, limit),
                                      queries=None if queries is None else queries.cpu())
    ref_dist, ref_idx = ext_dist[:, :k], ext_idx[:, :k]
    dist, idx = dist.cpu(), idx.cpu()
    torch.testing.assert_close(dist, ref_dist, **_dist_tol(x.dtype))
    if num_queries == 0:
        return
    # Every returned index is a valid, distinct point (never the query itself) at the stated distance.
    assert idx.min() >= 0 and idx.max() < x.shape[0]
    assert (idx.sort(dim=1).values.diff(dim=1) > 0).all()
    if queries is None:
        assert (idx != torch.arange(num_queries)[:, None]).all()
    q = (x if queries is None else queries).cpu().double()
    actual = (q[:, None, :] - x.cpu().double()[idx]).pow(2).sum(-1).sqrt()
    torch.testing.assert_close(actual.to(x.dtype), ref_dist, **_dist_tol(x.dtype))
    # Where the indices differ, the reference distance must be tied with a neighbour in the
    # sorted order (including the first distance beyond k, when there is one).
    ext = ext_dist.double()
    close = (ext[:, 1:] - ext[:, :-1]) <= TIE_RTOL * ext[:, 1:].abs().clamp_min(1e-30)
    tied = torch.zeros_like(ext, dtype=torch.bool)
    tied[:, 1:] |= close
    tied[:, :-1] |= close
    mismatch = idx != ref_idx
    assert not (mismatch & ~tied[:, :k]).any(), f"indices differ at untied positions {mismatch.nonzero()[:5]}"


def assert_same_distances(dist: torch.Tensor, ref_dist: torch.Tensor) -> None:
    """Equal up to the last bit of the square root (torch's sqrt and std::sqrt may differ by an ulp)."""
    rtol = 1e-15 if dist.dtype == torch.float64 else 1e-7
    torch.testing.assert_close(dist.cpu(), ref_dist, rtol=rtol, atol=0)


def integer_points(n: int, d: int, *, low: int = -3, high: int = 4, duplicates: int = 0,
                   dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Small-integer coordinates (exact in every dtype, so are their squared distances), with
    the first `duplicates` rows repeated at random positions: many exact ties."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(low, high, (n, d), generator=gen).to(dtype)
    if duplicates:
        rows = torch.randint(0, n, (duplicates,), generator=gen)
        x[rows] = x[:duplicates].clone()
    return x


# ----------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_queries", [False, True])
@pytest.mark.parametrize("k", [1, 7, "max"])
def test_matches_reference_random(device, dtype, with_queries, k):
    torch.manual_seed(0)
    x = torch.randn(211, 13, dtype=dtype, device=device)
    queries = torch.randn(37, 13, dtype=dtype, device=device) if with_queries else None
    if k == "max":
        k = x.shape[0] if with_queries else x.shape[0] - 1
    dist, idx = ops.knn(x, k, queries=queries)
    assert_knn_matches(x, k, queries, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_spans_several_tiles(device, dtype):
    # More query rows and points than one CPU tile (1024 x 4096) holds, and k above the CUDA
    # round size: several blocks, several tiles per block, both CPU schedules.
    torch.manual_seed(1)
    x = torch.randn(4200, 3, dtype=dtype, device=device)
    queries = torch.randn(1100, 3, dtype=dtype, device=device)
    for k, q in ((3, None), (300, queries)):
        dist, idx = ops.knn(x, k, queries=q)
        assert_knn_matches(x, k, q, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_queries", [False, True])
def test_exact_ties_go_to_the_smaller_index(device, dtype, with_queries):
    # Integer coordinates: the GEMM expansion is exact, so ties are exact ties, and the order
    # must be the reference's exactly: ascending distance, then ascending index.
    x = integer_points(300, 3, duplicates=120, dtype=dtype).to(device)
    queries = integer_points(50, 3, seed=1, dtype=dtype).to(device) if with_queries else None
    for k in (1, 9, 60):
        dist, idx = ops.knn(x, k, queries=queries)
        ref_dist, ref_idx = reference.knn(x.cpu(), k, queries=None if queries is None else queries.cpu())
        assert torch.equal(idx.cpu(), ref_idx)
        assert_same_distances(dist, ref_dist)


@pytest.mark.parametrize("device", DEVICES)
def test_large_k_self_search(device):
    # k in the thousands: the CPU self-search then keeps selections per block of rows instead
    # of for every row; many exact ties (integer coordinates, few distinct values).
    x = integer_points(4200, 2, low=-20, high=20, duplicates=500).to(device)
    dist, idx = ops.knn(x, 2000) if device == "cpu" else ops.knn(x, 1000)
    ref_dist, ref_idx = reference.knn(x.cpu(), idx.shape[1])
    assert torch.equal(idx.cpu(), ref_idx)
    assert_same_distances(dist, ref_dist)


@pytest.mark.parametrize("device", DEVICES)
def test_all_points_identical(device):
    # Every distance is 0: the neighbours are the smallest indices other than the query's own.
    x = torch.ones(40, 4, device=device)
    dist, idx = ops.knn(x, 5)
    expected = torch.tensor([[j for j in range(6) if j != i][:5] for i in range(40)])
    assert torch.equal(idx.cpu(), expected)
    assert (dist == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(device, dtype):
    torch.manual_seed(2)
    x_t = torch.randn(6, 90, dtype=dtype, device=device).t()  # [90, 6], transposed view
    assert not x_t.is_contiguous()
    dist, idx = ops.knn(x_t, 4)
    assert_knn_matches(x_t, 4, None, dist, idx)
    x_sliced = torch.randn(90, 12, dtype=dtype, device=device)[:, ::2]  # column stride 2
    queries = torch.randn(40, 6, dtype=dtype, device=device)[::3]  # row stride 18
    dist, idx = ops.knn(x_sliced, 6, queries=queries)
    assert_knn_matches(x_sliced, 6, queries, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
def test_inputs_are_left_unchanged(device):
    torch.manual_seed(8)
    x = torch.randn(300, 7, device=device)
    queries = torch.randn(20, 7, device=device)
    x_before, queries_before = x.clone(), queries.clone()
    ops.knn(x, 5)
    ops.knn(x, 5, queries=queries)
    assert torch.equal(x, x_before) and torch.equal(queries, queries_before)


def test_same_result_for_any_thread_count():
    torch.manual_seed(9)
    x = torch.randn(1500, 6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ops.knn(x, 10)
        torch.set_num_threads(max(2, threads))
        multi = ops.knn(x, 10)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], multi[0]) and torch.equal(single[1], multi[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_queries_gives_empty_outputs(device, dtype):
    x = torch.randn(10, 3, dtype=dtype, device=device)
    dist, idx = ops.knn(x, 4, queries=x[:0])
    assert dist.shape == (0, 4) and idx.shape == (0, 4)
    assert dist.dtype == dtype and idx.dtype == torch.int64


@pytest.mark.parametrize("device", DEVICES)
def test_smallest_inputs(device):
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], device=device)
    dist, idx = ops.knn(x, 1)
    assert idx.cpu().tolist() == [[1], [0]]
    assert dist.cpu().tolist() == [[5.0], [5.0]]
    dist, idx = ops.knn(x[:1], 1, queries=x[1:])  # N = 1
    assert idx.cpu().tolist() == [[0]] and dist.cpu().tolist() == [[5.0]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dtype", "magnitude"), [
    (torch.float32, 1e30),  # squared norms overflow float32 without the power-of-two scaling
    (torch.float32, 1e-30),  # and underflow
    (torch.float64, 1e150),
    (torch.float64, 1e-150),
])
def test_extreme_magnitudes(device, dtype, magnitude):
    torch.manual_seed(3)
    x = (torch.randn(120, 8, dtype=torch.float64) * magnitude).to(dtype).to(device)
    queries = (torch.randn(20, 8, dtype=torch.float64) * magnitude).to(dtype).to(device)
    for q in (None, queries):
        dist, idx = ops.knn(x, 5, queries=q)
        ref_dist, ref_idx = reference.knn(x.cpu(), 5, queries=None if q is None else q.cpu())
        assert torch.equal(idx.cpu(), ref_idx)
        torch.testing.assert_close(dist.cpu(), ref_dist, rtol=1e-6, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_far_from_origin_float32(device):
    # Points clustered far from the origin: the expansion cancels badly in float32, and the
    # exact refinement (over k + margin candidates) must still return the reference.
    torch.manual_seed(4)
    x = 1000.0 + torch.randn(400, 16, dtype=torch.float64)
    x = x.float().to(device)
    dist, idx = ops.knn(x, 10)
    assert_knn_matches(x, 10, None, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_queries", [False, True])
def test_tight_clusters_far_apart(device, dtype, with_queries):
    # 20 clusters of 100 near-duplicates (spread 1e-5) far from each other and from the centre:
    # the expansion's rounding (~1e-4 on squared distances of ~1e-9) cannot order a cluster, so
    # the first selection is not certified and the rows are searched again with more candidates.
    gen = torch.Generator().manual_seed(10)
    centers = 10 * torch.randn(20, 16, generator=gen, dtype=torch.float64)
    x = centers.repeat_interleave(100, 0) + 1e-5 * torch.randn(2000, 16, generator=gen, dtype=torch.float64)
    x = x.to(dtype).to(device)
    queries = x[::7] + 1e-6 if with_queries else None
    dist, idx = ops.knn(x, 30, queries=queries)
    assert_knn_matches(x, 30, queries, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
def test_one_tight_cluster_larger_than_any_candidate_list(device):
    # Two clusters of 1500 near-duplicates, far apart (so centring cannot help): no selection
    # smaller than a cluster is certified (CPU: several retries with 4x the candidates; CUDA:
    # past its 1024 candidates, a direct search).
    gen = torch.Generator().manual_seed(11)
    centers = torch.tensor([[40.0] * 8, [-40.0] * 8], dtype=torch.float64)
    x = centers.repeat_interleave(1500, 0) + 1e-5 * torch.randn(3000, 8, generator=gen, dtype=torch.float64)
    x = x.float().to(device)
    dist, idx = ops.knn(x, 20)
    assert_knn_matches(x, 20, None, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(device, dtype):
    # Computed in float32 from the exactly representable half values; returned in x's dtype.
    x = integer_points(80, 4, duplicates=10).to(dtype).to(device)
    dist, idx = ops.knn(x, 6)
    ref_dist, ref_idx = reference.knn(x.cpu().double(), 6)
    assert dist.dtype == dtype
    assert torch.equal(idx.cpu(), ref_idx)
    torch.testing.assert_close(dist.cpu(), ref_dist.to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_cuda_matches_cpu_with_large_k():
    torch.manual_seed(5)
    x = torch.randn(3000, 24)
    dist_cpu, idx_cpu = ops.knn(x, 700)
    dist_cuda, idx_cuda = ops.knn(x.cuda(), 700)
    torch.testing.assert_close(dist_cuda.cpu(), dist_cpu)
    assert (idx_cuda.cpu() != idx_cpu).float().mean() < 1e-3  # only float near-ties may differ


# ----------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 6),
    m=st.integers(0, 20),
    k_frac=st.floats(0.0, 1.0),
    duplicates=st.integers(0, 30),
    with_queries=st.booleans(),
    double=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_integer_points_match_reference_exactly(n, d, m, k_frac, duplicates, with_queries, double,
                                                          seed):
    dtype = torch.float64 if double else torch.float32
    x = integer_points(n, d, duplicates=min(duplicates, n), dtype=dtype, seed=seed)
    queries = integer_points(m, d, dtype=dtype, seed=seed + 1) if with_queries else None
    limit = n if with_queries else n - 1
    k = 1 + int(k_frac * (limit - 1))
    dist, idx = ops.knn(x, k, queries=queries)
    ref_dist, ref_idx = reference.knn(x, k, queries=queries)
    assert torch.equal(idx, ref_idx)
    assert_same_distances(dist, ref_dist)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 80),
    d=st.integers(1, 20),
    k_frac=st.floats(0.0, 1.0),
    duplicates=st.integers(0, 10),
    with_queries=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_random_points(n, d, k_frac, duplicates, with_queries, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    if duplicates:
        x[torch.randint(0, n, (duplicates,), generator=gen)] = x[0].clone()
    queries = torch.randn(7, d, generator=gen) if with_queries else None
    limit = n if with_queries else n - 1
    k = 1 + int(k_frac * (limit - 1))
    dist, idx = ops.knn(x, k, queries=queries)
    assert_knn_matches(x, k, queries, dist, idx)


# ----------------------------------------------------------------------------- torch integration


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    torch.manual_seed(6)
    x = torch.randn(50, 6, device=device)
    torch.library.opcheck(torch.ops.hdml.knn.default, (x, None, 4))
    torch.library.opcheck(torch.ops.hdml.knn.default, (x, torch.randn(9, 6, device=device), 50))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    torch.manual_seed(7)

    def mean_neighbour_distance(points: torch.Tensor) -> torch.Tensor:
        dist, idx = ops.knn(points * 2.0, 3)
        return dist.mean(dim=1) + idx[:, 0].to(points.dtype)

    x = torch.randn(64, 5, device=device)
    compiled = torch.compile(mean_neighbour_distance, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), mean_neighbour_distance(x))


def test_inputs_that_require_grad_are_searched_as_plain_values():
    # Neighbour search is not differentiable: the wrapper reads the detached values.
    torch.manual_seed(3)
    x = torch.randn(50, 4, requires_grad=True)
    queries = torch.randn(7, 4, requires_grad=True)
    for q in (None, queries):
        dist, idx = ops.knn(x, 5, queries=q)
        ref_dist, ref_idx = ops.knn(x.detach(), 5, queries=None if q is None else q.detach())
        assert not dist.requires_grad
        assert torch.equal(dist, ref_dist) and torch.equal(idx, ref_idx)


def test_op_called_directly_reads_inputs_that_require_grad():
    x = torch.randn(30, 3, requires_grad=True)
    dist, idx = torch.ops.hdml.knn.default(x, None, 4)
    ref_dist, ref_idx = ops.knn(x.detach(), 4)
    assert torch.equal(dist.detach(), ref_dist) and torch.equal(idx, ref_idx)


def test_portable_cpu_path_matches_the_reference():
    # The scans, the candidate compaction and the exact distances have AVX2 variants, picked by
    # cpu_isa() (csrc/utils.h) from ATen's CPU capability; ATEN_CPU_CAPABILITY=default, read once
    # per process, selects the portable ones. Both schedules (self-search and queries), several
    # tiles, exact ties.
    script = textwrap.dedent("""
        import sys
        import torch
        sys.path.insert(0, sys.argv[1])
        from test_ops_knn import assert_knn_matches, assert_same_distances, integer_points
        from hdml_ext import ops
        from hdml_ext.ops import reference
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        torch.manual_seed(1)
        x = torch.randn(4200, 3)
        queries = torch.randn(300, 3)
        for k, q in ((3, None), (40, queries)):
            dist, idx = ops.knn(x, k, queries=q)
            assert_knn_matches(x, k, q, dist, idx)
        x = integer_points(300, 3, duplicates=120)
        for q in (None, integer_points(50, 3, seed=1)):
            dist, idx = ops.knn(x, 9, queries=q)
            ref_dist, ref_idx = reference.knn(x, 9, queries=q)
            assert torch.equal(idx, ref_idx)
            assert_same_distances(dist, ref_dist)
        print("portable path ok")
    """)
    assert "portable path ok" in run_with_cpu_capability(script)


# ----------------------------------------------------------------------------- memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux-specific")
def test_large_n_never_allocates_an_n_by_n_matrix():
    # N = 20,000: an N x N float32 matrix is 1.6 GB. Run in a fresh process so that the peak
    # RSS growth measured around the call belongs to knn alone.
    script = textwrap.dedent("""
        import resource, torch
        from hdml_ext import ops
        torch.manual_seed(0)
        x = torch.randn(20000, 16)
        ops.knn(x[:600], 5)  # warm-up: thread pool, BLAS buffers
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        dist, idx = ops.knn(x, 5)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert idx.shape == (20000, 5)
        print((after - before) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    growth = int(out.stdout.strip().splitlines()[-1])
    assert growth < 100 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB (N x N would be 1526 MiB)"


# ----------------------------------------------------------------------------- bad inputs
# The wrapper validates first (ValueError/TypeError); the C++ op checks the same conditions
# itself (RuntimeError), so torch.ops.hdml.knn is tested directly too.


def test_wrapper_rejects_x_not_2d():
    with pytest.raises(ValueError, match="x should be 2-D"):
        ops.knn(torch.randn(10), 2)


def test_wrapper_rejects_integer_x():
    with pytest.raises(TypeError, match="x should be a floating-point tensor"):
        ops.knn(torch.ones(10, 2, dtype=torch.int64), 2)


def test_wrapper_rejects_k_below_one():
    with pytest.raises(ValueError, match="k should be >= 1"):
        ops.knn(torch.randn(10, 2), 0)


def test_wrapper_rejects_non_int_k():
    with pytest.raises(TypeError, match="k should be an int"):
        ops.knn(torch.randn(10, 2), 2.0)


def test_rejects_x_not_2d():
    with pytest.raises(RuntimeError, match=r"knn: x should be a 2-D tensor \[N, D\], got 3-D"):
        torch.ops.hdml.knn.default(torch.randn(4, 5, 2), None, 1)


def test_rejects_integer_x():
    with pytest.raises(RuntimeError, match="knn: x should be a floating-point tensor, got dtype Int"):
        torch.ops.hdml.knn.default(torch.ones(4, 2, dtype=torch.int32), None, 1)


def test_rejects_k_below_one():
    with pytest.raises(RuntimeError, match="knn: k should be >= 1, got 0"):
        torch.ops.hdml.knn.default(torch.randn(10, 2), None, 0)


def test_rejects_k_too_large_without_queries():
    with pytest.raises(RuntimeError, match=r"k should be <= N - 1 = 9 when queries is None "
                                           r"\(each point excludes itself\), got 10"):
        ops.knn(torch.randn(10, 2), 10)


def test_rejects_k_too_large_with_queries():
    with pytest.raises(RuntimeError, match=r"k should be <= N = 10 \(the number of rows of x\), got 11"):
        ops.knn(torch.randn(10, 2), 11, queries=torch.randn(3, 2))


def test_rejects_queries_not_2d():
    with pytest.raises(RuntimeError, match=r"knn: queries should be a 2-D tensor \[M, D\], got 1-D"):
        torch.ops.hdml.knn.default(torch.randn(10, 2), torch.randn(2), 1)


def test_rejects_dimension_mismatch():
    with pytest.raises(RuntimeError, match=r"queries should have D = 2 columns like x, got shape \[3, 5\]"):
        ops.knn(torch.randn(10, 2), 1, queries=torch.randn(3, 5))


def test_rejects_dtype_mismatch():
    with pytest.raises(RuntimeError, match=r"queries should have the same dtype as x \(Float\), got Double"):
        ops.knn(torch.randn(10, 2), 1, queries=torch.randn(3, 2, dtype=torch.float64))


def test_wrapper_rejects_queries_on_another_device():
    # A meta tensor stands in for another device: without the check, the op dispatched to its
    # meta kernel and returned uninitialised memory.
    with pytest.raises(ValueError, match="queries should be on x's device cpu, got meta"):
        ops.knn(torch.randn(10, 2), 2, queries=torch.randn(3, 2, device="meta"))
    with pytest.raises(ValueError, match="queries should be on x's device meta, got cpu"):
        ops.knn(torch.randn(10, 2, device="meta"), 2, queries=torch.randn(3, 2))


def test_op_rejects_queries_on_another_device():
    with pytest.raises(ValueError, match="queries should be on x's device cpu, got meta"):
        torch.ops.hdml.knn.default(torch.randn(10, 2), torch.randn(3, 2, device="meta"), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_rejects_device_mismatch():
    with pytest.raises(ValueError, match="queries should be on x's device cuda:0, got cpu"):
        ops.knn(torch.randn(10, 2, device="cuda"), 1, queries=torch.randn(3, 2))
    with pytest.raises(RuntimeError, match="queries should be on the same device as x"):
        torch.ops.hdml.knn.default(torch.randn(10, 2, device="cuda"), torch.randn(3, 2), 1)


@pytest.mark.parametrize("device", DEVICES)
def test_rejects_nan_in_x(device):
    x = torch.randn(10, 2, device=device)
    x[3, 1] = float("nan")
    with pytest.raises(RuntimeError, match="knn: x should contain only finite values, got NaN"):
        ops.knn(x, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_rejects_inf_in_x(device):
    x = torch.randn(10, 2, device=device)
    x[0, 0] = -float("inf")
    with pytest.raises(RuntimeError, match="knn: x should contain only finite values, got inf"):
        ops.knn(x, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_rejects_non_finite_queries(device):
    queries = torch.randn(4, 2, device=device)
    queries[2, 0] = float("inf")
    with pytest.raises(RuntimeError, match="knn: queries should contain only finite values, got inf"):
        ops.knn(torch.randn(10, 2, device=device), 2, queries=queries)


def test_rejects_empty_x():
    with pytest.raises(RuntimeError, match=r"x should have at least one row \(N >= 1\), got shape \[0, 3\]"):
        ops.knn(torch.randn(0, 3), 1, queries=torch.randn(2, 3))


def test_rejects_zero_dimensional_points():
    with pytest.raises(RuntimeError, match=r"at least one column \(D >= 1\), got shape \[5, 0\]"):
        ops.knn(torch.randn(5, 0), 1)


@pytest.mark.skipif(not torch.cuda.is_available() or not cuda_built(), reason="no CUDA GPU or CUDA kernels")
def test_cuda_rejects_k_above_the_selection_limit():
    with pytest.raises(RuntimeError, match=r"k should be <= 1016 on CUDA"):
        ops.knn(torch.randn(1100, 2, device="cuda"), 1017)
