"""One place per concept (issue 22 item 11): each shared constant and check is defined once in
the package and imported wherever it is used."""

from __future__ import annotations

import re
from pathlib import Path

import hdml_ext

PACKAGE = Path(hdml_ext.__file__).parent


def _files_matching(pattern: str) -> list[str]:
    regex = re.compile(pattern, re.MULTILINE)
    return sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                  if regex.search(path.read_text(encoding="utf-8")))


def test_one_block_size_for_query_by_gallery_work():
    assert _files_matching(r"^_?BLOCK_ENTRIES\s*=") == ["metrics/ranking.py"]


def test_one_check_of_the_nfa_gate_bounds():
    assert _files_matching(r"lo < hi <= 1\.0") == ["ops/nfa_gate.py"]


def test_the_training_loop_stays_under_400_lines():
    assert len((PACKAGE / "engine" / "trainer.py").read_text(encoding="utf-8").splitlines()) < 400
