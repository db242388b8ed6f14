"""hdml_ext.graph.fgraphs: fgraph_nodes (node order, focus None vs given, agreement with the
adjacency, errors), the FGraphs handle (batch, with_k, to, checks), require_k, and load's checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEVICES

from hdml_ext.graph import FGraphs, fgraph_nodes, require_k
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


def _graphs(num_nodes: int = 12, k: int = 3, seed: int = 0) -> FGraphs:
    points = torch.randn(num_nodes, 4, generator=torch.Generator().manual_seed(seed))
    dist, idx = reference.knn(points, k)
    return FGraphs(idx, dist.float(), "exact", "test tables")


@pytest.mark.parametrize("device", DEVICES)
def test_batch_is_nodes_and_adjacency_of_the_focus(device):
    graphs = _graphs().to(device)
    focus = torch.tensor([4, 0, 11, 4], device=device)
    nodes, adj = graphs.batch(focus)
    assert torch.equal(nodes, fgraph_nodes(graphs.knn_idx, focus))
    assert torch.equal(adj, fgraph_adjacency(graphs.knn_idx, focus, symmetric=False))  # directed rows
    assert nodes.shape == (4, 4) and adj.shape == (4, 4, 4) and adj.device == focus.device


def test_with_k_keeps_the_first_columns_and_to_moves_the_tables():
    graphs = _graphs(k=5)
    three = graphs.with_k(3)
    assert torch.equal(three.knn_idx, graphs.knn_idx[:, :3])
    assert torch.equal(three.knn_dist, graphs.knn_dist[:, :3])
    assert three.k == 3 and three.num_nodes == 12 and three.backend == "exact"
    assert graphs.with_k(5) is graphs
    with pytest.raises(ValueError, match="k should be at most the tables' 5 columns, got k=6"):
        graphs.with_k(6)
    assert graphs.to("meta").knn_idx.device.type == "meta"


def test_tables_given_without_distances():
    graphs = FGraphs(torch.tensor([[1], [0], [1]]))
    assert graphs.knn_dist is None and graphs.backend == "given"
    with pytest.raises(ValueError, match="knn_dist should be a tensor to save"):
        graphs.save("unused.npz")


def test_fgraphs_checks_its_tables():
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64"):
        FGraphs(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="knn_idx should be 2-D"):
        FGraphs(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"k should be at most N - 1 = 2 .* got k=3 for N = 3"):
        FGraphs(torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"knn_dist should have knn_idx's shape \(3, 1\), got \(3, 2\)"):
        FGraphs(torch.zeros(3, 1, dtype=torch.int64), torch.zeros(3, 2))


@pytest.mark.parametrize(("table", "message"), [
    ([[1, 2], [1, 0], [0, 1]], r"without the row itself, got row 1 holding 1 at column 0"),
    ([[1, 2], [0, 2], [1, 0], [2, 2]],
     r"k distinct neighbours per row, got row 3 holding 2 at columns \[0, 1\]"),
    ([[1, 2], [0, 3], [0, 1]], r"ids of rows in \[0, 3\), got 3 in row 1 \(column 1\)"),
    ([[1, 2], [0, 2], [-1, 1]], r"ids of rows in \[0, 3\), got -1 in row 2 \(column 0\)"),
])
def test_fgraphs_refuses_a_table_whose_row_holds_itself_an_id_twice_or_a_foreign_id(table, message):
    # Each would put a focus twice into its own F-Graph (a free positive edge) or read past N.
    with pytest.raises(ValueError, match=message):
        FGraphs(torch.tensor(table))


def test_a_bad_table_is_refused_where_clustering_takes_it():
    from hdml_ext.cluster import node_fgraphs

    table = torch.tensor([[1, 2], [0, 2], [0, 1], [3, 0]])
    with pytest.raises(ValueError, match="got row 3 holding 3 at column 0"):
        node_fgraphs(torch.randn(4, 5), 2, table)


def test_the_table_check_names_the_first_bad_row_past_the_first_block():
    num_nodes = 40_000
    table = (torch.arange(num_nodes)[:, None] + torch.tensor([1, 2, 3])) % num_nodes
    FGraphs(table)
    table[33_333, 2] = 33_333
    table[39_999, 0] = table[39_999, 1]
    with pytest.raises(ValueError, match="got row 33333 holding 33333 at column 2"):
        FGraphs(table)


def test_require_k_names_k_and_the_node_count():
    assert require_k(4, 5) == 4
    with pytest.raises(ValueError, match=r"k should be at most G - 1 = 3 .* got k=4 for G = 4"):
        require_k(4, 4, nodes="G")
    with pytest.raises(ValueError, match="k should be >= 1"):
        require_k(0, 4)
    with pytest.raises(TypeError, match="k should be an int"):
        require_k(1.0, 4)


def _write_tables(path, data, **extra):
    np.savez(path, data=data, **extra)


def test_load_rejects_bad_ids_and_distances(tmp_path):
    data = np.zeros((3, 2, 1), dtype=np.float32)
    data[:, 0, 0] = [1, 0, 1]
    path = tmp_path / "tables.npz"
    for bad_id in (np.nan, 3.0, -1.0, 0.5):
        data[1, 0, 0] = bad_id
        _write_tables(path, data)
        with pytest.raises(ValueError, match=r"should hold neighbour ids: integers in \[0, 3\)"):
            FGraphs.load(path)
    data[1, 0, 0] = 0
    data[2, 1, 0] = np.nan
    _write_tables(path, data)
    with pytest.raises(ValueError, match="should hold finite distances"):
        FGraphs.load(path)


def _learn_to_cluster_tables(num_nodes: int = 12, k: int = 4) -> tuple[np.ndarray, torch.Tensor,
                                                                       torch.Tensor]:
    """learn-to-cluster's knn layout ('data' [N, 2, k + 1], each row itself first at distance 0)
    of random points, and the exact tables without self it should load as."""
    points = torch.randn(num_nodes, 3, generator=torch.Generator().manual_seed(0))
    dist, idx = reference.knn(points, k)
    data = np.empty((num_nodes, 2, k + 1), dtype=np.float32)
    data[:, 0, 0], data[:, 1, 0] = np.arange(num_nodes), 0.0
    data[:, 0, 1:], data[:, 1, 1:] = idx.numpy(), dist.numpy()
    return data, idx, dist


def test_load_removes_the_self_column_of_learn_to_cluster_tables(tmp_path):
    data, idx, dist = _learn_to_cluster_tables()
    path = tmp_path / "knn.npz"
    _write_tables(path, data)
    graphs = FGraphs.load(path)
    assert graphs.k == 4 and torch.equal(graphs.knn_idx, idx)
    torch.testing.assert_close(graphs.knn_dist, dist)
    assert graphs.params["self_column_removed"] is True and "that column removed" in graphs.reason
    assert torch.equal(FGraphs.load(path, k=2).knn_idx, idx[:, :2])
    with pytest.raises(ValueError, match="at most the file's 4 neighbour columns, got k=5"):
        FGraphs.load(path, k=5)


def test_load_refuses_self_anywhere_but_a_first_column_of_every_row(tmp_path):
    data, _, _ = _learn_to_cluster_tables()
    without_self = data[:, :, 1:].copy()
    data[5, 0, [0, 1]] = data[5, 0, [1, 0]]  # row 5 lists itself second
    path = tmp_path / "knn.npz"
    _write_tables(path, data)
    with pytest.raises(ValueError, match=r"knn\.npz: knn_idx should list .* got row 0 holding 0 at column 0"):
        FGraphs.load(path)
    without_self[7, 0, 2] = 7
    _write_tables(path, without_self)
    with pytest.raises(ValueError, match="got row 7 holding 7 at column 2"):
        FGraphs.load(path)
    without_self[7, 0, 2] = without_self[7, 0, 0]
    _write_tables(path, without_self)
    with pytest.raises(ValueError, match=r"got row 7 holding \d+ at columns"):
        FGraphs.load(path)


def test_load_rejects_what_is_not_a_knn_npz(tmp_path):
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros((3, 2, 1)))
    with pytest.raises(ValueError, match=r"got a single \.npy array"):
        FGraphs.load(npy)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match=r"array 'data' \[N, 2, k\], got .* holding arrays \['weights'\]"):
        FGraphs.load(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="could not read"):
        FGraphs.load(junk)
    _write_tables(other, np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"should have shape \[N, 2, k\]"):
        FGraphs.load(other)
