"""The `hdml` command: every sub-command on tiny data, settings, and clear argument errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hdml_ext.cli import build_parser, main

# Tiny digits runs: 8x8 images, ~10% of each class for training, a 1-layer RE-GCN, one epoch.
TINY = [
    "--set", "data.height=8", "--set", "data.width=8", "--set", "data.train_fraction=0.1",
    "--set", "model.backbone=resnet18", "--set", "model.k=3", "--set", "model.gcn_dims=[8]",
    "--set", "model.nfe_stages=[2]", "--set", "train.epochs=1", "--set", "train.milestones=[]",
    "--set", "train.identities_per_batch=5", "--set", "train.focus_per_identity=4",
    "--set", "train.device=cpu", "--set", "eval.device=cpu", "--set", "cluster.device=cpu",
]  # fmt: skip


def _fails(capsys, argv: list[str], *needles: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_run")
    assert main(["train", "--dataset", "digits", "--out", str(out), "--quiet", *TINY]) == 0
    return out


def test_every_option_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"train", "evaluate", "embed", "cluster", "calibrate", "export", "demo"}
    for name, sub in [("hdml", parser), *commands.items()]:
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings} has no --help line"


def test_help_explains_the_settings_scheme(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--set SECTION.KEY=VALUE" in text and "--config FILE" in text and "train.epochs=2" in text


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "hdml_ext.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "hdml_ext" in done.stdout


def test_print_config_merges_file_then_set(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("train:\n  epochs: 7\n  lr: 0.5\nmodel:\n  k: 9\n")
    assert main(["train", "--config", str(config), "--set", "train.epochs=3", "--print-config"]) == 0
    settings = yaml.safe_load(capsys.readouterr().out)
    assert settings["train"]["epochs"] == 3 and settings["train"]["lr"] == 0.5 and settings["model"]["k"] == 9
    assert settings["train"]["milestones"] == [12, 16, 18]


def test_json_config_is_accepted(tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"cluster": {"threshold": 0.7}}))
    assert main(["cluster", "--config", str(config), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["cluster"]["threshold"] == 0.7


def test_train_writes_a_run(digits_run):
    names = sorted(p.name for p in digits_run.iterdir() if not p.name.startswith("events.out.tfevents."))
    assert names == ["checkpoint.pt", "log.jsonl", "model.pt", "settings.yaml"]
    assert len(list(digits_run.glob("events.out.tfevents.*"))) == 1  # TensorBoard's
    assert yaml.safe_load((digits_run / "settings.yaml").read_text())["model"]["k"] == 3


def test_train_resume_continues(digits_run, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--out", str(digits_run), "--quiet", *TINY]
    assert main([*argv, "--resume", str(digits_run / "checkpoint.pt")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([*argv, "--set", "train.epochs=2", "--resume", str(digits_run / "checkpoint.pt")]) == 0
    assert "trained 2 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("ranking", ["graph", "distance"])
def test_evaluate_digits(digits_run, tmp_path, capsys, ranking):
    out = tmp_path / "reid.json"
    model = str(digits_run / "model.pt")
    argv = ["evaluate", "--checkpoint", model, "--dataset", "digits", "--out", str(out)]
    assert main([*argv, "--quiet", *TINY, "--set", f"eval.ranking={ranking}"]) == 0
    result = json.loads(out.read_text())
    assert result["ranking"] == ranking and 0.0 <= result["mAP"] <= 1.0 and len(result["cmc"]) == 50
    assert "mAP" in capsys.readouterr().out


def test_cluster_digits_images(digits_run, tmp_path):
    model = str(digits_run / "model.pt")
    argv = ["cluster", "--checkpoint", model, "--dataset", "digits", "--out", str(tmp_path)]
    assert main([*argv, "--quiet", *TINY]) == 0
    labels = np.load(tmp_path / "labels.npy")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert labels.ndim == 1 and labels.size > 0
    assert {"nmi", "pairwise_f", "bcubed_f"} <= set(metrics)


def test_train_and_cluster_features(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 6)
    features = (rng.normal(size=(18, 5)) + 4 * labels[:, None]).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "y.npy", labels)
    data = ["--dataset", "features", "--root", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy")]
    settings = ["--set", "model.k=3", "--set", "model.gcn_dims=[8]", "--set", "train.epochs=1",
                "--set", "train.device=cpu", "--set", "cluster.device=cpu"]  # fmt: skip
    assert main(["train", *data, "--out", str(tmp_path / "run"), "--quiet", *settings]) == 0
    model = str(tmp_path / "run" / "model.pt")
    cluster = ["cluster", "--checkpoint", model, *data, "--out", str(tmp_path / "c")]
    assert main([*cluster, "--quiet", *settings]) == 0
    assert np.load(tmp_path / "c" / "labels.npy").shape == (18,)
    assert (tmp_path / "c" / "metrics.json").is_file()


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--quiet", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    keys = {"mAP", "rank1", "rank5", "rank10", "mINP", "nmi", "pairwise_f", "bcubed_f"}
    assert set(results) == {"dataset", "hdml", "baselines"} and results["dataset"] == "digit-instances"
    assert set(results["hdml"]) == keys | {"link_auc", "cosine_auc"}
    assert all(isinstance(results["hdml"][key], float) for key in results["hdml"])
    baselines = results["baselines"]
    assert {"node_only", "node_only_k_reciprocal", "hdml_embeddings_no_graph", "pixels"} <= set(baselines)
    assert all(keys <= set(values) for values in baselines.values())
    oracles = {name for name, values in baselines.items() if values.get("oracle")}
    assert oracles == {name for name in baselines if name.endswith("_kmeans_true_k")} and len(oracles) == 3
    assert baselines["node_only_k_reciprocal"]["nmi"] is None
    assert isinstance(baselines["node_only"]["nmi"], float)
    saved = np.load(tmp_path / "embeddings.npz")
    assert saved["features"].dtype == np.float32 and saved["features"].ndim == 2
    assert saved["labels"].shape == saved["hdml_clusters"].shape == (saved["features"].shape[0],)
    for name in ("loss_curves.png", "cmc.png", "embedding_2d.png", "settings.yaml", "run_info.json"):
        assert (tmp_path / name).is_file(), name
    out = capsys.readouterr().out
    assert "open-set" in out and "mINP" in out and "link AUC" in out


def test_error_missing_root(capsys, tmp_path):
    argv = ["train", "--dataset", "market1501", "--root", str(tmp_path / "nope"), "--out", str(tmp_path)]
    _fails(capsys, argv, "--root", "does not exist")


def test_error_unknown_dataset_kind(capsys, tmp_path):
    _fails(capsys, ["train", "--dataset", "imagenet", "--out", str(tmp_path)], "--dataset", "imagenet")


def test_error_dataset_not_given(capsys, tmp_path):
    _fails(capsys, ["train", "--out", str(tmp_path)], "--dataset", "required")


def test_error_k_not_below_n(capsys, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 0, 1, 1]))
    data = ["--dataset", "features", "--root", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy")]
    argv = ["train", *data, "--out", str(tmp_path / "run"), "--set", "model.k=4"]
    _fails(capsys, argv, "--set", "k should be at most N - 1 = 3", "got k=4")


def test_error_unknown_setting(capsys):
    _fails(capsys, ["train", "--set", "train.epoch=2", "--print-config"], "--set", "train.epoch")


def test_error_malformed_set(capsys):
    _fails(capsys, ["train", "--set", "epochs", "--print-config"], "--set", "SECTION.KEY=VALUE")


def test_error_setting_of_the_wrong_type(capsys):
    _fails(capsys, ["train", "--set", "train.epochs=two", "--print-config"], "--set", "train.epochs")


def test_error_missing_config_file(capsys, tmp_path):
    _fails(capsys, ["demo", "--config", str(tmp_path / "none.yaml"), "--print-config"], "--config")


def test_error_missing_checkpoint(capsys, tmp_path):
    argv = ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--dataset", "digits"]
    _fails(capsys, argv, "--checkpoint")


def test_error_checkpoint_not_ours(capsys, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"not a checkpoint")
    argv = ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--dataset", "digits"]
    _fails(capsys, argv, "--checkpoint")


def test_error_features_need_labels_to_train(capsys, tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((4, 3), np.float32))
    argv = ["train", "--dataset", "features", "--root", str(tmp_path / "f.npy"), "--out", str(tmp_path)]
    _fails(capsys, argv, "--labels")


def test_error_evaluate_dataset_kind(capsys, digits_run):
    _fails(capsys, ["evaluate", "--checkpoint", str(digits_run / "model.pt"), "--dataset", "features"],
           "--dataset", "market1501")  # fmt: skip


def _market_tree(root, rng):
    """A tiny Market-1501 layout: 3 training ids, 2 test ids seen by 2 cameras, 8x4 JPEGs."""
    from PIL import Image

    layout = {
        "bounding_box_train": [(pid, cam) for pid in (1, 2, 3) for cam in (1, 2, 3, 1, 2)],
        "query": [(7, 1), (8, 2)],
        "bounding_box_test": [(pid, cam) for pid in (7, 8) for cam in (1, 2, 3)] + [(-1, 1), (0, 2)],
    }
    for folder, entries in layout.items():
        (root / folder).mkdir(parents=True)
        for n, (pid, cam) in enumerate(entries):
            pixels = (rng.random((8, 4, 3)) * 60 + 40 * max(pid, 0) % 200).astype(np.uint8)
            name = "-1" if pid == -1 else f"{pid:04d}"  # Market-1501 writes junk as -1
            Image.fromarray(pixels).save(root / folder / f"{name}_c{cam}s1_{n:06d}_01.jpg")


def test_train_and_evaluate_on_a_market_folder(tmp_path, capsys):
    _market_tree(tmp_path / "market", np.random.default_rng(0))
    data = ["--dataset", "market1501", "--root", str(tmp_path / "market")]
    tiny = [
        *TINY,
        "--set",
        "data.height=16",
        "--set",
        "data.width=8",
        "--set",
        "train.identities_per_batch=3",
    ]
    assert main(["train", *data, "--out", str(tmp_path / "run"), "--quiet", *tiny]) == 0
    model = str(tmp_path / "run" / "model.pt")
    assert main(["evaluate", "--checkpoint", model, *data, "--quiet", *tiny]) == 0
    assert "(2 queries, link_rerank ranking)" in capsys.readouterr().out
