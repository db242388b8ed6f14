"""Run folders of `hdml train` (issue 12, items 2, 3 and 7): a used folder is refused unless
--resume or --overwrite, failed runs leave nothing, resume survives torn logs and stale
temporaries, checkpoints record the input pipeline that evaluate / cluster then use. The
command lines run through `python -m hdml_ext.cli` (one subprocess per batch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_batch import run_hdml_batch

from hdml_ext.engine import read_checkpoint

FEATURES = ["--dataset", "features", "--root", "f.npy", "--labels", "y.npy", "--quiet",
            "--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.device=cpu",
            "--set", "cluster.device=cpu"]  # fmt: skip
DIGITS = [
    "--dataset", "digits", "--quiet", "--set", "data.height=8", "--set", "data.width=8",
    "--set", "data.train_fraction=0.1", "--set", "model.backbone=resnet18", "--set", "model.k=3",
    "--set", "model.gcn_dims=[8]", "--set", "model.nfe_stages=[2]", "--set", "train.epochs=1",
    "--set", "train.milestones=[]", "--set", "train.identities_per_batch=5", "--set", "train.device=cpu",
]  # fmt: skip
EVALUATE = ["evaluate", "--dataset", "digits", "--quiet", "--checkpoint", "digits/model.pt",
            "--set", "eval.device=cpu"]  # fmt: skip


def _features(root: Path, name: str = "f.npy", labelled: bool = True) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    np.save(root / name, (rng.normal(size=(18, 5)) + 4 * labels[:, None]).astype(np.float32))
    if labelled:
        np.save(root / "y.npy", labels)


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every command line of this module's batch, run in order; the results by name."""
    root = tmp_path_factory.mktemp("runs")
    _features(root)
    (root / "used").mkdir()
    (root / "empty").mkdir()
    train = ["train", *FEATURES, "--set", "train.epochs=1"]
    first = [
        ("first", [*train, "--out", "run"]),
        ("again", [*train, "--out", "run"]),
        ("both", [*train, "--out", "run", "--overwrite", "--resume", "run/checkpoint.pt"]),
        ("overwrite", [*train, "--out", "run", "--overwrite"]),
        ("prepare", ["train", *FEATURES, "--set", "train.epochs=1", "--out", "torn"]),
        ("fail", ["train", *FEATURES, "--set", "model.k=30", "--out", "empty"]),
        ("digits", ["train", *DIGITS, "--out", "digits"]),
    ]
    results = dict(zip([name for name, _ in first], run_hdml_batch([argv for _, argv in first], root)))
    results["mtimes"] = {name: (root / "run" / name).stat().st_mtime_ns for name in os.listdir(root / "run")}
    # a torn log line and stale temporaries of a killed checkpoint write, then resume
    with open(root / "torn" / "log.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "st')
    (root / "torn" / ".checkpoint.pt.x1y2.tmp").write_bytes(b"\0" * 64)
    (root / "torn" / ".model.pt.z3.tmp").write_bytes(b"")
    # cluster unlabelled rows into a folder holding an earlier labelled run's metrics
    _features(root, "unlabelled.npy", labelled=False)
    (root / "clustered").mkdir()
    (root / "clustered" / "metrics.json").write_text('{"nmi": 1.0}\n')
    later = [
        ("finished", [*train, "--out", "run", "--resume", "run/checkpoint.pt"]),
        ("model_set", [*train, "--out", "run", "--resume", "run/checkpoint.pt",
                       "--set", "model.gcn_dims=[16]"]),
        ("eval_recorded", [*EVALUATE, "--out", "recorded.json"]),
        ("eval_given", [*EVALUATE, "--out", "given.json", "--set", "data.height=8", "--set", "data.width=8"]),
        ("eval_other", [*EVALUATE, "--out", "other.json", "--set", "data.height=12"]),
        ("resume_torn", ["train", *FEATURES, "--set", "train.epochs=2", "--out", "torn",
                         "--resume", "torn/checkpoint.pt"]),
        ("recluster", ["cluster", "--dataset", "features", "--root", "unlabelled.npy", "--checkpoint",
                       "run/model.pt", "--out", "clustered", "--quiet", "--set", "cluster.device=cpu"]),
    ]  # fmt: skip
    results.update(zip([name for name, _ in later], run_hdml_batch([argv for _, argv in later], root)))
    return root, results


def test_a_used_run_folder_is_refused(batch):
    _, results = batch
    assert results["first"]["rc"] == 0, results["first"]["stderr"]
    again = results["again"]
    assert again["rc"] == 2
    last = again["stderr"].strip().splitlines()[-1]
    assert last.startswith("hdml train: error: argument --out: 'run' already holds a run (checkpoint.pt"), (
        last
    )
    assert "--resume" in last and "--overwrite" in last
    both = results["both"]["stderr"].strip().splitlines()[-1]
    assert results["both"]["rc"] == 2 and "argument --overwrite: " in both and "--resume" in both


def test_overwrite_replaces_the_run(batch):
    root, results = batch
    assert results["overwrite"]["rc"] == 0, results["overwrite"]["stderr"]
    assert _steps(root / "run") == [1, 2]  # one run's steps, not two runs' appended


def test_resuming_a_finished_run_writes_nothing(batch):
    root, results = batch
    finished = results["finished"]
    assert finished["rc"] == 0, finished["stderr"]
    assert "nothing to do" in finished["stdout"] and "wrote" not in finished["stdout"]
    assert "is unchanged" in finished["stdout"]
    assert {name: (root / "run" / name).stat().st_mtime_ns for name in os.listdir(root / "run")} == results[
        "mtimes"
    ]


def test_resume_refuses_other_model_settings(batch):
    _, results = batch
    refused = results["model_set"]
    assert refused["rc"] == 2
    last = refused["stderr"].strip().splitlines()[-1]
    assert "argument --set: model.gcn_dims=[16] differs from the checkpoint's [8]" in last, last


def test_resume_records_the_models_settings(batch):
    root, results = batch
    assert results["resume_torn"]["rc"] == 0, results["resume_torn"]["stderr"]
    settings = yaml.safe_load((root / "torn" / "settings.yaml").read_text())
    assert settings["model"]["k"] == 3 and settings["model"]["gcn_dims"] == [8]


def test_resume_drops_a_torn_log_line_and_stale_temporaries(batch):
    root, results = batch
    resumed = results["resume_torn"]
    assert resumed["rc"] == 0, resumed["stderr"]
    assert "dropped the torn last line" in resumed["stderr"]
    assert _steps(root / "torn") == [1, 2, 3, 4]
    assert not list((root / "torn").glob(".*.tmp"))


def test_a_failed_run_leaves_nothing(batch):
    root, results = batch
    assert results["fail"]["rc"] == 2
    assert list((root / "empty").iterdir()) == []


def test_checkpoints_have_the_mode_of_other_files(batch):
    root, _ = batch
    expected = (root / "run" / "settings.yaml").stat().st_mode & 0o777
    for name in ("checkpoint.pt", "model.pt", "log.jsonl"):
        assert (root / "run" / name).stat().st_mode & 0o777 == expected, name


def test_cluster_removes_an_earlier_runs_metrics(batch):
    root, results = batch
    assert results["recluster"]["rc"] == 0, results["recluster"]["stderr"]
    assert (root / "clustered" / "labels.npy").is_file()
    assert not (root / "clustered" / "metrics.json").exists()


def test_checkpoints_record_the_input_pipeline(batch):
    root, results = batch
    assert results["digits"]["rc"] == 0, results["digits"]["stderr"]
    for name in ("model.pt", "checkpoint.pt"):
        recorded = read_checkpoint(root / "digits" / name)["input"]
        assert recorded["height"] == 8 and recorded["width"] == 8
        assert recorded["mean"] == pytest.approx([0.485, 0.456, 0.406])
        assert recorded["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_evaluate_reads_images_at_the_recorded_size(batch):
    root, results = batch
    for name in ("eval_recorded", "eval_given", "eval_other"):
        assert results[name]["rc"] == 0, results[name]["stderr"]
    recorded = json.loads((root / "recorded.json").read_text())
    given = json.loads((root / "given.json").read_text())
    assert recorded["mAP"] == given["mAP"] and recorded["cmc"] == given["cmc"]
    assert "warning" not in results["eval_recorded"]["stderr"]
    warning = "data.height x data.width = 12x8 differs from the 8x8 the model was trained on"
    assert warning in results["eval_other"]["stderr"]


def test_ctrl_c_says_where_the_last_checkpoint_is(tmp_path):
    _features(tmp_path)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "hdml_ext.cli", "train", *FEATURES, "--set", "train.epochs=100000"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    # A shell's background job inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition, as an interactive shell does.
    process = subprocess.Popen([*argv, "--out", "run"], cwd=tmp_path, env=env, **pipes,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # never leave a 100,000-epoch run behind
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    where = "run/checkpoint.pt"
    assert err.strip().splitlines()[-1] == (
        f"hdml train: interrupted; the last checkpoint is {where}: continue with --resume {where}"
    )
    assert torch.load(checkpoint, weights_only=True)["epoch"] >= 1
