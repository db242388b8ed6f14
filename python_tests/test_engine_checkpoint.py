"""engine/checkpoint.py: file modes, temporaries of killed writes, refusing foreign files."""

from __future__ import annotations

import os
import signal
from unittest import mock

import pytest
import torch

from hdml_ext.engine import atomic_save, read_checkpoint
from hdml_ext.engine.checkpoint import model_record, remove_stale_temporaries
from hdml_ext.nn import HDMLOnFeatures


def test_atomic_save_gives_the_mode_of_a_new_file(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    atomic_save({"a": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    expected = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert (tmp_path / "checkpoint.pt").stat().st_mode & 0o777 == expected


@pytest.fixture
def python_sigint_handler():
    """SIGINT raising KeyboardInterrupt, as in a foreground process, for the test's duration: a
    shell starts background jobs (`make test &`) with SIGINT ignored, and Python keeps that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_checkpoint_write_comes_after_the_write(tmp_path, python_sigint_handler):
    # torch.save interrupted mid-write raises a RuntimeError of its zip writer, not
    # KeyboardInterrupt; atomic_save holds the signal back until the file is complete.
    real_save = torch.save

    def save_interrupted(obj, handle):
        os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, handle)

    path = tmp_path / "checkpoint.pt"
    with mock.patch.object(torch, "save", save_interrupted), pytest.raises(KeyboardInterrupt):
        atomic_save({"a": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_atomic_save_removes_temporaries_of_killed_writes(tmp_path):
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"\0" * 100)
    (tmp_path / ".model.pt.def456.tmp").write_bytes(b"")
    atomic_save({"a": 1}, tmp_path / "checkpoint.pt")
    assert not (tmp_path / ".checkpoint.pt.abc123.tmp").exists()
    assert (tmp_path / ".model.pt.def456.tmp").exists()  # another file's: left to its own write
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == [".model.pt.def456.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


def test_read_checkpoint_refuses_random_bytes_without_torch_advice(tmp_path):
    (tmp_path / "x.pt").write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="is not a checkpoint written by hdml") as info:
        read_checkpoint(tmp_path / "x.pt")
    assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)


def test_model_record_carries_the_input_pipeline():
    model = HDMLOnFeatures(4, k=2, gcn_dims=[4])
    pipeline = {"height": 8, "width": 8, "mean": [0.5] * 3, "std": [0.2] * 3}
    assert model_record(model, pipeline)["input"] == pipeline
    assert "input" not in model_record(model)
