"""benchmarks/bench_reid.py on the demo's --quick settings: one seed end to end (trained here),
every method's row, the validated choices, and the table over seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_reid as bench


@pytest.mark.slow
def test_one_quick_seed_writes_every_row_and_the_table(tmp_path, capsys):
    assert bench.main(["--quick", "--seeds", "3", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["method"] for row in rows] == [name for name, _, _ in bench.METHODS]
    by_name = {row["method"]: row for row in rows}
    default = by_name["hdml_default"]["choices"]["default"]
    chosen = "graph_rule" if default == "graph" else "link_rerank"
    assert by_name["hdml_default"]["mAP"] == by_name[chosen]["mAP"]
    assert not by_name["link_rerank"]["choices"]["link_rerank"]["queries_together"]
    assert by_name["link_rerank"]["choices"]["link_rerank_together"]["queries_together"]
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in bench.KEYS)
    text = (tmp_path / "table.md").read_text()
    assert "| link_rerank_together | all queries at once |" in text and "seed 3: default" in text


def test_table_is_mean_and_half_range_over_seeds():
    rows = [{"seed": seed, "method": name, "mAP": value, "rank1": value, "mINP": value}
            for seed, value in ((0, 0.2), (1, 0.4)) for name, _, _ in bench.METHODS]
    summary = bench.table(rows)
    assert summary["distance"]["mAP"] == pytest.approx((0.3, 0.1))


def test_models_must_match_seeds():
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0", "1", "--models", "a.pt"])
