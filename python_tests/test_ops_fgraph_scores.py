"""hdml_ext.ops.fgraph_scores (the fused link scores of F-Graphs at inference) against the
step-by-step reference."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES, run_with_cpu_capability

from hdml_ext.ops import ScoringWeights, fgraph_scores, reference

# Scores (probabilities) against the reference run in float64 on the same inputs.
TOL = {torch.float32: 2e-5, torch.float64: 1e-10}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(rows, cols, generator=gen, dtype=torch.float64) / cols**0.5


def make_weights(dims: tuple[int, ...], *, attention: bool = True, edge_input: str = "node",
                 relative_input: bool = False, cosine_prior: tuple[float, float] | None = None,
                 overlap_prior: float | None = None, hidden: int | None = None,
                 slope_per_channel: bool = True, seed: int = 1) -> ScoringWeights:
    """Random float64 inference weights of a stack of widths `dims` and its head."""
    gen = _gen(seed)
    d = dims[-1]
    hidden = d if hidden is None else hidden
    width = {"pair": 3 * d, "relative_cosine": d + 1}.get(edge_input, d)
    weights = tuple(_linear(2 * b, a, gen) for a, b in zip(dims[:-1], dims[1:]))
    biases = tuple(0.3 * torch.randn(b, generator=gen, dtype=torch.float64) for b in dims)
    att: tuple[torch.Tensor, ...] = ()
    if attention:
        att = tuple(t for b in dims for t in (_linear(b, b, gen), 0.3 * torch.randn(b, generator=gen,
                                                                                       dtype=torch.float64)))
    slope = torch.rand(hidden if slope_per_channel else 1, generator=gen, dtype=torch.float64) * 0.5
    head = (_linear(hidden, width, gen), 0.2 * torch.randn(hidden, generator=gen, dtype=torch.float64), slope,
            torch.randn(hidden, generator=gen, dtype=torch.float64) / hidden**0.5,
            torch.randn(1, generator=gen, dtype=torch.float64))
    return ScoringWeights(weights, biases, att, head, edge_input, relative_input, cosine_prior, overlap_prior)


def cast(weights: ScoringWeights, dtype: torch.dtype, device: str | torch.device = "cpu") -> ScoringWeights:
    def move(group: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(device=device, dtype=dtype) for t in group)

    return weights._replace(weights=move(weights.weights), biases=move(weights.biases),
                            attention=move(weights.attention), head=move(weights.head))


def make_graphs(num_rows: int, k: int, batch: int, *, symmetric: bool = False, seed: int = 2
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(table [num_rows, 6] float64, nodes [batch, k+1], adj [batch, k+1, k+1] bool) of F-Graphs."""
    gen = _gen(seed)
    table = torch.randn(num_rows, 6, generator=gen, dtype=torch.float64)
    _, knn_idx = reference.knn(table, k)
    focus = torch.randint(0, num_rows, (batch,), generator=gen)
    return table, reference.fgraph_nodes(knn_idx, focus), reference.fgraph_adjacency(knn_idx, focus,
                                                                                      symmetric=symmetric)


def projected_table(table: torch.Tensor, d0: int, seed: int = 3) -> torch.Tensor:
    return table @ _linear(2 * d0, table.shape[1], _gen(seed)).T


def check_against_reference(weights: ScoringWeights, *, dtype: torch.dtype = torch.float32,
                            device: str = "cpu", num_rows: int = 60, k: int = 7, batch: int = 19,
                            graphs_per_tile: int = 4, symmetric: bool = False,
                            adj_dtype: torch.dtype = torch.bool) -> torch.Tensor:
    table, nodes, adj = make_graphs(num_rows, k, batch, symmetric=symmetric)
    if adj_dtype != torch.bool:
        adj = adj.to(adj_dtype) * (0.5 + torch.rand(adj.shape, generator=_gen(4)))
    projected = projected_table(table, weights.biases[0].shape[0])
    expected = reference.fgraph_scores(projected, nodes, adj.double() if adj_dtype != torch.bool else adj,
                                       weights, table=table)
    w = cast(weights, dtype, device)
    got = fgraph_scores(projected.to(device, dtype), nodes.to(device), adj.to(device), w,
                        table=table.to(device, dtype), graphs_per_tile=graphs_per_tile)
    assert got.shape == (batch, k) and got.dtype == dtype and got.device.type == device
    torch.testing.assert_close(got.cpu().double(), expected, atol=TOL[dtype], rtol=0)
    return got


@pytest.mark.parametrize("edge_input", ["node", "relative", "pair", "relative_cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_edge_inputs(edge_input, dtype, device):
    check_against_reference(make_weights((16, 8), edge_input=edge_input), dtype=dtype, device=device)


@pytest.mark.parametrize(("relative_input", "cosine_prior", "overlap_prior"),
                         [(True, None, None), (False, (10.0, -5.0), None), (False, None, 5.0),
                          (True, (3.0, -1.0), 2.0)])
@pytest.mark.parametrize("device", DEVICES)
def test_relative_input_and_priors(relative_input, cosine_prior, overlap_prior, device):
    weights = make_weights((16, 8), relative_input=relative_input, cosine_prior=cosine_prior,
                           overlap_prior=overlap_prior)
    check_against_reference(weights, device=device)


@pytest.mark.parametrize("dims", [(12,), (40, 24), (72, 33, 17)])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_layers_and_widths(dims, attention, device):
    """Widths that are and are not multiples of the SIMD lanes (tails), one to three layers,
    a head narrower than the stack and a single PReLU slope."""
    weights = make_weights(dims, attention=attention, hidden=11, slope_per_channel=False, edge_input="pair")
    check_against_reference(weights, device=device)


@pytest.mark.parametrize("graphs_per_tile", [1, 3, 19, 64, 10**9])
def test_tiles(graphs_per_tile):
    """Any tile size, including one that does not divide the batch and ones larger than it (the
    buffers are sized by the graphs a thread has, not by the tile asked for)."""
    check_against_reference(make_weights((16, 8)), graphs_per_tile=graphs_per_tile)


@pytest.mark.parametrize(("symmetric", "adj_dtype"), [(True, torch.bool), (False, torch.float32),
                                                      (True, torch.float64)])
@pytest.mark.parametrize("device", DEVICES)
def test_adjacency_kinds(symmetric, adj_dtype, device):
    weights = make_weights((16, 8), overlap_prior=1.5)
    check_against_reference(weights, symmetric=symmetric, adj_dtype=adj_dtype, device=device)


def test_strided_inputs_and_isolated_nodes():
    """A transposed adjacency, a projected table with padded rows, and a node with no edge
    (zero degree: its aggregation is zero, as in gcn_aggregate)."""
    weights = make_weights((16, 8), overlap_prior=1.0)
    table, nodes, adj = make_graphs(50, 5, 9)
    adj = adj.clone()
    adj[:, 3, :] = False
    adj[:, :, 3] = False
    adj_t = adj.transpose(1, 2).contiguous().transpose(1, 2)
    projected = projected_table(table, 16)
    padded = torch.zeros(projected.shape[0], projected.shape[1] + 5, dtype=torch.float64)
    padded[:, :-5] = projected
    expected = reference.fgraph_scores(projected, nodes, adj, weights, table=table)
    got = fgraph_scores(padded[:, :-5].float(), nodes, adj_t, cast(weights, torch.float32),
                        table=table.float())
    torch.testing.assert_close(got.double(), expected, atol=TOL[torch.float32], rtol=0)


def test_two_threads():
    weights = make_weights((16, 8))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        check_against_reference(weights, batch=40, graphs_per_tile=3)
    finally:
        torch.set_num_threads(threads)


def test_empty_batch():
    weights = cast(make_weights((16, 8)), torch.float32)
    out = fgraph_scores(torch.zeros(5, 32), torch.zeros(0, 4, dtype=torch.int64),
                        torch.zeros(0, 4, 4, dtype=torch.bool), weights)
    assert out.shape == (0, 3)


def test_portable_variant():
    """The baseline (non-AVX) variant of the passes gives the same scores."""
    script = (
        "import sys, torch\n"
        "from test_ops_fgraph_scores import check_against_reference, make_weights\n"
        "weights = make_weights((40, 24), edge_input='relative_cosine', cosine_prior=(2.0, -1.0))\n"
        "check_against_reference(weights)\n"
        "print('ok')\n"
    )
    assert run_with_cpu_capability(script, "default").strip().endswith("ok")


def _args(dtype: torch.dtype = torch.float32
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ScoringWeights]:
    table, nodes, adj = make_graphs(30, 4, 6)
    return projected_table(table, 16).to(dtype), nodes, adj, cast(make_weights((16, 8)), dtype)


@pytest.mark.parametrize(("change", "error", "match"), [
    (lambda p, n, a, w: (p, n + 100, a, w), RuntimeError, r"nodes should hold row ids in \[0, 30\)"),
    (lambda p, n, a, w: (p, n.int(), a, w), RuntimeError, "nodes should be int64"),
    (lambda p, n, a, w: (p, n, a[:, :4], w), RuntimeError, r"adj should be \[B, n, n\] = \[6, 5, 5\]"),
    (lambda p, n, a, w: (p[:, :31], n, a, w), RuntimeError, "an even width"),
    (lambda p, n, a, w: (p.half(), n, a, w), RuntimeError, "projected should be float32 or float64"),
    (lambda p, n, a, w: (p, n, a, w._replace(biases=(w.biases[0], w.biases[1][:5]))), RuntimeError,
     r"biases\[1\] should have shape \[8\]"),
    (lambda p, n, a, w: (p, n, a, w._replace(weights=(w.weights[0].double(),))), RuntimeError,
     r"weights\[0\] should have projected's dtype"),
    (lambda p, n, a, w: (p, n, a, w._replace(attention=w.attention[:3])), RuntimeError,
     "attention should be empty or hold 4 tensors"),
    (lambda p, n, a, w: (p, n, a, w._replace(head=w.head[:4])), RuntimeError, "head should hold 5 tensors"),
    (lambda p, n, a, w: (p, n, a, w._replace(edge_input="cosine")), ValueError,
     "edge_input should be one of"),
    (lambda p, n, a, w: (p, n, a, w._replace(cosine_prior=(1.0, 0.0))), ValueError, "table should be given"),
])
def test_errors(change, error, match):
    projected, nodes, adj, weights = change(*_args())
    with pytest.raises(error, match=match):
        fgraph_scores(projected, nodes, adj, weights)


def test_refuses_inputs_that_require_grad():
    projected, nodes, adj, weights = _args()
    with pytest.raises(RuntimeError, match="inference only"):
        fgraph_scores(projected.requires_grad_(True), nodes, adj, weights)
    with torch.no_grad():
        assert fgraph_scores(projected, nodes, adj, weights).shape == (6, 4)


def test_opcheck():
    projected, nodes, adj, w = _args()
    torch.library.opcheck(torch.ops.hdml.fgraph_scores.default,
                          (projected, nodes, adj, list(w.weights), list(w.biases), list(w.attention),
                           list(w.head), None, "relative", False, [], 2.0, 4))
