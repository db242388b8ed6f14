"""hdml_ext.ops.fgraph_adjacency against reference.fgraph_adjacency, its invariants, and its errors."""

from __future__ import annotations

import textwrap

import pytest
import torch
from conftest import DEVICES, run_with_cpu_capability
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext.graph import fgraph_nodes
from hdml_ext.ops import fgraph_adjacency, reference

# The CPU kernel looks ids up in an array of N entries below this N, and in a hash above it.
HASHED_N = (1 << 18) + 3


def random_table(num_nodes: int, k: int, *, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """knn_idx [N, k] of uniform ids in [0, N): rows may repeat ids and hold their own row id."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, max(num_nodes, 1), (num_nodes, k), generator=gen).to(device)


def knn_table(num_nodes: int, k: int, *, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A real kNN table (self excluded) of random clustered points."""
    gen = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(max(num_nodes // 8, 1), 3, generator=gen)
    x = centres[torch.randint(0, centres.shape[0], (num_nodes,), generator=gen)]
    x = x + torch.randn(num_nodes, 3, generator=gen)
    return reference.knn(x.double(), k)[1].to(device)


def brute_force(knn_idx: torch.Tensor, focus: torch.Tensor | None, symmetric: bool) -> torch.Tensor:
    """The contract, element by element in Python (small inputs only)."""
    table = knn_idx.cpu().tolist()
    focus_ids = range(len(table)) if focus is None else focus.cpu().tolist()
    n = knn_idx.shape[1] + 1
    adj = torch.zeros(len(focus_ids), n, n, dtype=torch.bool)
    for b, f in enumerate(focus_ids):
        nodes = [f, *table[f]]
        for a in range(n):
            for c in range(n):
                adj[b, a, c] = a != c and nodes[c] in table[nodes[a]]
    if symmetric:
        adj = adj | adj.transpose(1, 2)
    return adj


# ------------------------------------------------------------------------------------------------
# Agreement with the reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("focus_kind", ["none", "given", "repeated", "empty"])
@pytest.mark.parametrize(("num_nodes", "k"), [(1, 1), (1, 4), (2, 1), (9, 3), (40, 7), (120, 50), (90, 80)])
def test_matches_reference(device, symmetric, focus_kind, num_nodes, k):
    knn_idx = random_table(num_nodes, k, seed=num_nodes * 100 + k, device=device)
    gen = torch.Generator().manual_seed(k)
    focus = {
        "none": None,
        "given": torch.randperm(num_nodes, generator=gen)[: max(num_nodes // 2, 1)],
        "repeated": torch.randint(0, num_nodes, (2 * num_nodes + 1,), generator=gen),
        "empty": torch.empty(0, dtype=torch.int64),
    }[focus_kind]
    if focus is not None:
        focus = focus.to(device)
    adj = fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    expected = reference.fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    num_graphs = num_nodes if focus is None else focus.shape[0]
    assert adj.shape == (num_graphs, k + 1, k + 1)
    assert adj.dtype == torch.bool and adj.device == knn_idx.device and adj.is_contiguous()
    torch.testing.assert_close(adj, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_the_contract_written_out(device, symmetric):
    # Not via the reference: the definition, element by element, on rows with repeats.
    knn_idx = torch.tensor([[1, 2], [2, 2], [0, 3], [3, 1]], device=device)
    focus = torch.tensor([0, 3, 1, 1], device=device)
    adj = fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    torch.testing.assert_close(adj.cpu(), brute_force(knn_idx, focus, symmetric), rtol=0, atol=0)


def test_hand_computed_example():
    # F-Graph of 0: nodes [0, 1, 2]; 0 -> {1, 2}, 1 -> {2}, 2 -> {0, 1}.
    knn_idx = torch.tensor([[1, 2], [2, 0], [0, 1]])
    knn_idx[1, 1] = 2  # node 1 lists 2 twice: a repeat within a row
    directed = fgraph_adjacency(knn_idx, torch.tensor([0]), symmetric=False)[0]
    assert directed.tolist() == [[False, True, True], [False, False, True], [True, True, False]]
    undirected = fgraph_adjacency(knn_idx, torch.tensor([0]))[0]
    assert undirected.tolist() == [[False, True, True], [True, False, True], [True, True, False]]


@pytest.mark.parametrize("device", DEVICES)
def test_repeated_node_in_one_fgraph(device):
    # Focus 0 lists 1 twice: positions 1 and 2 are both node 1 and get the same edges, and
    # they link to each other (1 is in its own list here) but not to themselves.
    knn_idx = torch.tensor([[1, 1, 2], [1, 0, 0], [2, 2, 2]], device=device)
    adj = fgraph_adjacency(knn_idx, torch.tensor([0], device=device), symmetric=False)[0].cpu()
    assert adj.tolist() == [
        [False, True, True, True],
        [True, False, True, False],
        [True, True, False, False],
        [False, False, False, False],
    ]
    torch.testing.assert_close(adj, reference.fgraph_adjacency(knn_idx.cpu(), torch.tensor([0]),
                                                               symmetric=False)[0], rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_single_node_table(device):
    # N = 1: the only valid id is 0, so node 0 is its own neighbour, k times.
    knn_idx = torch.zeros(1, 3, dtype=torch.int64, device=device)
    adj = fgraph_adjacency(knn_idx)
    assert adj.shape == (1, 4, 4)
    assert adj[0].cpu().tolist() == (~torch.eye(4, dtype=torch.bool)).tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("focus", [None, "empty"])
def test_no_columns_or_no_rows(device, focus):
    # k = 0: one-node graphs without edges. N = 0: no graphs.
    focus_t = None if focus is None else torch.empty(0, dtype=torch.int64, device=device)
    no_columns = fgraph_adjacency(torch.zeros(3, 0, dtype=torch.int64, device=device), focus_t)
    assert no_columns.shape == ((3 if focus is None else 0), 1, 1)
    assert not no_columns.any()
    no_rows = fgraph_adjacency(torch.zeros(0, 5, dtype=torch.int64, device=device), focus_t)
    assert no_rows.shape == (0, 6, 6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_non_contiguous_inputs(device, symmetric):
    k = 6
    wide = random_table(50, 3 * k, seed=3, device=device)
    focus_wide = torch.arange(50, device=device).flip(0)
    column_slice = wide[:, k:2 * k]  # row stride 3k, unit column stride
    strided_columns = wide[:, ::3]  # column stride 3
    column_major = wide[:, :k].t().contiguous().t()  # row stride 1, column stride 50
    focus = focus_wide[::2]  # stride 2
    for knn_idx in (column_slice, strided_columns, column_major):
        assert not knn_idx.is_contiguous()
        for f in (None, focus):
            expected = reference.fgraph_adjacency(knn_idx.contiguous(), None if f is None else f.contiguous(),
                                                  symmetric=symmetric)
            torch.testing.assert_close(fgraph_adjacency(knn_idx, f, symmetric=symmetric), expected,
                                       rtol=0, atol=0)


@pytest.mark.parametrize("symmetric", [True, False])
def test_hashed_lookup_for_large_n(symmetric):
    # N above the CPU kernel's direct-addressing limit; ids drawn from a small range so that
    # neighbour lists overlap and repeat, as they do in real tables.
    gen = torch.Generator().manual_seed(7)
    knn_idx = torch.randint(0, 40, (HASHED_N, 5), generator=gen)
    knn_idx[-1] = torch.tensor([HASHED_N - 1, 3, 3, 0, HASHED_N - 2])
    focus = torch.cat([torch.arange(40), torch.tensor([HASHED_N - 1, HASHED_N - 1, 5])])
    expected = reference.fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    got = fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_real_knn_table_invariants(device):
    knn_idx = knn_table(64, 6, device=device)
    directed = fgraph_adjacency(knn_idx, symmetric=False)
    undirected = fgraph_adjacency(knn_idx)
    eye = torch.eye(7, dtype=torch.bool, device=device)
    # Row 0: the focus lists every other node of its graph (self excluded, no repeats).
    assert directed[:, 0, 1:].all() and undirected[:, 1:, 0].all()
    assert not directed[:, eye].any() and not undirected[:, eye].any()
    torch.testing.assert_close(undirected, undirected.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(undirected, directed | directed.transpose(1, 2), rtol=0, atol=0)
    assert undirected.sum() > directed.sum()  # not everything is mutual: the test can see a difference


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
@pytest.mark.parametrize("symmetric", [True, False])
def test_cuda_matches_cpu_when_blocks_exceed_shared_memory(symmetric):
    # k = 600: a [601, 601] block no longer fits shared memory, so the CUDA kernel marks the
    # output in global memory. The reference's [B, n, k, n] comparison is too large here; the
    # CPU kernel (checked against it above) is the yardstick.
    knn_idx = random_table(700, 600, seed=11)
    focus = torch.tensor([0, 5, 5, 699])
    expected = fgraph_adjacency(knn_idx, focus, symmetric=symmetric)
    got = fgraph_adjacency(knn_idx.cuda(), focus.cuda(), symmetric=symmetric)
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_consistent_with_fgraph_nodes(device):
    knn_idx = random_table(30, 4, seed=5, device=device)
    focus = torch.tensor([3, 3, 17, 0], device=device)
    nodes = fgraph_nodes(knn_idx, focus)
    adj = fgraph_adjacency(knn_idx, focus, symmetric=False)
    member_lists = knn_idx[nodes]  # [B, n, k]
    for b in range(focus.shape[0]):
        for a in range(5):
            for c in range(5):
                expected = a != c and bool((member_lists[b, a] == nodes[b, c]).any())
                assert bool(adj[b, a, c]) == expected


def test_portable_cpu_path_where_avx512_is_in_use():
    # On AVX-512 machines the common case (k <= 61, N < 2^18, dense rows) runs a vectorised
    # variant; ATEN_CPU_CAPABILITY=default, read once per process, selects the portable one.
    script = textwrap.dedent("""
        import torch
        import hdml_ext
        from hdml_ext.ops import fgraph_adjacency, reference
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        gen = torch.Generator().manual_seed(0)
        for num_nodes, k in [(1, 2), (30, 1), (60, 8), (200, 50), (70, 61)]:
            knn_idx = torch.randint(0, num_nodes, (num_nodes, k), generator=gen)
            focus = torch.randint(0, num_nodes, (40,), generator=gen)
            for f in (None, focus):
                for symmetric in (True, False):
                    got = fgraph_adjacency(knn_idx, f, symmetric=symmetric)
                    assert torch.equal(got, reference.fgraph_adjacency(knn_idx, f, symmetric=symmetric))
        knn_idx[3, 2] = num_nodes
        try:
            fgraph_adjacency(knn_idx, torch.tensor([3]))
        except RuntimeError as error:
            assert f"got {num_nodes} at knn_idx[3, 2]" in str(error), error
        else:
            raise AssertionError("no error for an out-of-range id")
        print("portable path ok")
    """)
    assert "portable path ok" in run_with_cpu_capability(script)


# ------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_property_random_tables(data):
    num_nodes = data.draw(st.integers(1, 30), label="N")
    k = data.draw(st.integers(0, 9), label="k")
    ids = data.draw(st.lists(st.integers(0, num_nodes - 1), min_size=num_nodes * k, max_size=num_nodes * k))
    knn_idx = torch.tensor(ids, dtype=torch.int64).reshape(num_nodes, k)
    focus_ids = data.draw(st.none() | st.lists(st.integers(0, num_nodes - 1), max_size=12), label="focus")
    focus = None if focus_ids is None else torch.tensor(focus_ids, dtype=torch.int64)
    directed = fgraph_adjacency(knn_idx, focus, symmetric=False)
    undirected = fgraph_adjacency(knn_idx, focus, symmetric=True)
    torch.testing.assert_close(directed, reference.fgraph_adjacency(knn_idx, focus, symmetric=False),
                               rtol=0, atol=0)
    torch.testing.assert_close(undirected, reference.fgraph_adjacency(knn_idx, focus), rtol=0, atol=0)
    assert not torch.diagonal(undirected, dim1=1, dim2=2).any()
    torch.testing.assert_close(undirected, undirected.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(undirected, directed | directed.transpose(1, 2), rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(num_nodes=st.integers(2, 40), k=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_property_real_knn_tables(num_nodes, k, seed):
    k = min(k, num_nodes - 1)
    knn_idx = knn_table(num_nodes, k, seed=seed)
    adj = fgraph_adjacency(knn_idx)
    off_diagonal = ~torch.eye(k + 1, dtype=torch.bool)
    assert torch.equal(adj[:, 0, :], off_diagonal[0].expand(num_nodes, -1))
    assert not torch.diagonal(adj, dim1=1, dim2=2).any()
    torch.testing.assert_close(adj, reference.fgraph_adjacency(knn_idx), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# out=: the same result written into a caller's buffer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_out_is_filled_and_returned(device, symmetric):
    knn_idx = knn_table(60, 6, seed=3, device=device)
    focus = torch.tensor([5, 0, 59, 5], device=device)
    out = torch.ones(4, 7, 7, dtype=torch.bool, device=device)  # poisoned: every element must be written
    result = fgraph_adjacency(knn_idx, focus, symmetric=symmetric, out=out)
    assert result.data_ptr() == out.data_ptr()
    assert torch.equal(out.cpu(), reference.fgraph_adjacency(knn_idx.cpu(), focus.cpu(), symmetric=symmetric))
    others = torch.tensor([1, 2, 3, 4], device=device)
    reused = fgraph_adjacency(knn_idx, others, symmetric=symmetric, out=out)
    assert torch.equal(reused, fgraph_adjacency(knn_idx, others, symmetric=symmetric))


@pytest.mark.parametrize(
    ("out", "error", "message"),
    [
        (torch.zeros(3, 4, 4, dtype=torch.bool), RuntimeError,
         r"out should have shape \[B, k\+1, k\+1\] = \[2, 4, 4\]"),
        (torch.zeros(2, 4, 4, dtype=torch.uint8), RuntimeError, "out should have dtype bool, got Byte"),
        (torch.zeros(2, 4, 4, dtype=torch.bool).transpose(1, 2), RuntimeError, "out should be contiguous"),
        ([[True]], TypeError, r"out should be a torch\.Tensor"),
    ],
)
def test_bad_out_names_the_argument(out, error, message):
    knn_idx = random_table(10, 3, seed=4)
    with pytest.raises(error, match=message):
        fgraph_adjacency(knn_idx, torch.tensor([1, 2]), out=out)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_out(device):
    knn_idx = random_table(12, 3, seed=1, device=device)
    focus = torch.tensor([4, 4, 0], device=device)
    out = torch.empty(3, 4, 4, dtype=torch.bool, device=device)
    torch.library.opcheck(torch.ops.hdml.fgraph_adjacency.out, (knn_idx, focus, False), {"out": out})


def test_out_under_torch_compile_fullgraph():
    def degrees(knn_idx: torch.Tensor, focus: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return fgraph_adjacency(knn_idx, focus, out=out).sum(dim=-1)

    torch._dynamo.reset()
    knn_idx, focus = random_table(20, 4, seed=2), torch.tensor([1, 2, 2, 19])
    out = torch.empty(4, 5, 5, dtype=torch.bool)
    got = torch.compile(degrees, fullgraph=True)(knn_idx, focus, out)
    assert torch.equal(got, fgraph_adjacency(knn_idx, focus).sum(dim=-1))
    assert torch.equal(out, fgraph_adjacency(knn_idx, focus))


# ------------------------------------------------------------------------------------------------
# Registration: opcheck, torch.compile


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    knn_idx = random_table(12, 3, seed=1, device=device)
    samples = [
        (knn_idx, None, True),
        (knn_idx, torch.tensor([4, 4, 0], device=device), False),
        (knn_idx, torch.empty(0, dtype=torch.int64, device=device), True),
        (knn_idx[:, 1:], torch.tensor([11], device=device), True),
    ]
    for args in samples:
        torch.library.opcheck(torch.ops.hdml.fgraph_adjacency.default, args)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    def degrees(knn_idx: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
        return fgraph_adjacency(knn_idx, focus).sum(dim=-1)

    torch._dynamo.reset()
    compiled = torch.compile(degrees, fullgraph=True)
    knn_idx = random_table(20, 4, seed=2, device=device)
    focus = torch.tensor([1, 2, 2, 19], device=device)
    torch.testing.assert_close(compiled(knn_idx, focus), degrees(knn_idx, focus), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Bad input: one test each, the exception type and a message naming the argument


def test_knn_idx_not_a_tensor():
    with pytest.raises(TypeError, match=r"knn_idx should be a torch\.Tensor"):
        fgraph_adjacency([[1, 0], [0, 1]])


def test_knn_idx_not_2d():
    with pytest.raises(ValueError, match="knn_idx should be 2-D, got 1-D"):
        fgraph_adjacency(torch.tensor([1, 0]))


def test_knn_idx_not_int64():
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64, got torch\.int32"):
        fgraph_adjacency(torch.tensor([[1], [0]], dtype=torch.int32))


def test_knn_idx_floating():
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64, got torch\.float32"):
        fgraph_adjacency(torch.tensor([[1.0], [0.0]]))


def test_focus_not_a_tensor():
    with pytest.raises(TypeError, match=r"focus should be a torch\.Tensor, got list"):
        fgraph_adjacency(torch.tensor([[1], [0]]), [0])


def test_focus_not_1d():
    with pytest.raises(ValueError, match="focus should be 1-D, got 2-D"):
        fgraph_adjacency(torch.tensor([[1], [0]]), torch.tensor([[0]]))


def test_focus_not_int64():
    with pytest.raises(TypeError, match=r"focus should have dtype torch\.int64, got torch\.int32"):
        fgraph_adjacency(torch.tensor([[1], [0]]), torch.tensor([0], dtype=torch.int32))


def test_focus_on_another_device():
    with pytest.raises(ValueError, match="focus should be on knn_idx's device cpu, got meta"):
        fgraph_adjacency(torch.tensor([[1], [0]]), torch.tensor([0], device="meta"))


def test_symmetric_not_a_bool():
    with pytest.raises(TypeError, match="symmetric should be a bool, got int"):
        fgraph_adjacency(torch.tensor([[1], [0]]), symmetric=1)


@pytest.mark.parametrize("device", DEVICES)
def test_focus_id_too_large(device):
    knn_idx = torch.tensor([[1], [0]], device=device)
    with pytest.raises(RuntimeError, match=r"focus should hold node ids in \[0, 2\), got 2 at focus\[1\]"):
        fgraph_adjacency(knn_idx, torch.tensor([0, 2], device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_focus_id_negative(device):
    knn_idx = torch.tensor([[1], [0]], device=device)
    with pytest.raises(RuntimeError, match=r"focus should hold node ids in \[0, 2\), got -1 at focus\[0\]"):
        fgraph_adjacency(knn_idx, torch.tensor([-1], device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_knn_idx_id_too_large_in_the_focus_row(device):
    knn_idx = torch.tensor([[1, 2], [0, 2], [0, 1]], device=device)
    knn_idx[2, 1] = 3
    message = r"knn_idx should hold node ids in \[0, 3\), got 3 at knn_idx\[2, 1\]"
    with pytest.raises(RuntimeError, match=message):
        fgraph_adjacency(knn_idx, torch.tensor([2], device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_knn_idx_id_negative_in_a_member_row(device):
    # Focus 0's own row is valid; its member 1 lists -5.
    knn_idx = torch.tensor([[1, 2], [-5, 2], [0, 1]], device=device)
    message = r"knn_idx should hold node ids in \[0, 3\), got -5 at knn_idx\[1, 0\]"
    with pytest.raises(RuntimeError, match=message):
        fgraph_adjacency(knn_idx, torch.tensor([0], device=device))


def test_knn_idx_id_too_large_with_hashed_lookup():
    knn_idx = torch.zeros(HASHED_N, 2, dtype=torch.int64)
    knn_idx[0] = torch.tensor([1, 2])
    knn_idx[2, 1] = HASHED_N + 4
    with pytest.raises(RuntimeError, match=rf"knn_idx should hold node ids in \[0, {HASHED_N}\), "
                                           rf"got {HASHED_N + 4} at knn_idx\[2, 1\]"):
        fgraph_adjacency(knn_idx, torch.tensor([0]))


def test_bad_id_in_a_row_that_is_not_read():
    # Only the rows of the F-Graphs' members are read (and checked): row 3 is no member here.
    knn_idx = torch.tensor([[1], [0], [1], [99]])
    torch.testing.assert_close(fgraph_adjacency(knn_idx, torch.tensor([0, 2])),
                               reference.fgraph_adjacency(knn_idx, torch.tensor([0, 2])), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_focus_given_for_a_table_without_rows(device):
    knn_idx = torch.zeros(0, 3, dtype=torch.int64, device=device)
    with pytest.raises(RuntimeError, match="focus should be empty when knn_idx has no rows"):
        fgraph_adjacency(knn_idx, torch.tensor([0], device=device))


def test_kernel_checks_rank_and_dtype_itself():
    # The C++ op checks what the Python wrapper checks, for callers of torch.ops.hdml directly.
    op = torch.ops.hdml.fgraph_adjacency.default
    with pytest.raises(RuntimeError, match="knn_idx should be a 2-D int64 tensor"):
        op(torch.zeros(3, dtype=torch.int64), None, True)
    with pytest.raises(RuntimeError, match="knn_idx should have dtype int64"):
        op(torch.zeros(3, 1, dtype=torch.int32), None, True)
    with pytest.raises(RuntimeError, match="focus should be a 1-D int64 tensor"):
        op(torch.zeros(3, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64), True)
    with pytest.raises(RuntimeError, match="focus should have dtype int64"):
        op(torch.zeros(3, 1, dtype=torch.int64), torch.zeros(1, dtype=torch.float32), True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_kernel_checks_devices_itself():
    op = torch.ops.hdml.fgraph_adjacency.default
    with pytest.raises(RuntimeError, match="focus and knn_idx should be on the same device"):
        op(torch.zeros(3, 1, dtype=torch.int64, device="cuda"), torch.zeros(1, dtype=torch.int64), True)
