"""hdml_ext.graph.fgraph_nodes: node order, focus None vs given, agreement with the adjacency, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES

from hdml_ext.graph import fgraph_nodes
from hdml_ext.ops import fgraph_adjacency, reference


@pytest.mark.parametrize("device", DEVICES)
def test_focus_first_then_its_neighbours_in_order(device):
    knn_idx = torch.tensor([[2, 1, 3], [0, 2, 3], [3, 0, 1], [1, 2, 0]], device=device)
    nodes = fgraph_nodes(knn_idx, torch.tensor([2, 0], device=device))
    assert nodes.dtype == torch.int64 and nodes.device == knn_idx.device
    assert nodes.tolist() == [[2, 3, 0, 1], [0, 2, 1, 3]]


@pytest.mark.parametrize("device", DEVICES)
def test_focus_none_means_every_node_in_order(device):
    gen = torch.Generator().manual_seed(0)
    knn_idx = torch.randint(0, 25, (25, 4), generator=gen).to(device)
    every = fgraph_nodes(knn_idx)
    assert every.shape == (25, 5)
    torch.testing.assert_close(every, fgraph_nodes(knn_idx, torch.arange(25, device=device)), rtol=0, atol=0)
    torch.testing.assert_close(every[:, 0], torch.arange(25, device=device), rtol=0, atol=0)
    torch.testing.assert_close(every[:, 1:], knn_idx, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_repeated_and_empty_focus(device):
    knn_idx = torch.tensor([[1, 1], [0, 0], [0, 1]], device=device)
    assert fgraph_nodes(knn_idx, torch.tensor([1, 1, 2], device=device)).tolist() == [[1, 0, 0], [1, 0, 0],
                                                                                       [2, 0, 1]]
    empty = fgraph_nodes(knn_idx, torch.empty(0, dtype=torch.int64, device=device))
    assert empty.shape == (0, 3) and empty.dtype == torch.int64
    assert fgraph_nodes(torch.zeros(0, 4, dtype=torch.int64, device=device)).shape == (0, 5)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    wide = torch.arange(60, device=device).reshape(10, 6) % 10
    knn_idx = wide[:, 1::2]  # column stride 2
    focus = torch.arange(10, device=device)[::3]
    expected = reference.fgraph_nodes(knn_idx.contiguous(), focus.contiguous())
    torch.testing.assert_close(fgraph_nodes(knn_idx, focus), expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_matches_the_adjacency_order(device):
    # adj[b, a, c] is about nodes[b, a] and nodes[b, c]: the two must agree on the order.
    gen = torch.Generator().manual_seed(3)
    knn_idx = torch.randint(0, 15, (15, 3), generator=gen).to(device)
    focus = torch.tensor([4, 9, 9], device=device)
    nodes = fgraph_nodes(knn_idx, focus)
    adj = fgraph_adjacency(knn_idx, focus, symmetric=False)
    expected = (knn_idx[nodes][:, :, :, None] == nodes[:, None, None, :]).any(dim=2)
    expected &= ~torch.eye(4, dtype=torch.bool, device=device)
    torch.testing.assert_close(adj, expected, rtol=0, atol=0)


def test_knn_idx_not_a_tensor():
    with pytest.raises(TypeError, match=r"knn_idx should be a torch\.Tensor, got list"):
        fgraph_nodes([[1], [0]])


def test_knn_idx_not_2d():
    with pytest.raises(ValueError, match="knn_idx should be 2-D, got 3-D"):
        fgraph_nodes(torch.zeros(2, 1, 1, dtype=torch.int64))


def test_knn_idx_not_int64():
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64, got torch\.float32"):
        fgraph_nodes(torch.zeros(2, 1))


def test_focus_not_a_tensor():
    with pytest.raises(TypeError, match=r"focus should be a torch\.Tensor, got tuple"):
        fgraph_nodes(torch.tensor([[1], [0]]), (0,))


def test_focus_not_1d():
    with pytest.raises(ValueError, match="focus should be 1-D, got 0-D"):
        fgraph_nodes(torch.tensor([[1], [0]]), torch.tensor(0))


def test_focus_not_int64():
    with pytest.raises(TypeError, match=r"focus should have dtype torch\.int64, got torch\.int16"):
        fgraph_nodes(torch.tensor([[1], [0]]), torch.tensor([0], dtype=torch.int16))


def test_focus_on_another_device():
    with pytest.raises(ValueError, match="focus should be on knn_idx's device cpu, got meta"):
        fgraph_nodes(torch.tensor([[1], [0]]), torch.tensor([0], device="meta"))


def test_focus_id_too_large():
    with pytest.raises(ValueError, match=r"focus ids should lie in \[0, 2\), got values in \[0, 2\]"):
        fgraph_nodes(torch.tensor([[1], [0]]), torch.tensor([0, 2]))


def test_focus_id_negative():
    with pytest.raises(ValueError, match=r"focus ids should lie in \[0, 2\), got values in \[-3, 1\]"):
        fgraph_nodes(torch.tensor([[1], [0]]), torch.tensor([1, -3]))


def test_focus_given_for_a_table_without_rows():
    with pytest.raises(ValueError, match=r"focus ids should lie in \[0, 0\)"):
        fgraph_nodes(torch.zeros(0, 2, dtype=torch.int64), torch.tensor([0]))
