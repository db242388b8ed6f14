"""TensorBoard events of a training run: written beside log.jsonl, read back with tensorboard's
EventAccumulator; purged on resume; removed with an abandoned or replaced run."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hdml_ext.cli.run_folder import RunFolder
from hdml_ext.engine import TrainConfig, Trainer
from hdml_ext.engine.run_folder import read_log
from hdml_ext.engine.tensorboard_log import EVENTS_GLOB, TensorBoardLog
from hdml_ext.nn import HDMLOnFeatures


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _record(step: int, loss: float) -> dict:
    return {"epoch": 1, "step": step, "loss": loss, "node": 0.0, "link": loss, "lr": 0.01, "seconds": 0.5}


def test_steps_and_metrics_read_back(tmp_path):
    log = TensorBoardLog(tmp_path)
    assert not list(tmp_path.glob(EVENTS_GLOB))  # nothing before the first write
    log.write_step(_record(1, 2.5))
    log.write_step({**_record(2, 2.0), "link_auc": 0.75})
    log.write_metrics({"mAP": 0.5, "cmc": [0.1, 0.2], "ranking": "graph", "nmi": None}, step=2)
    scalars = _scalars(tmp_path)
    assert scalars["train/loss"] == [(1, 2.5), (2, 2.0)]
    assert scalars["train/seconds_per_step"] == [(1, 0.5), (2, 0.5)]
    assert scalars["train/lr"] == [(1, pytest.approx(0.01)), (2, pytest.approx(0.01))]
    assert scalars["train/link_auc"] == [(2, 0.75)]
    assert scalars["eval/mAP"] == [(2, 0.5)]
    assert "train/step" not in scalars and "train/epoch" not in scalars and "eval/nmi" not in scalars


def test_a_resumed_run_replaces_the_steps_it_re_runs(tmp_path):
    first = TensorBoardLog(tmp_path)
    for step in range(1, 5):
        first.write_step(_record(step, 10.0 + step))
    first.close()
    resumed = TensorBoardLog(tmp_path)
    for step in (3, 4, 5):
        resumed.write_step(_record(step, float(step)))
    resumed.close()
    assert _scalars(tmp_path)["train/loss"] == [(1, 11.0), (2, 12.0), (3, 3.0), (4, 4.0), (5, 5.0)]


def test_the_trainer_writes_each_logged_step(tmp_path):
    torch.manual_seed(0)
    labels = torch.arange(3).repeat_interleave(6)
    features = torch.randn(18, 5) + 3 * labels[:, None].float()
    config = TrainConfig(epochs=2, milestones=(1,), gamma=0.5, lr=0.01, identities_per_batch=2,
                         focus_per_identity=3, device="cpu", progress=False)  # fmt: skip
    Trainer(HDMLOnFeatures(5, k=3, gcn_dims=(8,)), features, labels, config, out_dir=tmp_path).fit()
    logged = read_log(tmp_path / "log.jsonl")
    scalars = _scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in logged]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in logged])
    assert [v for _, v in scalars["train/lr"]] == pytest.approx([r["lr"] for r in logged])
    assert [s for s, _ in scalars["train/seconds_per_step"]] == [r["step"] for r in logged]
    assert {"train/node", "train/link"} <= set(scalars)
    assert len(list(tmp_path.glob(EVENTS_GLOB))) == 1


def test_an_abandoned_or_replaced_run_takes_its_event_files_along(tmp_path):
    folder = RunFolder(str(tmp_path / "run"), resume=None, overwrite=False)
    folder.start("settings\n")
    TensorBoardLog(folder.path).write_step(_record(1, 1.0))
    folder.abandon()  # no checkpoint yet: nothing is left
    assert not (tmp_path / "run").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.pt").write_bytes(b"")
    TensorBoardLog(tmp_path / "old").write_step(_record(1, 1.0))
    RunFolder(str(tmp_path / "old"), resume=None, overwrite=True).start("settings\n")
    assert not list((tmp_path / "old").glob(EVENTS_GLOB))
