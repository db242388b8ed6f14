"""benchmarks/bench_ops.py: rows of several fresh processes summarised as median and range."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_ops


def _row(case: str, ours_ms: float, reference_ms: float) -> dict:
    return {"op": "gcn_aggregate", "case": case, "ours": "ours", "reference": "eager", "note": "",
            "ours_ms": ours_ms, "reference_ms": reference_ms, "speedup": reference_ms / ours_ms}


def test_summarise_takes_medians_and_the_speedup_range_per_case():
    runs = [[_row("fwd", 2.0, 4.0), _row("bwd", 1.0, 1.0)],
            [_row("fwd", 4.0, 4.4), _row("bwd", 1.0, 2.0)],
            [_row("fwd", 2.2, 4.2), _row("bwd", 2.0, 2.0)]]
    fwd, bwd = bench_ops.summarise(runs)
    assert (fwd["case"], fwd["ours_ms"], fwd["reference_ms"], fwd["processes"]) == ("fwd", 2.2, 4.2, 3)
    assert fwd["speedup_min"] == pytest.approx(1.1) and fwd["speedup_max"] == pytest.approx(2.0)
    assert fwd["speedup_median"] == pytest.approx(4.2 / 2.2)
    assert (bwd["speedup_min"], bwd["speedup_median"], bwd["speedup_max"]) == (1.0, 1.0, 2.0)
    table = bench_ops.markdown([fwd, bwd])
    assert "| gcn_aggregate | fwd | 2.2 | eager | 4.2 | 1.91x (1.10-2.00) |  |" in table
