"""The files a training run writes to its folder (docs/training.md): checkpoint.pt (what
`Trainer.fit(resume=...)` continues from), model.pt (config and weights only) and log.jsonl
(one JSON step record a line)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import atomic_save, model_record

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
LOG_NAME = "log.jsonl"


def append_log(out_dir: Path, record: dict) -> None:
    """Append one step record to out_dir/log.jsonl (the folder is created when missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOG_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_log(out_dir: Path, step: int) -> None:
    """Drop the lines of out_dir/log.jsonl past `step` (steps of an epoch that was interrupted);
    nothing when there is no log."""
    path = out_dir / LOG_NAME
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(f".{LOG_NAME}.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The step records of a log.jsonl."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def save_model_file(out_dir: Path, model: nn.Module, train_config: dict, epoch: int, step: int) -> Path:
    """Write out_dir/model.pt atomically: the model's record (`checkpoint.model_record`), the
    training config as a dict, and the completed epochs and steps."""
    record = {**model_record(model), "train_config": train_config, "epoch": epoch, "step": step}
    return atomic_save(record, out_dir / MODEL_NAME)
