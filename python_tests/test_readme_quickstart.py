"""The README's Python quickstart runs as written, and the README and docs link only to files
(and headings) that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Markdown links and images: [text](target) / ![alt](target); the target up to ")" or a space.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    """The ```python code blocks of a Markdown file, in order."""
    return PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (headings inside code blocks are not headings)."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {heading_anchor(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def broken_links(path: Path) -> list[str]:
    """The relative links of a Markdown file whose file, or heading, does not exist."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    return broken


def test_the_readme_has_the_two_quickstart_snippets():
    blocks = python_blocks(README)
    assert len(blocks) == 2
    assert "link_rerank_order" in blocks[0] and 'ranking=ranking' in blocks[0]
    assert "cluster(" in blocks[1] and "calibrate(" in blocks[1]


def run_block(code: str, name: str) -> dict:
    """Execute a README snippet as a script; returns the names it defined."""
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, name, "exec"), namespace)
    return namespace


def test_readme_reid_quickstart_runs_and_prints_three_rankings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything the snippet writes lands in a temporary folder
    names = run_block(python_blocks(README)[0], "README.md Re-ID quickstart")
    printed = capsys.readouterr().out
    for ranking in ("distance", "graph", "link_rerank"):
        assert re.search(rf"^{ranking} 0\.\d+", printed, re.MULTILINE), printed
    data = names["data"]
    assert tuple(names["order"].shape) == (names["rows"].stop - names["rows"].start, len(data.gallery))


def test_readme_clustering_quickstart_runs_and_labels_every_row(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = run_block(python_blocks(README)[1], "README.md clustering quickstart")
    assert capsys.readouterr().out.strip()
    assert names["labels"].shape == (names["test_x"].shape[0],)
    assert names["choice"]["method"] in ("propagation", "infomap")


def test_heading_anchor_follows_github():
    assert heading_anchor("Goals not yet met (in full)") == "goals-not-yet-met-in-full"
    assert heading_anchor("Allocator: steady timings") == "allocator-steady-timings"
    assert heading_anchor("The `hdml cluster` pipeline") == "the-hdml-cluster-pipeline"


def test_broken_links_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.md) [bad](there.md#nope) "
                    "[web](https://example.org/x)\n```\n[in code](not-a-link.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md", "there.md#nope"]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_at_existing_files(path):
    assert broken_links(path) == []


def test_readme_states_the_demo_priors_and_the_edge_inputs():
    """Issue 22 item 14: the README agrees with the code about the demo's priors, the edge
    inputs and what `make bench` runs."""
    from hdml_ext.demo.config import DEMO_OVERRIDES
    from hdml_ext.nn import EDGE_INPUTS

    text = README.read_text(encoding="utf-8")
    model = DEMO_OVERRIDES["model"]
    assert model["cosine_prior"] and model["overlap_prior"]
    assert "both priors" in text
    assert all(f"`{name}`" in text for name in EDGE_INPUTS)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    bench = re.search(r"^bench:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    scripts = re.findall(r"benchmarks/(\w+\.py)", bench)
    assert scripts and all(f"benchmarks/{script}" in text for script in scripts)
