"""Multi-process training (hdml_ext.engine.distributed and the Trainer under DDP).

Two CPU processes over gloo (torchrun, `dist_worker.py`) are compared with one process that
accumulates the gradient of the same batches (accumulate = 2). The two are the same in exact
arithmetic: global step s is global batches 2s and 2s+1 in both, DDP averages the two ranks'
gradients as accumulation averages the two batches', and BatchNorm normalises each batch by
its own statistics in both (one batch per forward pass). The references run on one thread,
like each torchrun worker, so that the float reductions agree too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_worker import config, features_data, features_model, images_data, images_model, parameters

from hdml_ext.cli import main
from hdml_ext.engine import TrainConfig, Trainer, distributed, load_model, read_checkpoint
from hdml_ext.engine.run_folder import read_log

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("dist_worker.py")


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 ARGS` with hdml_ext importable, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run dist_worker.py on two ranks; (results folder, [rank 0 results, rank 1 results])."""
    results = tmp_path_factory.mktemp("ddp")
    _torchrun([str(WORKER), str(results)], cwd=results)
    return results, [torch.load(results / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def _losses(history: list[dict]) -> list[tuple]:
    return [(r["epoch"], r["step"], r["lr"]) for r in history], [r["loss"] for r in history]


def test_two_processes_match_one_process_accumulating_two_batches(ranks, one_thread):
    _, (rank0, rank1) = ranks
    features, labels = features_data()
    reference = Trainer(features_model(), features, labels, config(accumulate=2))
    history = reference.fit()
    # 5 batches per epoch, topped up to 6: 3 steps per epoch on both sides.
    assert len(history) == len(rank0["features_history"]) == 6
    steps, losses = _losses(history)
    for rank in (rank0, rank1):
        assert _losses(rank["features_history"])[0] == steps
        np.testing.assert_allclose(_losses(rank["features_history"])[1], losses, rtol=1e-6)
        assert _max_diff(rank["features_params"], parameters(reference.model)) <= 1e-6


def test_images_two_processes_match_one_process(ranks, one_thread):
    """The whole HDML (ResNet BatchNorm, NFA, RE-GCN), random flips on, one epoch."""
    _, (rank0, _) = ranks
    images, labels = images_data()
    reference = Trainer(images_model(), images, labels, config(epochs=1, accumulate=2))
    history = reference.fit()
    assert torch.equal(reference.sampler.fgraphs.knn_idx, rank0["images_knn"])
    np.testing.assert_allclose(_losses(rank0["images_history"])[1], _losses(history)[1], rtol=1e-5)
    assert _max_diff(rank0["images_params"], parameters(reference.model)) <= 1e-5


def test_ranks_hold_the_same_model_and_graphs(ranks):
    _, (rank0, rank1) = ranks
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    for key in ("features_params", "images_params", "resumed_params"):
        assert _max_diff(rank0[key], rank1[key]) == 0.0, key
    for key in ("features_knn", "images_knn"):
        assert torch.equal(rank0[key], rank1[key]), key
    # Every rank logs the same step records (the losses are all-reduced means).
    assert _losses(rank0["features_history"]) == _losses(rank1["features_history"])


def test_rank_0_alone_writes_the_run_folder(ranks):
    results, (rank0, _) = ranks
    run = results / "features"
    names = sorted(p.name for p in run.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == ["checkpoint.pt", "log.jsonl", "model.pt"]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # rank 0's TensorBoard events
    logged = read_log(run / "log.jsonl")
    assert [r["step"] for r in logged] == list(range(1, 7))  # once per step, not once per rank
    assert [r["loss"] for r in logged] == [r["loss"] for r in rank0["features_history"]]
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    model = load_model(run / "model.pt")
    assert _max_diff(parameters(model), rank0["features_params"]) == 0.0


def test_distributed_resume_continues_exactly(ranks):
    results, (rank0, _) = ranks
    full = rank0["features_history"]
    assert _losses(rank0["resumed_history"]) == _losses(full[3:])
    assert _max_diff(rank0["resumed_params"], rank0["features_params"]) == 0.0
    assert [r["loss"] for r in read_log(results / "resumed" / "log.jsonl")] == [r["loss"] for r in full]


def test_bf16_and_channels_last_give_finite_losses(ranks):
    _, (rank0, _) = ranks
    history = rank0["bf16_history"]
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)


def test_uneven_shares_are_gathered_in_order(ranks):
    _, (rank0, rank1) = ranks
    expected = torch.arange(7.0)[:, None].repeat(1, 2)
    assert torch.equal(rank0["gathered"], expected) and torch.equal(rank1["gathered"], expected)


def test_shard_rows_are_balanced_and_cover_every_row(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    shares = []
    for rank in range(4):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        shares.append(distributed.shard_rows(9).tolist())
    assert shares == [[0, 1, 2], [3, 4], [5, 6], [7, 8]]


def test_sync_bn_on_the_cpu_is_refused(ranks):
    _, (rank0, _) = ranks
    assert "sync_bn needs CUDA" in rank0["sync_bn_error"]


def test_rank_batches_deal_each_global_batch_to_one_rank():
    features, labels = features_data()
    trainer = Trainer(features_model(), features, labels, config(accumulate=2))
    global_batches = trainer.sampler.focus_batches(0)
    assert len(global_batches) == 5
    shares = []
    for rank in range(3):
        trainer.rank, trainer.world_size = rank, 3
        shares.append(trainer.rank_batches(0))
    # 5 batches topped up to 6 = 3 ranks x 2 (accumulate): batch 5 repeats batch 0.
    assert [len(share) for share in shares] == [2, 2, 2]
    dealt = sorted((index, focus.tolist()) for share in shares for index, focus in share)
    assert [index for index, _ in dealt] == list(range(6))
    expected = [b.tolist() for b in global_batches] + [global_batches[0].tolist()]
    assert [focus for _, focus in dealt] == expected
    # drop_last cuts instead: 5 -> 4 = 2 ranks x 2; with 3 ranks nothing would be left.
    trainer.config = config(accumulate=2, drop_last=True)
    trainer.rank, trainer.world_size = 1, 2
    assert [index for index, _ in trainer.rank_batches(0)] == [1, 3]
    trainer.world_size = 3
    with pytest.raises(ValueError, match="fewer PK batches than world_size \\* accumulate = 6"):
        trainer.rank_batches(0)


def test_torchrun_cli_train_matches_one_process(tmp_path):
    features, labels = features_data()
    np.save(tmp_path / "f.npy", features.numpy())
    np.save(tmp_path / "y.npy", labels.numpy())
    argv = ["train", "--dataset", "features", "--root", str(tmp_path / "f.npy"),
            "--labels", str(tmp_path / "y.npy"), "--quiet",
            "--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
            "--set", "train.identities_per_batch=2", "--set", "train.focus_per_identity=3",
            "--set", "train.device=cpu"]  # fmt: skip
    done = _torchrun(["-m", "hdml_ext.cli", *argv, "--out", str(tmp_path / "ddp")], cwd=tmp_path)
    assert done.stdout.count("trained 1 epochs, 3 steps") == 1  # rank 0 alone reports
    ddp = tmp_path / "ddp"
    names = sorted(p.name for p in ddp.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == ["checkpoint.pt", "log.jsonl", "model.pt", "settings.yaml"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*argv, "--out", str(tmp_path / "one"), "--set", "train.accumulate=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    ddp, one = load_model(tmp_path / "ddp" / "model.pt"), load_model(tmp_path / "one" / "model.pt")
    assert _max_diff(parameters(ddp), parameters(one)) <= 1e-6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amp": "fp32"}, "train.amp should be one of none, bf16, fp16, got 'fp32'"),
        ({"dist_backend": "mpi"}, "train.dist_backend should be one of auto, gloo, nccl"),
        ({"channels_last": "yes"}, "train.channels_last should be true or false"),
        ({"accumulate": 0}, "train.accumulate should be an int >= 1"),
    ],
)
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_fp16_on_the_cpu_is_refused():
    features, labels = features_data()
    with pytest.raises(ValueError, match=r"fp16.*needs a CUDA device.*bf16"):
        Trainer(features_model(), features, labels, config(amp="fp16"))


def test_cli_reports_bad_amp(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "digits", "--out", str(tmp_path), "--set", "train.amp=fp8"])
    assert exit_info.value.code == 2
    assert "train.amp should be one of" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present: fp16 autocast needs one")
def test_fp16_with_grad_scaler_on_cuda():
    images, labels = images_data(128, 64)
    trainer = Trainer(
        images_model(), images, labels, config(epochs=1, amp="fp16", device="cuda", channels_last=True)
    )
    history = trainer.fit()
    assert history and all(np.isfinite(r["loss"]) for r in history)
    assert "scaler" in trainer.state_dict()
