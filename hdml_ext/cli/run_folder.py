"""Output folders the user names: checked before any work, and the --out folder of `hdml train`
(refused when it already holds a run unless --resume or --overwrite; a failed new run leaves
nothing behind). What a run folder holds, and writing or removing it, is
`hdml_ext.engine.run_folder`'s."""

from __future__ import annotations

import os
from pathlib import Path

from ..engine.checkpoint import remove_stale_temporaries
from ..engine.run_folder import CHECKPOINT_NAME, RUN_FILES, remove_run_files, write_settings
from .options import UsageError


def writable_folder(out: str, option: str = "--out") -> Path:
    """`out` as a folder this process can create or write into; UsageError naming `option`
    when it is an existing file or its nearest existing parent is not writable."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(option, f"should be a folder, got the existing file {out!r}")
    _check_writable(path, out, option)
    return path


def writable_file(out: str, option: str = "--out") -> Path:
    """`out` as a file this process can create or replace; UsageError naming `option` when it
    is an existing folder or cannot be written."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(option, f"should be a file, got the existing folder {out!r}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(option, f"cannot write {out!r}: the file is read-only")
    _check_writable(path.parent, out, option)
    return path


def _check_writable(folder: Path, out: str, option: str) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(option, f"cannot write {out!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(option, f"cannot write {out!r}: the folder {str(existing)!r} is not writable")


class RunFolder:
    """The --out folder of `hdml train`.

    A folder holding any of `RUN_FILES` is refused unless the run resumes (--resume) or
    replaces it (--overwrite: those files are deleted when training starts). `start` writes
    settings.yaml; `abandon` (after a failure or Ctrl-C) deletes what a new run wrote when it
    has no checkpoint yet, so a run that never finished an epoch leaves nothing behind.
    """

    def __init__(self, out: str, *, resume: str | None, overwrite: bool) -> None:
        self.path = writable_folder(out)
        self.resume = resume
        self.overwrite = overwrite
        if resume is not None and overwrite:
            raise UsageError("--overwrite", "replaces a run and cannot be combined with --resume, got both")
        used = [name for name in RUN_FILES if (self.path / name).exists()]
        if used and resume is None and not overwrite:
            raise UsageError(
                "--out",
                f"{out!r} already holds a run ({', '.join(used)}): continue it with --resume "
                f"{self.path / CHECKPOINT_NAME}, replace it with --overwrite, or give a new folder",
            )
        self._created = not self.path.exists()

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    def start(self, settings_text: str | None) -> None:
        """Create the folder, delete the old run (--overwrite) and stale temporaries of killed
        checkpoint writes, and write settings.yaml (unless None: a resumed run writes it once it
        has trained)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            remove_run_files(self.path)
        remove_stale_temporaries(self.path)
        if settings_text is not None:
            self.write_settings(settings_text)

    def write_settings(self, settings_text: str) -> Path:
        """Write settings.yaml (the settings of the run, as YAML); returns its path."""
        return write_settings(self.path, settings_text)

    def abandon(self) -> None:
        """After a failed or interrupted run: a new run without a checkpoint leaves nothing."""
        if self.resume is not None or self.checkpoint.exists():
            return
        remove_run_files(self.path)
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
