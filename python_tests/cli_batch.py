"""Run many `hdml` command lines through the real entry point (`python -m hdml_ext.cli`, its
__main__ module) in one subprocess, so that command-line tests pay the import once.

    results = run_hdml_batch([["train", "--set", "eval.k=0"], ...], cwd=tmp_path)
    results[0]["rc"], results[0]["stdout"], results[0]["stderr"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_DRIVER = r"""
import contextlib, io, json, runpy, sys
cases_path, results_path = sys.argv[1:3]
cases = json.load(open(cases_path))
results = []
for argv in cases:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["hdml", *argv]
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("hdml_ext.cli", run_name="__main__", alter_sys=True)
        except SystemExit as done:
            rc = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
            rc = 1
    results.append({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(results, open(results_path, "w"))
"""


def run_hdml_batch(cases: list[list[str]], cwd: Path) -> list[dict]:
    """rc, stdout and stderr of `python -m hdml_ext.cli ARGV` for each ARGV of `cases`, run in
    order in one subprocess with working folder `cwd`."""
    (cwd / "cases.json").write_text(json.dumps(cases))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, "cases.json", "results.json"], cwd=cwd, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads((cwd / "results.json").read_text())
