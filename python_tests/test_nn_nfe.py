"""hdml_ext.nn.NFE: m = FC(GAP(x) + GMP(x)) (paper eq. 9)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad

from hdml_ext.nn import NFE


@pytest.mark.parametrize("device", DEVICES)
def test_is_fc_of_average_plus_max_pooling(device):
    torch.manual_seed(0)
    nfe = NFE(6, out_dim=5).to(device)
    x = torch.randn(3, 6, 4, 2, device=device)
    pooled = x.flatten(2).mean(-1) + x.flatten(2).max(-1).values
    torch.testing.assert_close(nfe(x), pooled @ nfe.fc.weight.T + nfe.fc.bias)


def test_uses_both_poolings():
    # A single hot pixel: GAP sees it divided by H*W, GMP sees it whole.
    nfe = NFE(1, out_dim=1)
    with torch.no_grad():
        nfe.fc.weight.fill_(1.0)
        nfe.fc.bias.zero_()
    x = torch.zeros(1, 1, 2, 4)
    x[0, 0, 1, 3] = 8.0
    torch.testing.assert_close(nfe(x), torch.tensor([[8.0 / 8 + 8.0]]))


def test_default_width_is_the_papers_512():
    assert NFE(32)(torch.randn(2, 32, 3, 3)).shape == (2, 512)


def test_gradient_reaches_every_parameter():
    nfe = NFE(8, out_dim=4)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    nfe(x).square().sum().backward()
    assert_every_parameter_has_a_finite_grad(nfe)
    assert x.grad is not None


def test_runs_under_cpu_autocast_bfloat16():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = NFE(8, out_dim=4)(torch.randn(2, 8, 3, 3))
    assert y.dtype == torch.bfloat16 and y.shape == (2, 4)


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"x should be \[N, 8, H, W\]"):
        NFE(8)(torch.randn(2, 3, 3, 3))


def test_rejects_zero_out_dim():
    with pytest.raises(ValueError, match="out_dim"):
        NFE(8, out_dim=0)
