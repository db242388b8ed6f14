"""hdml_ext.ops.knn_ivf (kNN over inverted lists) against reference.knn_ivf and, with every
list probed, against exact knn."""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import DEVICES, run_with_cpu_capability
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext import ops
from hdml_ext.ops import reference


def make_lists(x: torch.Tensor, num_lists: int, nprobe: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Lists as the "ivf" backend builds them, with random centres: (list_ptr, list_ids, probe),
    each row's home the nearest centre and its probes the nprobe nearest, nearest first."""
    generator = torch.Generator().manual_seed(seed)
    centres = x.cpu()[torch.randperm(x.shape[0], generator=generator)[:num_lists]]
    order = torch.cdist(x.cpu().double(), centres.double()).argsort(dim=1, stable=True)
    probe = order[:, :nprobe].contiguous()
    home = probe[:, 0]
    list_ids = torch.argsort(home, stable=True)
    list_ptr = torch.zeros(num_lists + 1, dtype=torch.int64)
    list_ptr[1:] = torch.bincount(home, minlength=num_lists).cumsum(0)
    return list_ptr.to(x.device), list_ids.to(x.device), probe.to(x.device)


def assert_matches_reference(x, list_ptr, list_ids, probe, k, dist, idx):
    ref_dist, ref_idx = reference.knn_ivf(x.cpu(), list_ptr.cpu(), list_ids.cpu(), probe.cpu(), k)
    assert dist.shape == (x.shape[0], k) and idx.shape == (x.shape[0], k)
    assert dist.dtype == x.dtype and idx.dtype == torch.int64 and dist.device == x.device
    assert torch.equal(idx.cpu(), ref_idx)
    tol = {"rtol": 1e-6, "atol": 1e-6} if x.dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(dist.cpu(), ref_dist, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "num_lists", "nprobe", "k"), [(300, 7, 2, 5), (200, 12, 4, 1), (90, 3, 1, 20)])
def test_matches_reference(device, dtype, n, num_lists, nprobe, k):
    torch.manual_seed(n + k)
    x = torch.randn(n, 9, dtype=dtype, device=device)
    list_ptr, list_ids, probe = make_lists(x, num_lists, nprobe)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, k)
    assert_matches_reference(x, list_ptr, list_ids, probe, k, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
def test_every_list_probed_is_exact_knn(device):
    # Lists larger than a 16-column panel and not multiples of it; clustered rows.
    torch.manual_seed(1)
    centres = torch.randn(12, 16) * 4
    x = (centres[torch.randint(0, 12, (700,))] + torch.randn(700, 16)).to(device)
    list_ptr, list_ids, probe = make_lists(x, 9, 9)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 15)
    exact_dist, exact_idx = ops.knn(x, 15)
    assert torch.equal(idx, exact_idx)
    torch.testing.assert_close(dist, exact_dist)


@pytest.mark.parametrize("device", DEVICES)
def test_recall_is_the_share_of_neighbours_in_probed_lists(device):
    torch.manual_seed(2)
    x = torch.randn(500, 8, device=device)
    list_ptr, list_ids, probe = make_lists(x, 20, 3)
    idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 10)[1].cpu()
    truth = ops.knn(x, 10)[1].cpu()
    home = torch.empty(500, dtype=torch.int64)
    home[list_ids.cpu()] = torch.repeat_interleave(torch.arange(20), list_ptr.cpu().diff())
    reachable = (home[truth][:, :, None] == probe.cpu()[:, None, :]).any(-1)  # [N, k]
    found = (truth[:, :, None] == idx[:, None, :]).any(-1)
    assert torch.equal(found, reachable)


@pytest.mark.parametrize("device", DEVICES)
def test_exact_ties_go_to_the_smaller_index_and_duplicates_are_kept(device):
    # Integer points with many exact duplicates, in lists that mix them.
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (120, 2), generator=generator).double().to(device)
    list_ptr, list_ids, probe = make_lists(x + 0.01 * torch.arange(120, device=device)[:, None], 5, 3)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 30)
    assert_matches_reference(x, list_ptr, list_ids, probe, 30, dist, idx)
    assert (idx != torch.arange(120, device=device)[:, None]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_distances_closer_than_float_rounding_are_ranked_exactly(device):
    # Squared distances 1 + (j 2^-14)^2 from row 0: for j <= 4 they differ by less than float32
    # rounding of their sum, so a float screening sees ties; the exact refinement must still
    # rank them by j, whose rows sit at descending indices. D = 70 spans lanes unevenly; 300
    # rows in one list take three rounds.
    n, d = 300, 70
    x = torch.zeros(n, d)
    x[1:, 0] = 3.0 + torch.arange(n - 1) % 5
    x[1:, 1:] = 0.1 * torch.randn(n - 1, d - 1, generator=torch.Generator().manual_seed(5))
    near = torch.arange(40, 0, -1)  # row 40 - j + 1 holds j
    x[near] = 0.0
    x[near, 0] = 1.0
    x[near, 1] = torch.arange(40, dtype=torch.float32) * 2.0**-14
    x = x.to(device)
    list_ptr = torch.tensor([0, n], device=device)
    list_ids = torch.randperm(n, generator=torch.Generator().manual_seed(6)).to(device)
    probe = torch.zeros(n, 1, dtype=torch.int64, device=device)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 10)
    assert torch.equal(idx[0].cpu(), near[:10])
    assert_matches_reference(x, list_ptr, list_ids, probe, 10, dist, idx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("magnitude", [2.0**60, 2.0**-70])
def test_very_large_and_small_values(device, magnitude):
    torch.manual_seed(7)
    x = (torch.randn(200, 40) * magnitude).to(device)
    list_ptr, list_ids, probe = make_lists(x, 6, 2)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 8)
    ref_dist, ref_idx = reference.knn_ivf(x.cpu(), list_ptr.cpu(), list_ids.cpu(), probe.cpu(), 8)
    assert torch.equal(idx.cpu(), ref_idx)
    torch.testing.assert_close(dist.cpu(), ref_dist, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("device", DEVICES)
def test_short_rows_are_padded(device):
    # Rows whose probed lists hold fewer than k other rows end in -1 / inf; N = k + 1 with one
    # list probed by all is exact.
    x = torch.arange(12, dtype=torch.float32, device=device)[:, None]
    list_ptr = torch.tensor([0, 4, 12], device=device)
    list_ids = torch.arange(12, device=device)
    probe = torch.cat([torch.zeros(4, 1), torch.ones(8, 1)]).long().to(device)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 5)
    assert (idx[:4, 3:] == -1).all() and torch.isinf(dist[:4, 3:]).all()
    assert torch.equal(idx[0, :3].cpu(), torch.tensor([1, 2, 3]))
    assert (idx[4:] >= 4).all()
    whole = ops.knn_ivf(x[:6], torch.tensor([0, 6], device=device), torch.arange(6, device=device),
                        torch.zeros(6, 1, dtype=torch.int64, device=device), 5)
    assert torch.equal(whole[1], ops.knn(x[:6], 5)[1])


@pytest.mark.parametrize("device", DEVICES)
def test_empty_lists_and_k_one(device):
    x = torch.randn(40, 3, device=device)
    list_ptr = torch.tensor([0, 0, 25, 25, 40], device=device)
    list_ids = torch.randperm(40).to(device)
    probe = torch.tensor([[1, 0, 3]] * 40, device=device)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, 1)
    assert_matches_reference(x, list_ptr, list_ids, probe, 1, dist, idx)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 80), d=st.integers(1, 20), num_lists=st.integers(1, 9),
       nprobe_frac=st.floats(0.1, 1.0), k_frac=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_property_matches_reference(n, d, num_lists, nprobe_frac, k_frac, seed):
    num_lists = min(num_lists, n)
    nprobe = max(1, round(nprobe_frac * num_lists))
    k = 1 + round(k_frac * (n - 2))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator)
    list_ptr, list_ids, probe = make_lists(x, num_lists, nprobe, seed)
    dist, idx = ops.knn_ivf(x, list_ptr, list_ids, probe, k)
    assert_matches_reference(x, list_ptr, list_ids, probe, k, dist, idx)


def test_same_result_for_any_thread_count():
    torch.manual_seed(4)
    x = torch.randn(600, 12)
    lists = make_lists(x, 10, 3)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(ops.knn_ivf(x, *lists, 7))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][1], results[1][1]) and torch.equal(results[0][0], results[1][0])


def test_portable_cpu_path_matches_the_reference():
    # float32 on AVX2 runs the fused panel loop (csrc/knn_ivf/knn_ivf_cpu_panels.h);
    # ATEN_CPU_CAPABILITY=default selects the GEMM path, as float64 always does.
    script = textwrap.dedent("""
        import torch
        from test_ops_knn_ivf import assert_matches_reference, make_lists
        from hdml_ext import ops
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        torch.manual_seed(5)
        x = torch.randn(400, 7)
        lists = make_lists(x, 9, 3)
        assert_matches_reference(x, *lists, 6, *ops.knn_ivf(x, *lists, 6))
        print("portable path ok")
    """)
    assert "portable path ok" in run_with_cpu_capability(script)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    torch.manual_seed(6)
    x = torch.randn(60, 5, device=device)
    torch.library.opcheck(torch.ops.hdml.knn_ivf.default, (x, *make_lists(x, 4, 2), 6))


def test_torch_compile_fullgraph():
    torch.manual_seed(7)
    x = torch.randn(64, 5)
    lists = make_lists(x, 4, 2)

    def mean_neighbour_distance(points: torch.Tensor) -> torch.Tensor:
        return ops.knn_ivf(points * 2.0, *lists, 3)[0].mean(dim=1)

    compiled = torch.compile(mean_neighbour_distance, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), mean_neighbour_distance(x))


# The CUDA kernel against the CPU kernel: identical indices and distances. Its tiled join
# (csrc/knn_ivf/knn_ivf_cuda_tiles.cuh) runs by default; HDML_KNN_IVF_CUDA=rows selects the row
# kernel for every row, and HDML_KNN_IVF_CUDA_TILE=<elements> shrinks the join's buffers so that
# small inputs take many row batches, gathers and chunks of one list.
ON_CUDA = DEVICES[1:]  # the CUDA case only: skips, saying why, where no GPU is present
TILE_SIZES = [None, "4096", "300"]


def assert_cuda_matches_cpu_kernel(x, list_ptr, list_ids, probe, k):
    cpu_dist, cpu_idx = ops.knn_ivf(x.cpu(), list_ptr.cpu(), list_ids.cpu(), probe.cpu(), k)
    dist, idx = ops.knn_ivf(x.cuda(), list_ptr.cuda(), list_ids.cuda(), probe.cuda(), k)
    assert dist.is_cuda and dist.dtype == x.dtype and idx.dtype == torch.int64
    assert torch.equal(idx.cpu(), cpu_idx)
    # Both refine in double in the same summation order; the dtype's tolerance still allows for a
    # CPU kernel that takes another path than the AVX2 one whose order the CUDA kernels copy.
    torch.testing.assert_close(dist.cpu(), cpu_dist)


def uneven_lists(sizes: list[int], nprobe: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(list_ptr, list_ids, probe) for lists of the given sizes (rows dealt at random), each row
    probing nprobe distinct random lists: rows of one list probe different sets, and a row's
    own list only by chance."""
    generator = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    list_ptr = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    list_ptr[1:] = torch.tensor(sizes).cumsum(0)
    list_ids = torch.randperm(n, generator=generator)
    probe = torch.rand(n, len(sizes), generator=generator).argsort(dim=1)[:, :nprobe].contiguous()
    return list_ptr, list_ids, probe


def set_cuda_kernel(monkeypatch, kernel: str, tile: str | None) -> None:
    monkeypatch.setenv("HDML_KNN_IVF_CUDA", kernel)
    if tile is None:
        monkeypatch.delenv("HDML_KNN_IVF_CUDA_TILE", raising=False)
    else:
        monkeypatch.setenv("HDML_KNN_IVF_CUDA_TILE", tile)


@pytest.mark.parametrize("device", DEVICES)
def test_uneven_lists_match_reference(device):
    # The lists the CUDA comparisons below use, small enough for the reference.
    torch.manual_seed(10)
    x = torch.randn(120, 6, device=device)
    lists = [t.to(device) for t in uneven_lists([0, 1, 70, 0, 9, 40], 3, seed=10)]
    dist, idx = ops.knn_ivf(x, *lists, 12)
    assert_matches_reference(x, *lists, 12, dist, idx)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize("tile", TILE_SIZES)
@pytest.mark.parametrize("kernel", ["tiles", "rows"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu_kernel_on_uneven_lists(device, monkeypatch, kernel, tile, dtype):
    # Empty lists, single rows, one list of 1,500 (more than one tile of 4,096 or 300 products
    # with the rows that probe it), rows of one list probing different sets.
    set_cuda_kernel(monkeypatch, kernel, tile)
    torch.manual_seed(11)
    sizes = [0, 1, 40, 1500, 0, 7, 260, 3, 0, 189]
    n = sum(sizes)
    x = torch.randn(len(sizes), 24)[torch.randint(0, len(sizes), (n,))] + torch.randn(n, 24)
    assert_cuda_matches_cpu_kernel(x.to(dtype), *uneven_lists(sizes, 4, seed=12), 17)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize("tile", TILE_SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu_kernel_on_ivf_lists(device, monkeypatch, tile, dtype):
    # Lists as the "ivf" backend builds them: many home lists in one row batch (default tile)
    # or in many (small tiles), each row probing its nearest lists.
    set_cuda_kernel(monkeypatch, "tiles", tile)
    torch.manual_seed(13)
    centres = torch.randn(30, 16) * 3
    x = (centres[torch.randint(0, 30, (2500,))] + torch.randn(2500, 16)).to(dtype)
    assert_cuda_matches_cpu_kernel(x, *make_lists(x, 25, 5, seed=14), 20)


@pytest.mark.parametrize("device", ON_CUDA)
def test_cuda_list_bigger_than_the_default_tile(device, monkeypatch):
    # 8,200 rows in one list probed by all of them: 8,200^2 > 2^26 products, so the default
    # tile takes that list in several chunks of rows.
    set_cuda_kernel(monkeypatch, "tiles", None)
    torch.manual_seed(15)
    x = torch.randn(8300, 4)
    list_ptr = torch.tensor([0, 8200, 8300])
    probe = torch.zeros(8300, 1, dtype=torch.int64)
    probe[8200:] = 1
    assert_cuda_matches_cpu_kernel(x, list_ptr, torch.randperm(8300), probe, 6)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize("tile", [None, "300"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_cuda_exact_ties_and_duplicates_match_cpu_kernel(device, monkeypatch, tile, dtype):
    # Small integers (exact in every dtype): many equal distances and duplicate rows; ties go to
    # the smaller index in both kernels.
    set_cuda_kernel(monkeypatch, "tiles", tile)
    generator = torch.Generator().manual_seed(16)
    x = torch.randint(0, 4, (900, 3), generator=generator).to(dtype)
    assert_cuda_matches_cpu_kernel(x, *uneven_lists([300, 0, 250, 350], 2, seed=17), 25)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize("tile", [None, "4096"])
@pytest.mark.parametrize("k", [1000, 1024])
def test_cuda_k_near_the_maximum_matches_cpu_kernel(device, monkeypatch, tile, k):
    # k + margin beyond the selection's 1,024 candidates: the tiles keep 1,024; rows of the small
    # list see fewer than k rows and end in -1 / inf.
    set_cuda_kernel(monkeypatch, "tiles", tile)
    torch.manual_seed(18)
    x = torch.randn(1300, 8)
    list_ptr = torch.tensor([0, 1100, 1300])
    list_ids = torch.randperm(1300)
    both = torch.tensor([[0, 1]] * 1300)
    small = torch.ones(1300, 1, dtype=torch.int64)
    assert_cuda_matches_cpu_kernel(x, list_ptr, list_ids, both, k)
    assert_cuda_matches_cpu_kernel(x, list_ptr, list_ids, small, k)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize("tile", [None, "4096"])
def test_cuda_failed_certificates_fall_back_to_the_row_kernel(device, monkeypatch, tile):
    # 40 copies of each of 30 points, k = 5: every row's k-th distance (0) ties with copies the
    # selection dropped (it keeps k + 8), so no certificate holds and the row kernel searches
    # every row; every seventh row moved by 2^-10, far below the expansion's rounding at
    # magnitudes near 100, makes near-duplicates that no certificate can order either.
    set_cuda_kernel(monkeypatch, "tiles", tile)
    torch.manual_seed(19)
    points = torch.randn(30, 12) * 100
    x = points.repeat(40, 1)
    x[::7, 0] += 2.0**-10
    assert_cuda_matches_cpu_kernel(x, *uneven_lists([400, 500, 300], 2, seed=20), 5)


@pytest.mark.parametrize("device", ON_CUDA)
@pytest.mark.parametrize(("name", "value"), [("HDML_KNN_IVF_CUDA", "fast"), ("HDML_KNN_IVF_CUDA_TILE", "0"),
                                             ("HDML_KNN_IVF_CUDA_TILE", "12x")])
def test_cuda_bad_switch_values_name_the_variable(device, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    x = torch.randn(30, 3, device=device)
    lists = [t.to(device) for t in make_lists(x, 3, 2)]
    with pytest.raises(RuntimeError, match=name):
        ops.knn_ivf(x, *lists, 4)


@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda a: {**a, "x": a["x"].int()}, TypeError, "x should be a floating-point tensor"),
    (lambda a: {**a, "x": a["x"][0]}, ValueError, "x should be 2-D"),
    (lambda a: {**a, "probe": a["probe"].int()}, TypeError, "probe should have dtype torch.int64"),
    (lambda a: {**a, "list_ids": a["list_ids"][:, None]}, ValueError, "list_ids should be 1-D"),
    (lambda a: {**a, "k": 0}, ValueError, "k should be >= 1"),
    (lambda a: {**a, "k": 30}, RuntimeError, r"k should be in \[1, N - 1\] = \[1, 29\], got 30"),
    (lambda a: {**a, "list_ptr": torch.tensor([1, 30])}, RuntimeError, "list_ptr should start at 0"),
    (lambda a: {**a, "list_ptr": torch.tensor([0, 20, 10, 30])}, RuntimeError,
     "list_ptr should be non-decreasing"),
    (lambda a: {**a, "list_ptr": torch.tensor([0, 29])}, RuntimeError, "list_ptr should end at N = 30"),
    (lambda a: {**a, "list_ids": torch.zeros(30, dtype=torch.int64)}, RuntimeError,
     r"list_ids should be a permutation of 0 .. N - 1 = 29, got 0 at position 1 \(a repeat\)"),
    (lambda a: {**a, "probe": torch.full((30, 1), 2)}, RuntimeError,
     r"probe values should be list numbers in \[0, 2\)"),
    (lambda a: {**a, "probe": torch.zeros(30, 2, dtype=torch.int64)}, RuntimeError,
     "probe rows should list distinct lists, got list 0 twice"),
    (lambda a: {**a, "probe": torch.zeros(29, 1, dtype=torch.int64)}, RuntimeError,
     r"probe should have shape \[N, P\]"),
    (lambda a: {**a, "x": a["x"].clone().index_fill_(0, torch.tensor([3]), float("nan"))}, RuntimeError,
     "x should contain only finite values"),
])
def test_bad_inputs_name_the_argument(change, error, message):
    good = {"x": torch.randn(30, 3), "list_ptr": torch.tensor([0, 10, 30]), "list_ids": torch.arange(30),
            "probe": torch.zeros(30, 1, dtype=torch.int64), "k": 4}
    with pytest.raises(error, match=message):
        ops.knn_ivf(**change(good))
