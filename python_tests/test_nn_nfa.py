"""hdml_ext.nn.NFA: GAP -> BN1d -> FC -> the clamped gate (paper eq. 5-8)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad

from hdml_ext.nn import NFA
from hdml_ext.ops import reference


def _forced(channels: int, bias: float, **kwargs) -> NFA:
    """An NFA whose FC ignores its input and outputs `bias` for every channel."""
    nfa = NFA(channels, **kwargs)
    with torch.no_grad():
        nfa.fc.weight.zero_()
        nfa.fc.bias.fill_(bias)
    return nfa


@pytest.mark.parametrize("device", DEVICES)
def test_matches_the_composition_of_its_parts(device):
    torch.manual_seed(0)
    nfa = NFA(16).to(device).eval()
    with torch.no_grad():
        nfa.bn.running_mean.uniform_(-0.5, 0.5)
        nfa.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 16, 5, 4, device=device)
    logits = nfa.fc(nfa.bn(x.mean(dim=(2, 3))))
    torch.testing.assert_close(nfa(x), reference.nfa_gate(x, logits))


def test_saturated_gates_pass_the_input_through():
    x = torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(_forced(8, 10.0)(x), x, rtol=0, atol=0)


def test_floored_gates_scale_the_input_by_lo():
    x = torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(_forced(8, -10.0)(x), 0.3 * x)
    torch.testing.assert_close(_forced(8, -10.0, lo=0.1, hi=0.8)(x), 0.1 * x)


def test_gates_between_lo_and_hi_are_the_sigmoid():
    x = torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(_forced(8, 0.0)(x), 0.5 * x)
    # sigmoid(1.5) = 0.82 is kept with hi = 0.9 but becomes 1 with hi = 0.8
    torch.testing.assert_close(_forced(8, 1.5)(x), torch.sigmoid(torch.tensor(1.5)) * x)
    torch.testing.assert_close(_forced(8, 1.5, hi=0.8)(x), x)


def test_clamped_gates_pass_no_gradient_to_the_attention():
    x = torch.randn(4, 8, 3, 3, requires_grad=True)
    nfa = _forced(8, 10.0)
    nfa(x).sum().backward()
    assert torch.count_nonzero(nfa.fc.weight.grad) == 0
    assert torch.count_nonzero(nfa.fc.bias.grad) == 0
    torch.testing.assert_close(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_reaches_every_parameter(device):
    torch.manual_seed(0)
    nfa = NFA(8).to(device).train()
    x = torch.randn(4, 8, 5, 3, device=device, requires_grad=True)
    (nfa(x) * torch.randn_like(x)).sum().backward()
    assert_every_parameter_has_a_finite_grad(nfa)
    assert nfa.fc.weight.grad.abs().sum() > 0


def test_gradcheck_float64():
    torch.manual_seed(0)
    nfa = NFA(6).double().eval()
    with torch.no_grad():
        nfa.fc.weight.mul_(0.1)  # keep the gates away from the clamp's kinks
        nfa.fc.bias.zero_()
    x = torch.randn(2, 6, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(nfa, (x,), fast_mode=True)


def test_keeps_channels_last():
    nfa = NFA(8).eval()
    x = torch.randn(2, 8, 4, 4)
    y = nfa(x.to(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, nfa(x))


def test_runs_under_cpu_autocast_bfloat16():
    nfa = NFA(8)
    x = torch.randn(4, 8, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = nfa(x.bfloat16())
    assert y.dtype == torch.bfloat16 and y.shape == x.shape and torch.isfinite(y.float()).all()


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"x should be \[N, 8, H, W\]"):
        NFA(8)(torch.randn(2, 4, 3, 3))


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match="x should be"):
        NFA(8)(torch.randn(2, 8))


def test_rejects_lo_not_below_hi():
    with pytest.raises(ValueError, match="lo and hi"):
        NFA(8, lo=0.9, hi=0.3)


def test_rejects_zero_channels():
    with pytest.raises(ValueError, match="channels"):
        NFA(0)
