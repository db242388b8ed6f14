"""hdml_ext.nn.NodeHead (FC, eq. 11) and EdgeHead (FC -> PReLU -> FC, eq. 14)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad

from hdml_ext.nn import EdgeHead, NodeHead


def test_node_head_is_one_fc():
    head = NodeHead(16, 5)
    m = torch.randn(3, 16)
    torch.testing.assert_close(head(m), m @ head.fc.weight.T + head.fc.bias)


@pytest.mark.parametrize("device", DEVICES)
def test_edge_head_is_fc_prelu_fc_on_every_node(device):
    torch.manual_seed(0)
    head = EdgeHead(6).to(device)
    with torch.no_grad():
        head.act.weight.uniform_(0.0, 0.5)  # distinct per-channel slopes
    e = torch.randn(2, 4, 6, device=device)
    h = e @ head.fc1.weight.T + head.fc1.bias
    h = torch.where(h >= 0, h, head.act.weight * h)
    torch.testing.assert_close(head(e), h @ head.fc2.weight.T + head.fc2.bias)
    assert head(e).shape == (2, 4, 2)


def test_edge_head_scores_each_node_independently():
    torch.manual_seed(0)
    head = EdgeHead(6)
    e = torch.randn(2, 4, 6)
    torch.testing.assert_close(head(e)[1, 2], head(e[1, 2][None])[0])


def test_gradient_reaches_every_parameter():
    node, edge = NodeHead(8, 3), EdgeHead(8)
    x = torch.randn(2, 5, 8)
    (node(x).sum() + edge(x).square().sum()).backward()
    assert_every_parameter_has_a_finite_grad(node)
    assert_every_parameter_has_a_finite_grad(edge)


def test_runs_under_cpu_autocast_bfloat16():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = EdgeHead(8)(torch.randn(2, 5, 8))
    assert out.shape == (2, 5, 2) and torch.isfinite(out.float()).all()


def test_rejects_zero_classes():
    with pytest.raises(ValueError, match="num_classes"):
        NodeHead(8, 0)


def test_rejects_zero_width_edge_head():
    with pytest.raises(ValueError, match="dim"):
        EdgeHead(0)
