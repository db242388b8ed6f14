"""TensorBoard event files beside log.jsonl in a run folder (`tensorboard --logdir RUN`).

    events = TensorBoardLog("runs/market")
    events.write_step({"epoch": 1, "step": 1, "loss": 2.3, "node": 1.6, "link": 0.7, "lr": 1e-3,
                       "seconds": 0.41})          # train/loss, train/node, ..., train/seconds_per_step
    events.write_metrics({"mAP": 0.71, "link_auc": 0.93}, step=120)   # eval/mAP, eval/link_auc

Nothing is created until the first write, so a run that fails before its first step leaves no
file. The writer opens with purge_step = the first step it writes: after a resume, the events
an interrupted run wrote for the steps being re-run are dropped, as log.jsonl drops its records.
Each write is flushed, so the curves are current while training runs.
"""

from __future__ import annotations

import math
import os
from numbers import Real
from pathlib import Path
from typing import Any

__all__ = ["EVENTS_GLOB", "TensorBoardLog", "remove_event_files"]

#: The names of the event files torch.utils.tensorboard writes.
EVENTS_GLOB = "events.out.tfevents.*"

#: Step-record keys that are positions, not curves.
_POSITION_KEYS = ("epoch", "step")


class TensorBoardLog:
    """Scalars of training steps and evaluations written to `folder` as TensorBoard events.

    Step records (the dicts of log.jsonl) go under "train/": every finite number but epoch and
    step, "seconds" as "train/seconds_per_step", "lr" as "train/lr", so a record that carries a
    link AUC or an evaluation metric shows it too. `write_metrics` puts evaluation results
    under "eval/" (or another prefix).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._writer: Any = None

    def _open(self, first_step: int) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported on first use: it is slow

            self._writer = SummaryWriter(str(self.folder), purge_step=first_step)
        return self._writer

    def write_step(self, record: dict) -> None:
        """One training step's record ({"step", "epoch", "loss", "node", "link", "lr", "seconds", ...})."""
        step = int(record["step"])
        values = {key: value for key, value in record.items() if key not in _POSITION_KEYS}
        if "seconds" in values:
            values["seconds_per_step"] = values.pop("seconds")
        self._write("train", values, step)

    def write_metrics(self, metrics: dict, step: int, prefix: str = "eval") -> None:
        """Evaluation results (e.g. mAP, rank1, nmi, link_auc) at training step `step`; entries
        that are not finite numbers (lists, None, NaN) are skipped."""
        self._write(prefix, metrics, int(step))

    def _write(self, prefix: str, values: dict, step: int) -> None:
        scalars = {
            key: float(value) for key, value in values.items()
            if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        }  # fmt: skip
        if not scalars:
            return
        writer = self._open(step)
        for key, value in scalars.items():
            writer.add_scalar(f"{prefix}/{key}", value, step)
        writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later write opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def remove_event_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the TensorBoard event files directly in `folder` (a replaced or abandoned run's);
    returns them."""
    found = sorted(Path(folder).glob(EVENTS_GLOB))
    for path in found:
        path.unlink(missing_ok=True)
    return found
