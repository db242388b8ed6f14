"""benchmarks/bench_cluster.py: the stages it times, the table and plot it writes, and its
per-stage time limit (at tiny N, in this process; the limit in a spawned child)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_cluster
from bench_scale import write_blobs

NUM_ROWS, DIM, K = 400, 16, 10


def _events(features: np.ndarray, backend: str, whole_pipeline: bool, target_recall: float) -> dict:
    events: list[dict] = []
    bench_cluster.run_stages(features, K, backend, events.append, whole_pipeline=whole_pipeline,
                             target_recall=target_recall, recall_queries=100)
    return {event["event"]: event for event in events}


def _args(out: Path, *extra: str):
    return bench_cluster.parse_args(["--sizes", str(NUM_ROWS), "--dim", str(DIM), "--k", str(K),
                                     "--out", str(out), *extra])


def test_stages_table_and_plot(tmp_path: Path) -> None:
    features = np.load(write_blobs(tmp_path / "blobs.npy", NUM_ROWS, DIM, spread=bench_cluster.NOISE))
    ours = _events(features, "auto", True, 0.95)
    assert tuple(ours) == bench_cluster.PIPELINE_EVENTS
    assert ours["knn"]["backend"] == "exact"
    assert ours["recall"]["recall"] == 1.0  # exact neighbours against exact neighbours
    assert all(ours[stage]["seconds"] > 0 for stage in bench_cluster.PIPELINE_STAGES)
    assert 1 <= ours["propagation"]["clusters"] <= NUM_ROWS
    results = {NUM_ROWS: {"ours": ours, "target": 0.9}}
    for method in bench_cluster.ALTERNATIVES:
        results[NUM_ROWS][method] = _events(features, method, False, 0.9)
        assert tuple(results[NUM_ROWS][method]) == bench_cluster.KNN_EVENTS
        assert results[NUM_ROWS][method]["knn"]["backend"] == method

    table, figure = bench_cluster.write_outputs(results, _args(tmp_path, "--quick"), "cmd", 0.1)
    assert table.name == "cluster_quick.md" and figure.name == "cluster_quick.png"
    text = table.read_text()
    assert "Command: `cmd`" in text
    header, _, stages_row = text.split("## `hdml cluster` stages")[1].strip().splitlines()[2:5]
    for stage in ("kNN graph", "F-Graph scoring", "propagation", "total", "peak RSS", "recall@10"):
        assert stage in header
    cells = [cell.strip() for cell in stages_row.strip("|").split("|")]
    assert cells[0] == f"{NUM_ROWS:,}" and len(cells) == header.count("|") - 1
    assert all(re.fullmatch(r"[\d.]+ s\b.*", cell) for cell in cells[1:5])  # every stage timed
    knn_rows = [line for line in text.splitlines() if line.startswith(f"| {NUM_ROWS:,} | ")][1:]
    assert [row.split(" | ")[1] for row in knn_rows] == ["ours (exact)", *bench_cluster.ALTERNATIVES]
    recalls = [float(cells[7]), *(float(row.split(" | ")[5]) for row in knn_rows)]
    assert len(recalls) == 4 and all(0.0 <= value <= 1.0 for value in recalls)
    assert figure.stat().st_size > 10_000  # a rendered PNG, not an empty file


def _stalls_after_setup(queue: object) -> None:
    queue.put({"event": "setup", "seconds": 0.0, "rss": 0})
    time.sleep(120)


def test_a_stage_over_the_limit_is_stopped_and_reported(tmp_path: Path) -> None:
    start = time.perf_counter()
    run = bench_cluster.measure(_stalls_after_setup, (), bench_cluster.PIPELINE_EVENTS, 1.0, "test")
    assert time.perf_counter() - start < 60  # stopped, not waited for
    assert run["failed"] == "knn" and run["failure"] == "not finished in 1 s"
    assert "setup" in run and "recall" not in run and run["rss"] > 0

    args = _args(tmp_path, "--alternatives", "")
    text = bench_cluster.markdown({NUM_ROWS: {"ours": run, "target": 0.95}}, args, "cmd", "here", 0.1)
    row = next(line for line in text.splitlines() if line.startswith(f"| {NUM_ROWS:,} | "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].startswith("not finished in 1 s") and cells[2:4] == ["not run", "not run"]
    assert cells[4] == "—"  # no total
