"""The files a training run writes to its folder (docs/training.md): checkpoint.pt (what
`Trainer.fit(resume=...)` continues from), model.pt (config and weights only) and log.jsonl
(one JSON step record a line, appended as the steps run)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import atomic_save, model_record

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_NAME = "log.jsonl"


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
