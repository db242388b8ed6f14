"""engine/run_folder.py: log.jsonl records, a torn last line, truncation on resume."""

from __future__ import annotations

import json

import pytest

from hdml_ext.engine.run_folder import append_record, read_log, truncate_log


def test_a_torn_last_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "log.jsonl"
    for step in (1, 2, 3):
        append_record(path, {"step": step})
    with open(path, "a") as handle:
        handle.write('{"step": 4, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["step"] for r in read_log(path)] == [1, 2, 3]
    with pytest.warns(UserWarning):
        truncate_log(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_a_broken_line_before_the_last_is_an_error(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"line 2 of .*log\.jsonl is not JSON"):
        read_log(path)
