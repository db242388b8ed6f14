"""One place per concept (issue 22 item 11): each shared constant and check is defined once in
the package and imported wherever it is used."""

from __future__ import annotations

import re
import tokenize
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


# Layer rules and one place per concept (issue 22 items 11-13). Each test below fails on the
# layout before the issue: settings.py had 403 lines, cli/cluster.py built the kNN graph
# (build_fgraphs), reid/rerank.py called ops.knn, two functions were called gather_rows, ...

def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def _code(path: Path) -> str:
    """The file's source with its comments and docstrings blanked (other strings kept)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    previous = tokenize.NEWLINE
    with open(path, "rb") as handle:
        tokens = list(tokenize.tokenize(handle.readline))
    for token in tokens:
        starts_statement = previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
        if token.type == tokenize.COMMENT or (token.type == tokenize.STRING and starts_statement):
            (row, col), (end_row, end_col) = token.start, token.end
            for number in range(row, end_row + 1):
                line = lines[number - 1]
                start, stop = (col if number == row else 0), (end_col if number == end_row else len(line) - 1)
                lines[number - 1] = line[:start] + " " * (stop - start) + line[stop:]
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return "".join(lines)


def _code_matching(pattern: str, files: list[Path] | None = None) -> list[str]:
    regex = re.compile(pattern)
    return [_name(path) for path in (files if files is not None else _python_files())
            if regex.search(_code(path))]


def test_no_python_file_over_400_lines():
    long = {_name(path): n for path in _python_files()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_only_graph_calls_the_knn_and_fgraph_adjacency_ops():
    ops = r"(knn|knn_ivf|fgraph_adjacency)"
    calls = rf"ops\.{ops}\b|from \.\.?ops(\.{ops})? import [^\n]*\b{ops}\b|torch\.ops\.hdml\.(knn|fgraph)"
    outside = [path for path in _python_files() if path.parent.name not in ("graph", "ops")]
    assert _code_matching(calls, outside) == []


def test_the_command_line_builds_no_graphs_and_calls_no_ops():
    builders = (r"\b(build_fgraphs|query_fgraphs|exact_knn\w*|FGraphs)\b"
                r"|from \.\.(ops|graph)\b|\bimport (ops|graph)\b")
    assert _code_matching(builders, sorted((PACKAGE / "cli").glob("*.py"))) == []


def test_one_function_per_name_where_two_meanings_collided():
    assert _files_matching(r"^def gather_rows\(") == ["nn/regcn.py"]
    assert _files_matching(r"^def read_rows\(") == ["data/rows.py"]


def test_no_type_is_called_rows():
    assert _files_matching(r"^class (Rows|FeatureRows)\b") == []


def test_models_are_built_in_one_place():
    assert _code_matching(r"\.from_config\(") == ["nn/registry.py"]
    assert _files_matching(r"^def (build_model|new_model)\(") == ["engine/models.py"]


def test_run_folder_file_names_are_named_once():
    names = r"\"(checkpoint\.pt|model\.pt|log\.jsonl|settings\.yaml)\""
    assert _files_matching(names) == ["engine/run_folder.py"]


def test_cluster_settings_declare_each_field_once():
    from dataclasses import fields

    from hdml_ext.cluster import ClusterConfig
    from hdml_ext.demo.config import DemoClusterSettings
    from hdml_ext.engine import ClusterSettings

    for schema in (ClusterConfig, ClusterSettings, DemoClusterSettings):
        inherited = {item.name for base in schema.__mro__[1:] if hasattr(base, "__dataclass_fields__")
                     for item in fields(base)}
        assert set(schema.__annotations__) & inherited == set(), schema.__name__
    assert {item.name for item in fields(ClusterConfig)} <= {f.name for f in fields(DemoClusterSettings)}


def test_backend_means_one_thing_in_the_settings():
    from dataclasses import fields

    from hdml_ext.engine import TrainConfig

    assert {"dist_backend", "knn_backend"} <= {item.name for item in fields(TrainConfig)}
    assert "backend" not in {item.name for item in fields(TrainConfig)}


def test_the_model_base_the_loss_and_the_priors_live_in_files_named_for_them():
    assert not (PACKAGE / "nn" / "link.py").exists()
    assert _files_matching(r"^class FGraphLinkModel\b") == ["nn/base.py"]
    assert _files_matching(r"^def link_loss\(") == ["nn/loss.py"]
