"""benchmarks/bench_scoring.py: the GEMM shapes of its bound, one child process's measurements
and the table it writes (tiny N, in this process)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_scoring


def test_bound_gemm_shapes():
    """Per graph of n = k + 1 = 6 nodes at gcn_dims (16, 8): layer 0's attention FC, layer 1's
    projection and attention FC, the head's first FC on k rows; the first projection per row."""
    model = bench_scoring.make_model(8, 5, (16, 8))
    shapes = [(rows, tuple(weight.shape)) for rows, weight in bench_scoring.gemm_shapes(model)]
    assert shapes == [(6, (16, 16)), (6, (16, 16)), (6, (8, 8)), (5, (8, 8))]
    bound = bench_scoring.GemmBound(model, 4, torch.device("cpu"))
    assert bound.macs_per_graph == 6 * 16 * 16 + 6 * 16 * 16 + 6 * 8 * 8 + 5 * 8 * 8 + 8 * 32
    assert bound.seconds() > 0


def test_child_and_table(tmp_path: Path):
    bench_scoring.write_inputs(tmp_path, 300, 8, 5)
    args = bench_scoring.parse_args(["--child", str(tmp_path), "--gcn-dims", "16", "8", "--batch-size", "64",
                                     "--passes", "1", "--bound-batch", "16"])
    row = bench_scoring.child(args)  # also checks that both paths give the same scores
    assert row["batch_size"] == 64
    assert row["fraction"] == pytest.approx(row["link_edges"] / row["bound"])
    assert row["passes"][0]["bound_cold"] > 0
    parent = bench_scoring.parse_args(["--nodes", "300", "--dim", "8", "--k", "5", "--gcn-dims", "16", "8"])
    result = bench_scoring.summary([row, {**row, "link_edges": 2 * row["link_edges"]}], parent)
    assert result["link_edges"]["max"] == 2 * result["link_edges"]["min"]
    text = bench_scoring.markdown(result, "here")
    assert "| `link_edges` (CPU: the fused `fgraph_scores` kernel) |" in text
    assert "link_edges / bound per process: min" in text and "bf16 on this CPU:" in text
    assert "| the bound's first set in each gap, on operands out of cache |" in text


def test_bound_runs_between_scoring_batches(tmp_path: Path):
    """Two sets of the bound's GEMMs between every two batches (a cold one, then the timed warm
    one), none before the first, and the scores are those of link_edges alone."""
    from hdml_ext.cluster import link_edges
    from hdml_ext.graph import FGraphs

    bench_scoring.write_inputs(tmp_path, 200, 8, 5)
    embeddings = torch.from_numpy(np.load(tmp_path / "features.npy"))
    graphs = FGraphs.load(tmp_path / "fgraphs.npz")
    model = bench_scoring.make_model(8, 5, (16, 8))
    beside = bench_scoring.BoundBetweenBatches(bench_scoring.GemmBound(model, 4, torch.device("cpu")))
    with beside.around(model):
        _, _, flat = link_edges(model, embeddings, 5, batch_size=64, knn_idx=graphs)
    assert "link_scores_of_nodes" not in model.__dict__  # the model's own method again
    assert beside.sets == 3 and beside.seconds > 0 and beside.cold_seconds > 0  # 200 graphs in 4 batches
    assert beside.graphs_per_second() == pytest.approx(3 * 4 / beside.seconds)
    assert beside.graphs_per_second(cold=True) == pytest.approx(3 * 4 / beside.cold_seconds)
    _, _, alone = link_edges(model, embeddings, 5, batch_size=64, knn_idx=graphs)
    assert torch.equal(flat, alone)


def test_bound_batch_reaches_the_child_and_the_table():
    parent = bench_scoring.parse_args(["--nodes", "300", "--bound-batch", "64"])
    assert "bound-batch" in bench_scoring.CHILD_OPTIONS  # the children measure as the parent says
    row = {"link_edges": 10.0, "bound": 20.0, "fraction": 0.5, "macs_per_graph": 1.0, "batch_size": 8}
    text = bench_scoring.markdown(bench_scoring.summary([row], parent), "here")
    assert "64 graphs per GEMM, one set between every two scoring batches" in text
    with pytest.raises(SystemExit):
        bench_scoring.parse_args(["--bound-batch", "0"])


def test_one_batch_has_no_bound_and_says_so(tmp_path: Path):
    """All N F-Graphs in one batch leave no gap for the bound: the process line and the table
    say so instead of failing."""
    bench_scoring.write_inputs(tmp_path, 40, 8, 5)
    args = bench_scoring.parse_args(["--child", str(tmp_path), "--gcn-dims", "16", "8", "--batch-size", "64",
                                     "--passes", "1", "--bound-batch", "16"])
    row = bench_scoring.child(args)
    assert "bound" not in row and "fraction" not in row and row["link_edges"] > 0
    line = bench_scoring.process_line(row)
    assert line.startswith("graphs/s link_edges ") and line.endswith(bench_scoring.NO_BOUND)
    parent = bench_scoring.parse_args(["--nodes", "40", "--dim", "8", "--k", "5", "--gcn-dims", "16", "8"])
    assert bench_scoring.NO_BOUND in bench_scoring.markdown(bench_scoring.summary([row], parent), "here")
