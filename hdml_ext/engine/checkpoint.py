"""Checkpoints: atomic writes, RNG state capture, and loading a model back from its config.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)` (no pickled code):

    {"format": "hdml-checkpoint", "version": 1,
     "model_class": a name of hdml_ext.nn.MODELS ("HDML" | "HDMLOnFeatures"),
     "model_config": {...}, "model_state": {...},
     "input": {"height", "width", "mean", "std"} of the images it was trained on (image models
         trained by `hdml train`; absent otherwise),
     "clustering": the validated clustering choice of `hdml calibrate` (absent otherwise;
         hdml_ext.cluster.choice),
     # training checkpoints add:
     "train_config": {...}, "optimizer": {...}, "scheduler": {...}, "sampler": {...},
     "epoch": completed epochs, "step": completed steps, "rng": {...}}
"""

from __future__ import annotations

import glob
import os
import random
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..nn import MODELS, model_name
from .models import build_model

FORMAT = "hdml-checkpoint"
VERSION = 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files `atomic_save` leaves in `folder` when killed mid-write
    (".NAME.*.tmp"; of the file `name` only, or of every file when None); returns them."""
    pattern = f".{glob.escape(name)}.*.tmp" if name is not None else ".*.tmp"
    stale = [Path(found) for found in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern))]
    for found in stale:
        found.unlink(missing_ok=True)
    return stale


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it to the handler that was
    in place. torch.save interrupted mid-write raises its own RuntimeError from the zip writer
    instead of KeyboardInterrupt, so a Ctrl-C there would read as a failed write. Only the main
    thread can set signal handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)
        elif received and previous == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save `obj` to `path` atomically: a temporary file in the same folder, fsync'ed,
    then os.replace, so a crash never leaves a truncated checkpoint behind. A Ctrl-C during the
    write is delivered once the write is done. The file gets the mode of any new file (0644
    under the usual umask 022); temporaries of `path` left by an earlier, killed write are
    removed after the write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _sigint_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        remove_stale_temporaries(path.parent, path.name)
    return path


def capture_rng_state() -> dict:
    """The torch (CPU and every CUDA device), numpy and Python `random` generator states."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python `random`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_record(model: nn.Module, input_pipeline: dict | None = None) -> dict:
    """The part of a checkpoint that rebuilds the model: registry name, config and state dict,
    and the input pipeline of its images when known (see `hdml_ext.data.input_pipeline`)."""
    record = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": model_name(model),
        "model_config": model.to_config(),
        "model_state": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    if input_pipeline is not None:
        record["input"] = dict(input_pipeline)
    return record


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict (CPU tensors), checking that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # torch's own message advises weights_only=False: wrong for a file of unknown origin.
        raise ValueError(
            f"{str(path)!r} is not a checkpoint written by hdml (torch.load with weights_only=True "
            f"failed: {type(error).__name__})"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an hdml checkpoint (no 'format': {FORMAT!r} entry)")
    if record.get("model_class") not in MODELS:
        raise ValueError(
            f"checkpoint {str(path)!r} names an unknown model class {record.get('model_class')!r}"
        )
    return record


def update_checkpoint(path: str | os.PathLike, **entries: Any) -> Path:
    """Set top-level `entries` of the checkpoint at `path` (e.g. clustering=...) and write it
    back atomically (`atomic_save`); the rest of the record is kept."""
    record = read_checkpoint(path)
    record.update(entries)
    return atomic_save(record, path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in a checkpoint (training checkpoint or final model file), in
    eval mode on `device` (`models.build_model`)."""
    return build_model(read_checkpoint(path)).to(device).eval()
