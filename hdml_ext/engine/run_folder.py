"""What a run folder holds, and the one place that names, writes and removes its files
(docs/training.md, docs/cli.md "Run folders"): checkpoint.pt (what `Trainer.fit(resume=...)`
continues from), model.pt (config and weights only), log.jsonl (one JSON step record a line,
appended as the steps run), settings.yaml (the run's settings, written by `hdml train` and the
demo) and TensorBoard event files.

The command line's checks of a folder the user named (writable, refused when it holds a run)
are `hdml_ext.cli.run_folder`'s; they call `RUN_FILES`, `write_settings` and `remove_run_files`."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import atomic_save, model_record, remove_stale_temporaries
from .tensorboard_log import remove_event_files

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_NAME = "log.jsonl"
SETTINGS_NAME = "settings.yaml"

#: What a run folder holds besides TensorBoard event files (docs/cli.md, "Run folders").
RUN_FILES = (CHECKPOINT_NAME, MODEL_NAME, LOG_NAME, SETTINGS_NAME)


def write_settings(folder: str | os.PathLike, settings_text: str) -> Path:
    """Write `settings_text` (the run's settings as YAML) to folder/settings.yaml; returns its path."""
    path = Path(folder) / SETTINGS_NAME
    path.write_text(settings_text, encoding="utf-8")
    return path


def remove_run_files(folder: str | os.PathLike) -> None:
    """Delete what a run wrote into `folder`: `RUN_FILES`, TensorBoard event files and the
    temporaries of killed checkpoint writes (other files are left alone)."""
    for name in RUN_FILES:
        (Path(folder) / name).unlink(missing_ok=True)
    remove_event_files(folder)
    remove_stale_temporaries(folder)


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Append `record` as one JSON line to the log at `path` (its folder created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The step records of a log.jsonl; a torn last line (a process killed mid-write) is
    dropped with a warning, any other line that is not JSON raises ValueError naming it."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise ValueError(f"line {number} of {os.fspath(path)} is not JSON: {line[:60]!r}") from None
            warnings.warn(f"dropped the torn last line of {os.fspath(path)}: {line[:60]!r}", stacklevel=2)
    return records


def truncate_log(path: str | os.PathLike, step: int) -> None:
    """Keep the records of steps <= `step` (a resumed run drops the steps of an interrupted
    epoch, and a torn last line); the log is replaced atomically, and left alone when it holds
    nothing to drop or does not exist."""
    path = Path(path)
    if not path.is_file():
        return
    records = read_log(path)
    lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    kept = [json.dumps(record) + "\n" for record in records if record["step"] <= step]
    if len(kept) == lines:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def save_model_file(
    out_dir: Path, model: nn.Module, train_config: dict, epoch: int, step: int,
    input_pipeline: dict | None = None,
) -> Path:  # fmt: skip
    """Write out_dir/model.pt atomically: the model's record (`checkpoint.model_record`, with the
    input pipeline it was trained with), the training config as a dict, and the completed epochs
    and steps."""
    record = {**model_record(model, input_pipeline), "train_config": train_config, "epoch": epoch,
              "step": step}  # fmt: skip
    return atomic_save(record, out_dir / MODEL_NAME)
