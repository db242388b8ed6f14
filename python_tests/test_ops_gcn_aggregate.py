"""hdml_ext.ops.gcn_aggregate (out = D^-1/2 A D^-1/2 z) and its backward against the reference."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES, run_with_cpu_capability
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext.ops import gcn_aggregate, reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (atol, rtol) against the reference run in float64 on the same (rounded) inputs: the kernels
# accumulate in float32 (float64) and round once, so the error is about one output ulp.
TOL = {
    torch.float32: (2e-5, 2e-5),
    torch.float64: (1e-12, 1e-12),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 1.6e-2),
}
ADJ_KINDS = ["fgraph", "bool_asym", "weighted_f32", "weighted_f64_asym", "weighted_f16"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fgraph_adj(batch: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """F-Graph adjacencies as the model sees them: each node's k = n - 1 nearest neighbours
    among N points, symmetric, focus row full (bool [batch, n, n])."""
    points = torch.randn(max(4 * n, n + 1), 3, generator=gen, dtype=torch.float64)
    _, knn_idx = reference.knn(points, n - 1)
    focus = torch.randperm(points.shape[0], generator=gen)[:batch]
    return reference.fgraph_adjacency(knn_idx, focus)


def _adjacency(kind: str, batch: int, n: int, gen: torch.Generator, density: float = 0.4) -> torch.Tensor:
    """A [batch, n, n] adjacency of the given kind (on the CPU)."""
    if kind == "fgraph":
        return _fgraph_adj(batch, n, gen) if n > 1 else torch.zeros(batch, n, n, dtype=torch.bool)
    edges = torch.rand(batch, n, n, generator=gen) < density
    if kind == "bool_asym":
        return edges
    weights = edges * (0.1 + torch.rand(batch, n, n, generator=gen, dtype=torch.float64))
    if kind == "weighted_f32":
        weights = (weights + weights.transpose(1, 2)) / 2
        return weights.float()
    if kind == "weighted_f64_asym":
        return weights
    if kind == "weighted_f16":
        return weights.half()
    raise AssertionError(kind)


def _expected(adj: torch.Tensor, z: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out and grad_z of the reference through autograd, in float64 on the CPU."""
    a64 = adj.cpu() if adj.dtype == torch.bool else adj.cpu().double()
    z64 = z.detach().cpu().double().requires_grad_(True)
    out = reference.gcn_aggregate(a64, z64)
    (grad_z,) = torch.autograd.grad(out, z64, g.cpu().double())
    return out.detach(), grad_z


def _ours(adj: torch.Tensor, z: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out and grad_z of hdml_ext.ops.gcn_aggregate through autograd."""
    z = z.detach().requires_grad_(True)
    out = gcn_aggregate(adj, z)
    (grad_z,) = torch.autograd.grad(out, z, g)
    return out.detach(), grad_z


def _check(adj: torch.Tensor, z: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, grad_z = _ours(adj, z, g)
    e_out, e_grad = _expected(adj, z, g)
    atol, rtol = TOL[z.dtype]
    assert out.dtype == z.dtype and grad_z.dtype == z.dtype
    assert out.shape == z.shape and grad_z.shape == z.shape
    assert out.device == z.device and grad_z.device == z.device
    torch.testing.assert_close(out.cpu().double(), e_out, atol=atol, rtol=rtol)
    torch.testing.assert_close(grad_z.cpu().double(), e_grad, atol=atol, rtol=rtol)
    return out, grad_z


def _inputs(kind: str, shape: tuple[int, int, int], dtype: torch.dtype, device: str,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, n, feat = shape
    gen = _gen(seed)
    adj = _adjacency(kind, batch, n, gen).to(device)
    z = torch.randn(batch, n, feat, generator=gen).to(device=device, dtype=dtype)
    g = torch.randn(batch, n, feat, generator=gen).to(device=device, dtype=dtype)
    return adj, z, g


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ADJ_KINDS)
@pytest.mark.parametrize("shape", [(3, 7, 5), (2, 51, 70), (4, 13, 33)])
def test_matches_reference(device, dtype, kind, shape):
    _check(*_inputs(kind, shape, dtype, device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("feat", [1, 7, 16, 17, 40, 64, 100, 128, 129, 300])
def test_feature_widths(device, dtype, feat):
    # Every tile shape of the kernels: full tiles, narrower last tiles, tails inside a register.
    _check(*_inputs("fgraph", (2, 11, feat), dtype, device, seed=feat))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 300, 9), (1, 70, 33), (64, 9, 20), (16, 70, 5)])
def test_few_large_graphs_and_many_small(device, shape):
    # A single graph is split into blocks of rows (degrees computed once per graph first);
    # many graphs are one work item each.
    for kind in ("bool_asym", "weighted_f64_asym"):
        adj, z, g = _inputs(kind, shape, torch.float32, device, seed=3)
        _check(adj, z, g)
        _check(adj.transpose(1, 2), z, g)  # strided rows: read entry by entry


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_degree_rows_and_columns(device, dtype):
    gen = _gen(4)
    batch, n, feat = 3, 9, 6
    adj = torch.rand(batch, n, n, generator=gen) < 0.5
    adj[:, 2, :] = False  # node 2: no out-edges (zero degree), but in-edges from the others
    adj[:, :, 5] = False  # node 5: no in-edges, but out-edges
    adj[1, 7, :] = False  # node 7 of graph 1: isolated
    adj[1, :, 7] = False
    adj[:, 2, 4] = False
    adj[:, 4, 2] = True
    z = torch.randn(batch, n, feat, generator=gen, dtype=dtype).to(device)
    g = torch.randn(batch, n, feat, generator=gen, dtype=dtype).to(device)
    out, grad_z = _check(adj.to(device), z, g)
    assert (out[:, 2] == 0).all() and (out[1, 7] == 0).all()
    # Node 2 has degree 0, so it contributes nothing: its gradient is zero too.
    assert (grad_z[:, 2] == 0).all() and (grad_z[1, 7] == 0).all()
    # Node 5 has no in-edges: nobody receives from it.
    assert (grad_z[:, 5] == 0).all()
    assert (out[:, 5] != 0).any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_node(device, dtype):
    z = torch.randn(4, 1, 6, generator=_gen(5)).to(device=device, dtype=dtype)
    no_edge = torch.zeros(4, 1, 1, dtype=torch.bool, device=device)
    assert torch.equal(gcn_aggregate(no_edge, z), torch.zeros_like(z))
    # A self-loop of weight w: degree w, d = w^-1/2, out = d * w * d * z = z.
    loop = torch.full((4, 1, 1), 2.5, device=device)
    torch.testing.assert_close(gcn_aggregate(loop, z), z, atol=TOL[dtype][0], rtol=TOL[dtype][1])
    torch.testing.assert_close(gcn_aggregate(loop.bool(), z), z, atol=0, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 5, 3), (3, 5, 0), (2, 0, 4), (0, 0, 0)])
def test_empty(device, shape):
    batch, n, _ = shape
    adj = torch.ones(batch, n, n, dtype=torch.bool, device=device)
    z = torch.randn(shape, device=device, requires_grad=True)
    out = gcn_aggregate(adj, z)
    assert out.shape == shape and out.dtype == z.dtype
    out.sum().backward()
    assert z.grad is not None and z.grad.shape == shape
    assert torch.ops.hdml.gcn_aggregate_backward(torch.randn(shape, device=device), adj).shape == shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_non_contiguous(device, dtype):
    gen = _gen(6)
    batch, n, feat = 3, 12, 20
    adj = _adjacency("bool_asym", batch, n, gen).to(device)
    weights = _adjacency("weighted_f64_asym", batch, n, gen).to(device)
    wide = torch.randn(batch, n, feat + 7, generator=gen).to(device=device, dtype=dtype)
    sliced = wide[:, :, 3:3 + feat]  # rows of the slice are `feat + 7` apart
    transposed = torch.randn(batch, feat, n, generator=gen).to(device=device, dtype=dtype).transpose(1, 2)
    strided = torch.randn(batch, n, 2 * feat, generator=gen).to(device=device, dtype=dtype)[:, :, ::2]
    g = torch.randn(batch, n, feat, generator=gen).to(device=device, dtype=dtype)
    assert not sliced.is_contiguous() and not transposed.is_contiguous() and not strided.is_contiguous()
    for z in (sliced, transposed, strided):
        for a in (adj, adj.transpose(1, 2), weights.transpose(1, 2), adj.repeat(1, 2, 2)[:, ::2, ::2]):
            assert not a.is_contiguous() or a is adj
            out, grad_z = _check(a, z, g)
            # The same numbers as from contiguous copies.
            out_c, grad_c = _ours(a.contiguous(), z.contiguous(), g)
            torch.testing.assert_close(out, out_c, atol=0, rtol=0)
            torch.testing.assert_close(grad_z, grad_c, atol=0, rtol=0)
    # A broadcast gradient (the gradient of out.sum() has stride 0 everywhere).
    ones = torch.ones(1, 1, 1, device=device, dtype=dtype).expand(batch, n, feat)
    torch.testing.assert_close(torch.ops.hdml.gcn_aggregate_backward(ones, adj),
                               torch.ops.hdml.gcn_aggregate_backward(ones.contiguous(), adj), atol=0, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_negative_weights_follow_the_reference(device):
    # Documented behaviour: weights are used as given, and a node whose row sum is <= 0 has
    # zero degree (d = 0), exactly as in reference.gcn_aggregate.
    adj = torch.tensor([[[0.0, 2.0, 0.0, -0.5],     # degree 1.5, with a negative weight
                         [1.0, 0.0, -1.0, 0.0],     # degree 0: zero row
                         [-2.0, 0.5, 0.0, 0.5],     # degree -1: zero row
                         [0.5, 0.0, 1.0, 0.0]]],    # degree 1.5
                       dtype=torch.float64, device=device)
    gen = _gen(7)
    z = torch.randn(1, 4, 5, generator=gen, dtype=torch.float64).to(device)
    g = torch.randn(1, 4, 5, generator=gen, dtype=torch.float64).to(device)
    out, grad_z = _check(adj, z, g)
    assert (out[0, 1] == 0).all() and (out[0, 2] == 0).all()
    assert (grad_z[0, 1] == 0).all() and (grad_z[0, 2] == 0).all()
    # d = (1.5^-1/2, 0, 0, 1.5^-1/2):
    # out_0 = d_0 (2 d_1 z_1 - 0.5 d_3 z_3) and out_3 = d_3 (0.5 d_0 z_0 + d_2 z_2).
    torch.testing.assert_close(out[0, 0], -0.5 / 1.5 * z[0, 3], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out[0, 3], 0.5 / 1.5 * z[0, 0], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["fgraph", "bool_asym", "weighted_f64_asym", "weighted_f32"])
def test_gradcheck(device, kind):
    adj, z, _ = _inputs(kind, (2, 6, 3), torch.float64, device, seed=8)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(gcn_aggregate, (adj, z))
    assert torch.autograd.gradgradcheck(gcn_aggregate, (adj, z))


@pytest.mark.parametrize("device", DEVICES)
def test_adj_gets_no_gradient(device):
    adj, z, g = _inputs("weighted_f32", (2, 5, 4), torch.float32, device, seed=9)
    adj.requires_grad_(True)
    z.requires_grad_(True)
    gcn_aggregate(adj, z).backward(g)
    assert adj.grad is None
    assert z.grad is not None and z.grad.abs().sum() > 0
    # Only adj requires grad: autograd reaches the op, and it gives adj nothing.
    out = gcn_aggregate(adj, z.detach())
    assert torch.autograd.grad(out, adj, g, allow_unused=True) == (None,)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for kind, dtype in (("fgraph", torch.float32), ("weighted_f64_asym", torch.float64),
                        ("bool_asym", torch.bfloat16)):
        adj, z, g = _inputs(kind, (2, 6, 5), dtype, device, seed=10)
        torch.library.opcheck(torch.ops.hdml.gcn_aggregate.default, (adj, z.requires_grad_(True)))
        torch.library.opcheck(torch.ops.hdml.gcn_aggregate_backward.default, (g.requires_grad_(True), adj))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_forward_and_backward(device):
    adj, z, _ = _inputs("fgraph", (3, 8, 6), torch.float32, device, seed=11)
    weight = torch.randn(6, 4, generator=_gen(12)).to(device)

    def layer(adj: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(gcn_aggregate(adj, z @ weight)).square().sum()

    # aot_eager traces forward and backward through dynamo and AOTAutograd (the fake and autograd
    # registrations) without inductor's C++ code generation, which takes most of a minute here.
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    z_eager = z.clone().requires_grad_(True)
    z_compiled = z.clone().requires_grad_(True)
    layer(adj, z_eager).backward()
    loss = compiled(adj, z_compiled)
    loss.backward()
    torch.testing.assert_close(loss, layer(adj, z.detach()))
    torch.testing.assert_close(z_compiled.grad, z_eager.grad)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(0, 3),
    n=st.integers(1, 12),
    feat=st.integers(0, 20),
    density=st.floats(0.0, 1.0),
    weighted=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference_and_adjoint(batch, n, feat, density, weighted, dtype, seed):
    gen = _gen(seed)
    adj = torch.rand(batch, n, n, generator=gen) < density
    if weighted:
        adj = adj * torch.rand(batch, n, n, generator=gen, dtype=torch.float64)
    z = torch.randn(batch, n, feat, generator=gen, dtype=dtype)
    g = torch.randn(batch, n, feat, generator=gen, dtype=dtype)
    out, grad_z = _check(adj, z, g)
    # The backward is the adjoint of the forward: <A z, g> = <z, A^T g>.
    lhs = (out.double() * g.double()).sum()
    rhs = (z.double() * grad_z.double()).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-4 * (1 + z.numel()), rtol=1e-4)


@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_cpu_variants(capability):
    # The CPU tile loop is compiled for AVX-512, AVX2 and the baseline and picked from ATen's
    # capability at run time; run the narrower ones in a child process and compare.
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT" and capability != "default":
        pytest.skip("this CPU has no AVX2")
    code = (
        "import torch, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from test_ops_gcn_aggregate import _check, _inputs\n"
        "for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):\n"
        "    for feat in (3, 40, 129, 300):\n"
        "        _check(*_inputs('bool_asym', (2, 9, feat), dtype, 'cpu', seed=feat))\n"
        "        _check(*_inputs('weighted_f32', (2, 9, feat), dtype, 'cpu', seed=feat))\n"
        "print(torch.backends.cpu.get_cpu_capability())\n"
    )
    stdout = run_with_cpu_capability(code, capability)
    assert stdout.strip().splitlines()[-1] == capability.upper()


# ---- bad inputs: one test each; the wrapper raises TypeError/ValueError, the op RuntimeError --

def _wrapper(adj, z):
    return gcn_aggregate(adj, z)


def _op(adj, z):
    return torch.ops.hdml.gcn_aggregate(adj, z)


LAYERS = [pytest.param(_wrapper, id="wrapper"), pytest.param(_op, id="op")]


def _raises(call, adj, z, wrapper_error, match):
    error = wrapper_error if call is _wrapper else RuntimeError
    with pytest.raises(error, match=match):
        call(adj, z)


@pytest.mark.parametrize("call", LAYERS)
def test_adj_not_3d(call):
    _raises(call, torch.ones(4, 4, dtype=torch.bool), torch.randn(1, 4, 3), ValueError,
            "adj should be (a )?3-D")


@pytest.mark.parametrize("call", LAYERS)
def test_adj_not_square(call):
    _raises(call, torch.ones(1, 4, 5, dtype=torch.bool), torch.randn(1, 4, 3), ValueError,
            "adj should be square")


@pytest.mark.parametrize("call", LAYERS)
def test_adj_integer_dtype(call):
    _raises(call, torch.ones(1, 4, 4, dtype=torch.int64), torch.randn(1, 4, 3), TypeError,
            "adj should be a bool or floating-point")


@pytest.mark.parametrize("call", LAYERS)
def test_z_not_3d(call):
    _raises(call, torch.ones(1, 4, 4, dtype=torch.bool), torch.randn(4, 3), ValueError,
            "z should be (a )?3-D")


@pytest.mark.parametrize("call", LAYERS)
def test_z_integer_dtype(call):
    _raises(call, torch.ones(1, 4, 4, dtype=torch.bool), torch.ones(1, 4, 3, dtype=torch.int32), TypeError,
            "z should be a floating-point")


@pytest.mark.parametrize("call", LAYERS)
def test_batch_mismatch(call):
    _raises(call, torch.ones(2, 4, 4, dtype=torch.bool), torch.randn(3, 4, 3), ValueError,
            r"z should have shape \[B, n, F\] = \[2, 4, F\]")


@pytest.mark.parametrize("call", LAYERS)
def test_node_count_mismatch(call):
    _raises(call, torch.ones(2, 4, 4, dtype=torch.bool), torch.randn(2, 5, 3), ValueError,
            r"z should have shape \[B, n, F\] = \[2, 4, F\]")


def test_not_a_tensor():
    with pytest.raises(TypeError, match=r"adj should be a torch\.Tensor"):
        gcn_aggregate([[[True]]], torch.randn(1, 1, 2))
    with pytest.raises(TypeError, match=r"z should be a torch\.Tensor"):
        gcn_aggregate(torch.ones(1, 1, 1, dtype=torch.bool), 3.0)


def test_device_mismatch_wrapper():
    with pytest.raises(ValueError, match="z should be on adj's device cpu, got meta"):
        gcn_aggregate(torch.ones(1, 4, 4, dtype=torch.bool), torch.randn(1, 4, 3, device="meta"))


def test_device_mismatch_op_with_a_meta_tensor():
    # A meta tensor stands in for another device: without the check, the op dispatched to its
    # meta kernel and returned uninitialised memory.
    with pytest.raises(ValueError, match="z should be on adj's device cpu, got meta"):
        torch.ops.hdml.gcn_aggregate(torch.ones(1, 4, 4, dtype=torch.bool),
                                     torch.randn(1, 4, 3, device="meta"))
    with pytest.raises(ValueError, match="grad_out should be on adj's device meta, got cpu"):
        torch.ops.hdml.gcn_aggregate_backward(torch.randn(1, 4, 3), torch.ones(1, 4, 4, device="meta"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("call", ["wrapper", "op", "backward"])
def test_rejects_non_finite_weights(bad, call):
    # A degree summed over NaN or inf is not a number: rejected, where the kernel once gave zeros
    # and the reference NaN.
    adj = torch.rand(2, 5, 5, dtype=torch.float64)
    adj[1, 2, 3] = bad
    z = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = "NaN" if bad != bad else "inf"
    message = rf"adj should hold finite edge weights, got {expected} in a tensor of shape \[2, 5, 5\]"
    with pytest.raises(RuntimeError, match=message):
        if call == "wrapper":
            gcn_aggregate(adj, z)
        elif call == "op":
            torch.ops.hdml.gcn_aggregate(adj, z)
        else:
            torch.ops.hdml.gcn_aggregate_backward(z, adj)


def test_rejects_non_finite_half_weights():
    adj = torch.ones(1, 3, 3, dtype=torch.float16)
    adj[0, 0, 1] = float("nan")
    with pytest.raises(RuntimeError, match="adj should hold finite edge weights, got NaN"):
        gcn_aggregate(adj, torch.randn(1, 3, 2))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
def test_device_mismatch_op():
    with pytest.raises(RuntimeError, match="adj and z should be on the same device"):
        torch.ops.hdml.gcn_aggregate(torch.ones(1, 4, 4, dtype=torch.bool),
                                     torch.randn(1, 4, 3, device="cuda"))
    with pytest.raises(RuntimeError, match="adj and grad_out should be on the same device"):
        torch.ops.hdml.gcn_aggregate_backward(torch.randn(1, 4, 3),
                                              torch.ones(1, 4, 4, dtype=torch.bool, device="cuda"))


def test_grad_out_shape_mismatch():
    with pytest.raises(RuntimeError, match=r"grad_out should have shape \[B, n, F\] = \[2, 4, F\]"):
        torch.ops.hdml.gcn_aggregate_backward(torch.randn(2, 3, 5), torch.ones(2, 4, 4, dtype=torch.bool))


def test_grad_out_not_3d():
    with pytest.raises(RuntimeError, match="grad_out should be a 3-D"):
        torch.ops.hdml.gcn_aggregate_backward(torch.randn(4, 5), torch.ones(2, 4, 4, dtype=torch.bool))


def test_grad_out_integer_dtype():
    with pytest.raises(RuntimeError, match="grad_out should be a floating-point"):
        torch.ops.hdml.gcn_aggregate_backward(torch.ones(2, 4, 5, dtype=torch.int64),
                                              torch.ones(2, 4, 4, dtype=torch.bool))


def test_backward_adj_not_square():
    with pytest.raises(RuntimeError, match="adj should be square"):
        torch.ops.hdml.gcn_aggregate_backward(torch.randn(2, 4, 5), torch.ones(2, 4, 5, dtype=torch.bool))
