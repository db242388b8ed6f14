"""benchmarks/bench_rerank.py: both ways agree on a small gallery, and the table says so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_rerank as bench


def test_small_run_writes_the_table_and_agrees(tmp_path):
    assert bench.main(["--gallery", "60", "--dim", "8", "--queries", "4", "--reference-queries", "2",
                       "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "rows.json").read_text())
    assert row["gallery"] == 60 and row["reference_queries"] == 2
    assert row["max_abs_difference"] < 1e-4
    assert "| ratio per query |" in (tmp_path / "table.md").read_text()
