"""The training loop: schedule, logs, checkpoints and exact resume (hdml_ext.engine.trainer)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from hdml_ext.engine import TrainConfig, Trainer, load_model, read_checkpoint, seed_everything
from hdml_ext.engine.run_folder import read_log
from hdml_ext.nn import HDML, HDMLOnFeatures

NUM_CLASSES, PER_CLASS, K = 3, 6, 3


def _images(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)
    images = torch.randn(labels.numel(), 3, 32, 16, generator=gen) + labels[:, None, None, None].float()
    return images, labels


def _model(seed: int = 0) -> HDML:
    seed_everything(seed)
    return HDML(NUM_CLASSES, backbone="resnet18", k=K, nfe_stages=(2, 3), gcn_dims=(16, 8))


def _config(**changes) -> TrainConfig:
    values = {
        "epochs": 2,
        "lr": 0.01,
        "milestones": (1,),
        "gamma": 0.5,
        "identities_per_batch": 2,
        "focus_per_identity": 3,
        "rebuild_every": 1,
        "flip": True,
        "embed_batch_size": 8,
        "seed": 0,
        "device": "cpu",
        "progress": False,
    }
    values.update(changes)
    return TrainConfig(**values)


def _losses(records):
    return [(r["epoch"], r["step"], r["loss"], r["node"], r["link"], r["lr"]) for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    images, labels = _images()
    out = tmp_path_factory.mktemp("full")
    history = Trainer(_model(), images, labels, _config(), out_dir=out).fit()
    return out, history


def test_two_epochs_log_schedule_and_files(uninterrupted):
    out, history = uninterrupted
    assert {r["epoch"] for r in history} == {1, 2}
    assert [r["step"] for r in history] == list(range(1, len(history) + 1))
    # lr x gamma after epoch 1 (milestone 1).
    assert {r["lr"] for r in history if r["epoch"] == 1} == {0.01}
    assert {r["lr"] for r in history if r["epoch"] == 2} == {0.005}
    logged = read_log(out / "log.jsonl")
    assert _losses(logged) == _losses(history)
    assert set(logged[0]) == {"epoch", "step", "loss", "node", "link", "lr", "seconds"}
    assert all(r["seconds"] >= 0 for r in logged)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == ["checkpoint.pt", "log.jsonl", "model.pt"]


def test_checkpoint_contents_load_safely(uninterrupted):
    out, history = uninterrupted
    record = torch.load(out / "checkpoint.pt", weights_only=True)
    assert record["epoch"] == 2 and record["step"] == len(history)
    for key in (
        "model_class",
        "model_config",
        "model_state",
        "optimizer",
        "scheduler",
        "sampler",
        "rng",
        "train_config",
    ):
        assert key in record
    assert set(record["rng"]) >= {"torch", "numpy", "python"}
    model = load_model(out / "model.pt")
    assert isinstance(model, HDML) and not model.training
    assert model.to_config()["k"] == K


def test_resume_after_a_crash_repeats_the_losses_exactly(tmp_path, uninterrupted):
    _, full = uninterrupted
    images, labels = _images()
    steps_in_epoch_1 = sum(r["epoch"] == 1 for r in full)

    class CrashError(Exception):
        pass

    def crash_in_epoch_2(record):
        if record["step"] == steps_in_epoch_1 + 1:
            raise CrashError

    with pytest.raises(CrashError):
        Trainer(_model(), images, labels, _config(), out_dir=tmp_path, on_step=crash_in_epoch_2).fit()
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    # A fresh process would build a differently initialised model and RNG: resume must not care.
    torch.manual_seed(999)
    resumed = Trainer(_model(seed=5), images, labels, _config(), out_dir=tmp_path).fit(
        resume=tmp_path / "checkpoint.pt"
    )
    assert _losses(resumed) == _losses(full[steps_in_epoch_1:])
    # The interrupted epoch's log lines were dropped: the log reads as one uninterrupted run.
    assert _losses(read_log(tmp_path / "log.jsonl")) == _losses(full)


def test_rebuild_every_sets_when_the_graphs_are_rebuilt(monkeypatch):
    images, labels = _images()
    trainer = Trainer(_model(), images, labels, _config(epochs=3, rebuild_every=2))
    calls = []
    original = trainer.sampler.rebuild

    def spy(embeddings):
        calls.append(trainer.epoch)
        original(embeddings)

    monkeypatch.setattr(trainer.sampler, "rebuild", spy)
    trainer.fit()
    assert calls == [0, 2]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    images, labels = _images()
    trainer = Trainer(_model(), images, labels, _config(epochs=1), out_dir=tmp_path)
    trainer.fit()
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    files = sorted(name for name in os.listdir(tmp_path) if not name.startswith("events.out.tfevents."))
    assert files == ["checkpoint.pt", "log.jsonl", "model.pt"]


def test_features_model_trains_on_the_link_loss(tmp_path):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(5)
    features = torch.randn(20, 8, generator=gen) + 2.0 * labels[:, None]
    seed_everything(0)
    model = HDMLOnFeatures(8, k=4, gcn_dims=(16,))
    history = Trainer(model, features, labels, _config(epochs=1), out_dir=tmp_path).fit()
    assert history and all(r["node"] == 0.0 and r["link"] == r["loss"] > 0 for r in history)
    assert isinstance(load_model(tmp_path / "model.pt"), HDMLOnFeatures)


def test_checkpoints_written_before_the_link_options_still_load(tmp_path):
    images, labels = _images()
    Trainer(_model(), images, labels, _config(epochs=1), out_dir=tmp_path).fit()
    record = read_checkpoint(tmp_path / "model.pt")
    for key in ("edge_input", "relative_input", "balanced_link_loss"):
        del record["model_config"][key]
    torch.save(record, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    new = load_model(tmp_path / "model.pt")
    assert old.to_config() == new.to_config() and old.edge_input == "node"
    for name, value in new.state_dict().items():
        assert torch.equal(old.state_dict()[name], value)


def test_resume_rejects_another_model_class(tmp_path):
    features = torch.randn(18, 8)
    _, labels = _images()
    seed_everything(0)
    model = HDMLOnFeatures(8, k=K, gcn_dims=(16,))
    Trainer(model, features, labels, _config(epochs=1), out_dir=tmp_path).fit()
    images, _ = _images()
    with pytest.raises(ValueError, match="resume: the checkpoint holds a HDMLOnFeatures, the trainer a HDML"):
        Trainer(_model(), images, labels, _config()).fit(resume=tmp_path / "checkpoint.pt")


def test_config_round_trip_and_unknown_key():
    config = _config()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"train\.epoch\b"):
        TrainConfig.from_dict({"epoch": 3})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "train.epochs should be an int >= 1"),
        ("lr", -1.0, "train.lr should be a finite number"),
        ("lr", 0.0, "train.lr should be > 0"),
        ("rebuild_every", 1.5, "train.rebuild_every"),
        ("milestones", "12", "train.milestones"),
    ],
)
def test_config_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        _config(**{field: value})


def test_error_labels_count():
    images, labels = _images()
    with pytest.raises(ValueError, match="labels should be"):
        Trainer(_model(), images, labels[:-1], _config())


@pytest.mark.parametrize(("bad", "message"), [(NUM_CLASSES, r"\[0, 3\) .* got 3 at row 4"),
                                              (-1, r"\[0, 3\) .* got -1 at row 4")])
def test_labels_outside_the_node_heads_classes_raise_before_any_work(bad, message, monkeypatch):
    # Before, a label >= num_classes reached the node head's cross entropy: on CUDA a
    # device-side assert, not a named error.
    images, labels = _images()
    labels[4] = bad
    monkeypatch.setattr("hdml_ext.engine.trainer.embed_rows", lambda *a, **k: pytest.fail("embedded"))
    with pytest.raises(ValueError, match="labels should hold class ids in " + message):
        Trainer(_model(), images, labels, _config())


def test_a_model_without_a_node_head_takes_any_class_id():
    labels = torch.tensor([0, 0, 7, 7, 9, 9])
    Trainer(HDMLOnFeatures(8, k=2, gcn_dims=(16,)), torch.randn(6, 8), labels, _config())
    with pytest.raises(ValueError, match=r"class ids in \[0\) .* got -2 at row 1"):
        Trainer(HDMLOnFeatures(8, k=2, gcn_dims=(16,)), torch.randn(6, 8), torch.tensor([0, -2, 1, 1, 2, 2]),
                _config())


def test_rebuilds_use_the_configured_knn_backend(monkeypatch):
    # Before, the trainer built its sampler without a kNN backend: always exact, O(N^2).
    import hdml_ext.data.sampler as sampler_module

    asked = []
    build = sampler_module.build_fgraphs

    def spy(embeddings, k, *, backend):
        asked.append(backend)
        return build(embeddings, k, backend=backend)

    monkeypatch.setattr(sampler_module, "build_fgraphs", spy)
    images, labels = _images()
    trainer = Trainer(_model(), images, labels, _config(epochs=1, knn_backend="faiss-flat"))
    assert trainer.sampler.backend == "faiss-flat" and TrainConfig().knn_backend == "exact"
    trainer.fit()
    assert asked == ["faiss-flat"] and trainer.sampler.fgraphs.backend == "faiss-flat"


def test_error_resume_from_a_model_file(tmp_path):
    images, labels = _images()
    Trainer(_model(), images, labels, _config(epochs=1), out_dir=tmp_path).fit()
    with pytest.raises(ValueError, match="resume"):
        Trainer(_model(), images, labels, _config()).fit(resume=tmp_path / "model.pt")


def test_error_resume_missing_file(tmp_path):
    images, labels = _images()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trainer(_model(), images, labels, _config()).fit(resume=tmp_path / "nope.pt")


def test_log_lines_are_json(uninterrupted):
    out, _ = uninterrupted
    for line in (out / "log.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line)["loss"], float)


def test_dataset_source_with_workers_matches_the_tensor():
    from hdml_ext.data import TensorImageDataset

    images, labels = _images()
    config = _config(epochs=1, flip=False)
    from_tensor = Trainer(_model(), images, labels, config).fit()
    dataset = TensorImageDataset(images, labels)
    from_workers = Trainer(_model(), dataset, labels, _config(epochs=1, flip=False, num_workers=1)).fit()
    assert _losses(from_workers) == _losses(from_tensor)
