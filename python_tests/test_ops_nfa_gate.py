"""hdml_ext.ops.nfa_gate (paper eq. 6-8) and its fused backward against the pure-torch reference."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st

from hdml_ext.ops import nfa_gate, reference

LO, HI = 0.3, 0.9
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (atol, rtol) against the reference run in float64 on the same (rounded) inputs: the kernels
# accumulate in float32 (float64) and round once, so the error is about one output ulp.
TOL = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-12, 1e-12),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 1.6e-2),
}
# x shapes: spatial empty, 1-D, 2-D, 3-D.
SHAPES = [(3, 5), (2, 6, 9), (2, 8, 5, 7), (2, 4, 3, 2, 5)]


def _logits(shape: tuple[int, int], dtype: torch.dtype, device: str) -> torch.Tensor:
    """Logits spread over all three branches (g < lo, lo <= g <= hi, g > hi), kept 1e-2 away
    from the two kinks so that float32/half rounding cannot flip a branch."""
    gen = torch.Generator().manual_seed(1)
    values = 3 * torch.randn(shape, dtype=torch.float64, generator=gen)
    for kink in (math.log(LO / (1 - LO)), math.log(HI / (1 - HI))):
        near = (values - kink).abs() < 1e-2
        values = torch.where(near, values + 0.05, values)
    return values.to(device=device, dtype=dtype)


def _expected(x: torch.Tensor, logits: torch.Tensor, dy: torch.Tensor, lo: float = LO,
              hi: float = HI) -> tuple[torch.Tensor, ...]:
    """y, dx, dlogits of the reference through autograd, in float64."""
    x64 = x.detach().double().requires_grad_(True)
    l64 = logits.detach().double().requires_grad_(True)
    y = reference.nfa_gate(x64, l64, lo, hi)
    dx, dl = torch.autograd.grad(y, (x64, l64), dy.double())
    return y.detach(), dx, dl


def _ours(x: torch.Tensor, logits: torch.Tensor, dy: torch.Tensor, lo: float = LO,
          hi: float = HI) -> tuple[torch.Tensor, ...]:
    """y, dx, dlogits of hdml_ext.ops.nfa_gate through autograd."""
    x = x.detach().requires_grad_(True)
    logits = logits.detach().requires_grad_(True)
    y = nfa_gate(x, logits, lo, hi)
    dx, dl = torch.autograd.grad(y, (x, logits), dy)
    return y.detach(), dx, dl


def _check_against_reference(x: torch.Tensor, logits: torch.Tensor, dy: torch.Tensor,
                             lo: float = LO, hi: float = HI) -> None:
    y, dx, dl = _ours(x, logits, dy, lo, hi)
    ey, edx, edl = _expected(x, logits, dy, lo, hi)
    atol, rtol = TOL[x.dtype]
    assert y.dtype == x.dtype and dx.dtype == x.dtype and dl.dtype == logits.dtype
    torch.testing.assert_close(y.double(), ey, atol=atol, rtol=rtol)
    torch.testing.assert_close(dx.double(), edx, atol=atol, rtol=rtol)
    # grad_logits sums S products: scale the tolerance with the size of the sum.
    spatial = max(1, x[0, 0].numel())
    ltol = max(TOL[x.dtype][0], TOL[logits.dtype][0]) * math.sqrt(spatial)
    torch.testing.assert_close(dl.double(), edl, atol=ltol, rtol=max(rtol, TOL[logits.dtype][1]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(device, dtype, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    dy = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    _check_against_reference(x, _logits(shape[:2], dtype, device), dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (3, 16, 4, 4), (2, 3, 6, 5), (2, 24, 1, 1)])
def test_channels_last_matches_reference_and_keeps_format(device, dtype, shape):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    x = x.to(memory_format=torch.channels_last)
    dy = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    dy = dy.to(memory_format=torch.channels_last)
    _check_against_reference(x, _logits(shape[:2], dtype, device), dy)
    y, dx, _ = _ours(x, _logits(shape[:2], dtype, device), dy)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last)
    assert y.stride() == x.stride()


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_3d_keeps_format(device):
    x = torch.randn(2, 6, 3, 4, 5, device=device).to(memory_format=torch.channels_last_3d)
    dy = torch.randn_like(x)
    _check_against_reference(x, _logits((2, 6), torch.float32, device), dy)
    y, dx, _ = _ours(x, _logits((2, 6), torch.float32, device), dy)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    assert dx.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_large_channels_last_rows_span_several_tasks(device, dtype):
    # Enough positions that the channels-last backward splits each batch item into chunks.
    shape = (2, 40, 36, 30)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    dy = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    logits = _logits(shape[:2], dtype, device)
    for fmt in (torch.contiguous_format, torch.channels_last):
        _check_against_reference(x.to(memory_format=fmt), logits, dy.to(memory_format=fmt))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_inputs(device, dtype):
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(3, 10, 7, 9, generator=gen).to(device=device, dtype=dtype)
    x = base[:, ::2, 1:, ::3]  # sliced: neither contiguous nor channels-last
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    logits = _logits((3, 10), dtype, device)[:, ::2]  # non-contiguous logits too
    dy = torch.randn(3, 6, 5, 3, generator=gen).to(device=device, dtype=dtype).transpose(1, 2)
    _check_against_reference(x, logits, dy)
    # An offset view (unaligned data pointer for the vectorised paths).
    flat = torch.randn(1 + 2 * 8 * 12, generator=gen).to(device=device, dtype=dtype)
    x = flat[1:].view(2, 8, 12)
    _check_against_reference(x, _logits((2, 8), dtype, device), torch.randn_like(x))


@pytest.mark.parametrize("device", DEVICES)
def test_grad_y_in_another_layout(device):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 4, 6, generator=gen).to(device)
    logits = _logits((2, 8), torch.float32, device)
    dy = torch.randn(2, 8, 4, 6, generator=gen).to(device)
    # x channels_last, dy contiguous; and the other way round.
    _check_against_reference(x.to(memory_format=torch.channels_last), logits, dy)
    _check_against_reference(x, logits, dy.to(memory_format=torch.channels_last))
    # dy from .sum(): an expanded tensor with zero strides.
    xg = x.to(memory_format=torch.channels_last).requires_grad_(True)
    lg = logits.clone().requires_grad_(True)
    nfa_gate(xg, lg).sum().backward()
    _, edx, edl = _expected(x, logits, torch.ones_like(x))
    torch.testing.assert_close(xg.grad.double(), edx, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lg.grad.double(), edl, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("x_dtype", "logits_dtype"), [
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.float16),
    (torch.float32, torch.float64),
    (torch.float64, torch.float32),
])
def test_mixed_dtypes(device, x_dtype, logits_dtype):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 3, 5, generator=gen).to(device=device, dtype=x_dtype)
    dy = torch.randn(2, 8, 3, 5, generator=gen).to(device=device, dtype=x_dtype)
    logits = _logits((2, 8), logits_dtype, device)
    _check_against_reference(x, logits, dy)
    _check_against_reference(x.to(memory_format=torch.channels_last), logits, dy)


def _gate_and_slope(logit: float, lo: float, hi: float) -> tuple[float, float]:
    """The clamp rule on one logit, in Python floats: (g', d g' / d logit)."""
    g = 1 / (1 + math.exp(-logit))
    if g < lo:
        return lo, 0.0
    if g > hi:
        return 1.0, 0.0
    return g, g * (1 - g)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("lo", "hi"), [(LO, HI), (0.5, HI), (LO, 0.5)])
def test_clamp_regions_and_exact_boundaries(device, dtype, lo, hi):
    # Logits in every branch: g < lo, g > hi, lo < g < hi (for the first pair), and logit 0,
    # whose g = 0.5 is exact in every dtype: exactly at lo = 0.5 and at hi = 0.5, where the
    # middle branch applies (g' = 0.5, slope 1/4).
    logit_values = [-3.0, 4.0, 0.4, 0.0]
    logits = torch.tensor([logit_values], dtype=dtype, device=device)
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.5], [2.0, 1.0], [-1.0, 4.0]]], dtype=dtype, device=device)
    dy = torch.tensor([[[0.5, 1.0], [2.0, -1.0], [1.0, 3.0], [2.0, 1.0]]], dtype=dtype, device=device)
    rule = [_gate_and_slope(float(v), lo, hi) for v in logits.double().flatten().tolist()]
    gate = torch.tensor([r[0] for r in rule], dtype=torch.float64)
    slope = torch.tensor([r[1] for r in rule], dtype=torch.float64)
    assert gate[3] == 0.5 and slope[3] == 0.25
    y, dx, dl = _ours(x, logits, dy, lo, hi)
    x64, dy64 = x.double().cpu(), dy.double().cpu()
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(y.double().cpu(), x64 * gate[None, :, None], atol=atol, rtol=rtol)
    torch.testing.assert_close(dx.double().cpu(), dy64 * gate[None, :, None], atol=atol, rtol=rtol)
    torch.testing.assert_close(dl.double().cpu(), (dy64 * x64).sum(-1) * slope, atol=atol, rtol=rtol)
    if dtype == torch.float64:
        _check_against_reference(x, logits, dy, lo, hi)


@pytest.mark.parametrize("device", DEVICES)
def test_lo_zero_and_hi_one(device):
    # The widest gate: every g is in the middle branch, so y = x * sigmoid(logits).
    x = torch.randn(2, 3, 4, dtype=torch.float64, device=device)
    logits = torch.randn(2, 3, dtype=torch.float64, device=device) * 4
    y, _, dl = _ours(x, logits, torch.ones_like(x), 0.0, 1.0)
    g = torch.sigmoid(logits)
    torch.testing.assert_close(y, x * g[..., None])
    torch.testing.assert_close(dl, x.sum(-1) * g * (1 - g))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 4, 3), (2, 0, 5), (2, 3, 0), (2, 3, 4, 0)])
def test_empty_inputs(device, shape):
    x = torch.randn(shape, device=device, requires_grad=True)
    logits = torch.randn(shape[:2], device=device, requires_grad=True)
    y = nfa_gate(x, logits)
    assert y.shape == x.shape
    dx, dl = torch.autograd.grad(y, (x, logits), torch.ones_like(y))
    assert dx.shape == x.shape
    assert torch.equal(dl, torch.zeros_like(logits))  # a sum over no positions


def _gradcheck_logits(shape: tuple[int, int], device: str) -> torch.Tensor:
    """float64 logits at least 0.05 away from the kinks, where the gate is not differentiable."""
    return _logits(shape, torch.float64, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gradcheck(device, memory_format):
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, device=device).to(memory_format=memory_format)
    x.requires_grad_(True)
    logits = _gradcheck_logits((2, 5), device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: nfa_gate(a, b, LO, HI), (x, logits))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_no_spatial(device):
    x = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    logits = _gradcheck_logits((3, 6), device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: nfa_gate(a, b, LO, HI), (x, logits))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_opcheck_forward(device, memory_format):
    x = torch.randn(2, 4, 3, 5, device=device).to(memory_format=memory_format).requires_grad_(True)
    logits = _logits((2, 4), torch.float32, device).requires_grad_(True)
    torch.library.opcheck(torch.ops.hdml.nfa_gate.default, (x, logits, LO, HI))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_forward_sliced_input(device):
    x = torch.randn(2, 8, 3, 5, device=device)[:, ::2]
    logits = _logits((2, 4), torch.float32, device)
    torch.library.opcheck(torch.ops.hdml.nfa_gate.default, (x, logits, LO, HI))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_opcheck_backward(device, memory_format):
    x = torch.randn(2, 4, 3, 5, device=device).to(memory_format=memory_format)
    dy = torch.randn(2, 4, 3, 5, device=device)
    logits = _logits((2, 4), torch.float32, device)
    torch.library.opcheck(torch.ops.hdml.nfa_gate_backward.default, (dy, x, logits, LO, HI))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_forward_and_backward(device):
    x = torch.randn(2, 4, 3, 5, device=device)
    logits = _logits((2, 4), torch.float32, device)
    dy = torch.randn_like(x)

    def gate_and_grads(x: torch.Tensor, logits: torch.Tensor, dy: torch.Tensor):
        y = nfa_gate(x, logits, LO, HI)
        return (y, *torch.autograd.grad(y, (x, logits), dy))

    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: nfa_gate(a, b, LO, HI), fullgraph=True)
    xc, lc = x.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    y = compiled(xc, lc)
    got = (y, *torch.autograd.grad(y, (xc, lc), dy))
    want = gate_and_grads(x.clone().requires_grad_(True), logits.clone().requires_grad_(True), dy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_no_copy_of_channels_last_input():
    x = torch.randn(2, 8, 4, 6).to(memory_format=torch.channels_last)
    logits = _logits((2, 8), torch.float32, "cpu")
    dy = torch.randn_like(x)
    dy_contiguous = dy.contiguous()

    def copies(fn) -> int:
        with torch.autograd.profiler.profile() as prof:
            fn()
        return sum(e.name == "aten::copy_" for e in prof.function_events)

    assert copies(lambda: torch.ops.hdml.nfa_gate(x, logits, LO, HI)) == 0
    assert copies(lambda: torch.ops.hdml.nfa_gate_backward(dy, x, logits, LO, HI)) == 0
    # grad_y in another layout: exactly one copy, into x's layout.
    assert copies(lambda: torch.ops.hdml.nfa_gate_backward(dy_contiguous, x, logits, LO, HI)) == 1
    # Strides the kernels do not walk: one contiguous copy.
    half_logits = logits[:, ::2].contiguous()
    assert copies(lambda: torch.ops.hdml.nfa_gate(x[:, ::2], half_logits, LO, HI)) == 1


def test_result_does_not_depend_on_thread_count():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 24, 40, 40, generator=gen).to(memory_format=torch.channels_last)
    dy = torch.randn(3, 24, 40, 40, generator=gen).to(memory_format=torch.channels_last)
    logits = _logits((3, 24), torch.float32, "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.hdml.nfa_gate_backward(dy, x, logits, LO, HI)
        torch.set_num_threads(max(2, threads))
        many = torch.ops.hdml.nfa_gate_backward(dy, x, logits, LO, HI)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@st.composite
def _cases(draw):
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 9))
    spatial = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    lo = draw(st.floats(0.0, 0.95))
    hi = draw(st.floats(lo + 0.01, 1.0))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "sliced"]))
    seed = draw(st.integers(0, 2**16))
    return (batch, channels, *spatial), lo, hi, layout, seed


@settings(max_examples=60, deadline=None)
@given(case=_cases())
def test_property_matches_reference(case):
    shape, lo, hi, layout, seed = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    if layout == "channels_last" and x.dim() == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = torch.randn(shape[0], 2 * shape[1], *shape[2:], dtype=torch.float64, generator=gen)[:, 1::2]
    logits = 4 * torch.randn(shape[:2], dtype=torch.float64, generator=gen)
    dy = torch.randn(shape, dtype=torch.float64, generator=gen)
    _check_against_reference(x, logits, dy, lo, hi)
    y = nfa_gate(x, logits, lo, hi)
    # The gate is within [lo, 1]: |y| <= |x| and |y| >= lo |x|.
    assert torch.all(y.abs() <= x.abs()) and torch.all(y.abs() >= lo * x.abs() * (1 - 1e-12))


# One test per bad input: the exception type, and a message that names the argument. Each runs
# through the wrapper and through the raw op (whose TORCH_CHECKs raise RuntimeError).

def _raw(x, logits, lo=LO, hi=HI):
    return torch.ops.hdml.nfa_gate(x, logits, lo, hi)


def test_x_not_a_tensor():
    with pytest.raises(TypeError, match=r"x should be a torch\.Tensor"):
        nfa_gate([[1.0]], torch.zeros(1, 1))


def test_logits_not_a_tensor():
    with pytest.raises(TypeError, match=r"logits should be a torch\.Tensor"):
        nfa_gate(torch.zeros(1, 1), [[0.0]])


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, ValueError), (_raw, RuntimeError)])
def test_x_rank_below_two(fn, exc):
    with pytest.raises(exc, match=r"x should be \[B, C, \*spatial\]"):
        fn(torch.zeros(4), torch.zeros(4, 1))


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, ValueError), (_raw, RuntimeError)])
def test_logits_wrong_shape(fn, exc):
    with pytest.raises(exc, match=r"logits should have shape \[B, C\]"):
        fn(torch.zeros(2, 3, 4), torch.zeros(2, 4))


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, ValueError), (_raw, RuntimeError)])
def test_logits_wrong_rank(fn, exc):
    with pytest.raises(exc, match=r"logits should have shape \[B, C\]"):
        fn(torch.zeros(2, 3, 4), torch.zeros(2, 3, 1))


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, TypeError), (_raw, RuntimeError)])
def test_x_not_floating(fn, exc):
    with pytest.raises(exc, match="x should be a floating-point tensor"):
        fn(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3))


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, TypeError), (_raw, RuntimeError)])
def test_logits_not_floating(fn, exc):
    with pytest.raises(exc, match="logits should be a floating-point tensor"):
        fn(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int32))


@pytest.mark.parametrize(("fn", "exc"), [(nfa_gate, ValueError), (_raw, RuntimeError)])
@pytest.mark.parametrize(("lo", "hi"), [(0.9, 0.3), (0.5, 0.5), (-0.1, 0.9), (0.3, 1.5), (math.nan, 0.9)])
def test_lo_hi_out_of_order_or_range(fn, exc, lo, hi):
    with pytest.raises(exc, match="lo and hi should satisfy 0 <= lo < hi <= 1"):
        fn(torch.zeros(2, 3), torch.zeros(2, 3), lo, hi)


def test_lo_not_a_number():
    with pytest.raises(TypeError, match="lo should be a float"):
        nfa_gate(torch.zeros(2, 3), torch.zeros(2, 3), "0.3")


def test_device_mismatch_cpu_kernel():
    # The CPU kernel called directly with logits elsewhere (a meta tensor stands in for a GPU).
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match="x and logits should be on the same device"):
        torch.ops.hdml.nfa_gate.default.redispatch(cpu, torch.zeros(2, 3), torch.zeros(2, 3, device="meta"),
                                                   LO, HI)


def test_wrapper_rejects_logits_on_another_device():
    # A meta tensor stands in for another device: without the check, the op dispatched to its
    # meta kernel and returned uninitialised memory.
    with pytest.raises(ValueError, match="logits should be on x's device cpu, got meta"):
        nfa_gate(torch.ones(2, 3, 4), torch.zeros(2, 3, device="meta"))


def test_op_rejects_logits_on_another_device():
    with pytest.raises(ValueError, match="logits should be on x's device cpu, got meta"):
        torch.ops.hdml.nfa_gate.default(torch.ones(2, 3, 4), torch.zeros(2, 3, device="meta"), LO, HI)


def test_backward_op_rejects_tensors_on_another_device():
    with pytest.raises(ValueError, match="grad_y should be on x's device cpu, got meta"):
        torch.ops.hdml.nfa_gate_backward.default(torch.ones(2, 3, device="meta"), torch.ones(2, 3),
                                                 torch.zeros(2, 3), LO, HI)
    with pytest.raises(ValueError, match="logits should be on x's device cpu, got meta"):
        torch.ops.hdml.nfa_gate_backward.default(torch.ones(2, 3), torch.ones(2, 3),
                                                 torch.zeros(2, 3, device="meta"), LO, HI)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present: needs two devices")
def test_device_mismatch():
    with pytest.raises(ValueError, match="logits should be on x's device cpu, got cuda:0"):
        nfa_gate(torch.zeros(2, 3), torch.zeros(2, 3, device="cuda"))
    with pytest.raises(RuntimeError, match="x and logits should be on the same device"):
        torch.ops.hdml.nfa_gate.default(torch.zeros(2, 3, device="cuda"), torch.zeros(2, 3), LO, HI)


def test_backward_grad_y_wrong_shape():
    with pytest.raises(RuntimeError, match=r"grad_y should have x's shape \[2, 3, 4\], got \[2, 3, 5\]"):
        torch.ops.hdml.nfa_gate_backward(torch.zeros(2, 3, 5), torch.zeros(2, 3, 4), torch.zeros(2, 3),
                                         LO, HI)


def test_backward_grad_y_wrong_dtype():
    with pytest.raises(RuntimeError, match="grad_y and x should have the same dtype"):
        torch.ops.hdml.nfa_gate_backward(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3),
                                         torch.zeros(2, 3), LO, HI)


def test_backward_checks_x_and_logits_too():
    with pytest.raises(RuntimeError, match=r"logits should have shape \[B, C\]"):
        torch.ops.hdml.nfa_gate_backward(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 2), LO, HI)


def test_backward_lo_hi_checked():
    with pytest.raises(RuntimeError, match="lo and hi should satisfy"):
        torch.ops.hdml.nfa_gate_backward(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), 0.9, 0.1)
