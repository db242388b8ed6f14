"""Typed settings: one set of defaults, file and --set merging, errors naming key, type and value."""

from __future__ import annotations

import inspect
import re

import pytest

from hdml_ext.engine import Settings, SettingsError, TrainConfig, dump_settings, load_settings
from hdml_ext.graph import DEFAULT_TARGET_RECALL
from hdml_ext.nn import HDML


def test_defaults_are_the_models_and_the_papers():
    settings = load_settings(Settings)
    for name, parameter in inspect.signature(HDML).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            expected = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            assert getattr(settings.model, name) == expected, name
    assert settings.train == TrainConfig()
    assert settings.train.lr == 1e-3 and settings.train.milestones == [12, 16, 18]
    assert settings.cluster.backend == "auto" and settings.eval.ranking == "link_rerank"
    assert settings.cluster.target_recall == DEFAULT_TARGET_RECALL == 0.95


def test_file_then_overrides_in_order(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("train:\n  lr: 1e-2\n  epochs: 7\ncluster:\n  backend: exact\n  target_recall: 0.9\n")
    overrides = ["train.epochs=3", "train.epochs=4", "model.weights=null", "cluster.target_recall=1"]
    settings = load_settings(Settings, config, overrides)
    assert settings.train.epochs == 4 and settings.cluster.backend == "exact"
    assert settings.cluster.target_recall == 1.0 and type(settings.cluster.target_recall) is float
    assert settings.train.lr == 0.01 and isinstance(settings.train.lr, float)


@pytest.mark.parametrize(("text", "value"), [("1e-3", 1e-3), ("2", 2.0), ("0.5", 0.5), ("1.5E-4", 1.5e-4)])
def test_numbers_in_exponent_form_are_floats(text, value):
    lr = load_settings(Settings, overrides=[f"train.lr={text}"]).train.lr
    assert lr == value and type(lr) is float


@pytest.mark.parametrize(
    ("override", "option", "message"),
    [
        ("train.epochs=two", "--set", "train.epochs should be an int, got 'two'"),
        ("train.flip=maybe", "--set", "train.flip should be true or false, got 'maybe'"),
        ("train.amp=fp32", "--set", "train.amp should be one of none, bf16, fp16, got 'fp32'"),
        ("cluster.backend=annoy", "--set", "cluster.backend should be one of auto, exact, ivf, faiss-flat"),
        ("cluster.target_recall=0", "--set", "cluster.target_recall should be a number in (0, 1], got 0.0"),
        ("cluster.target_recall=1.2", "--set", "cluster.target_recall should be a number in (0, 1], got 1.2"),
        ("cluster.target_recall=high", "--set", "cluster.target_recall should be a number, got 'high'"),
        ("eval.k=abc", "--set", "eval.k should be an int or null, got 'abc'"),
        ("train.milestones=12", "--set", "train.milestones should be a list like [1, 2], got 12"),
        ("train.lr=0", "--set", "train.lr should be > 0, got 0.0"),
        ("train.max_positive_share=1.5", "--set",
         "train.max_positive_share should be a number in [0, 1], got 1.5"),
        ("train.epoch=3", "--set", "unknown setting 'train.epoch'; known train: epochs, lr"),
        ("tran.epochs=3", "--set", "unknown setting 'tran'; known sections: data, model, train"),
        ("epochs", "--set", "expected SECTION.KEY=VALUE"),
    ],
)
def test_errors_name_key_expected_and_value(override, option, message):
    with pytest.raises(SettingsError, match="^" + re.escape(message)) as info:
        load_settings(Settings, overrides=[override])
    assert info.value.option == option and "\n" not in str(info.value)


def test_config_file_errors_name_the_option(tmp_path):
    with pytest.raises(SettingsError, match="no settings file") as info:
        load_settings(Settings, tmp_path / "none.yaml")
    assert info.value.option == "--config"
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="mapping of sections"):
        load_settings(Settings, tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("train:\n  gamma: high\n")
    with pytest.raises(SettingsError, match=r"train\.gamma should be a number, got 'high'") as info:
        load_settings(Settings, tmp_path / "bad.yaml")
    assert info.value.option == "--config"


def test_train_config_from_python_is_strict():
    assert TrainConfig(lr=1).lr == 1.0 and type(TrainConfig(lr=1).lr) is float
    with pytest.raises(ValueError, match=r"train\.flip should be true or false, got 'yes'"):
        TrainConfig(flip="yes")
    with pytest.raises(ValueError, match=r"train\.epochs should be an int, got '3'"):
        TrainConfig(epochs="3")
    assert TrainConfig(milestones=(4, 6)).milestones == [4, 6]


def test_dump_round_trips(tmp_path):
    settings = load_settings(Settings, overrides=["train.lr=1e-3", "model.gcn_dims=[8]"])
    (tmp_path / "s.yaml").write_text(dump_settings(settings))
    assert load_settings(Settings, tmp_path / "s.yaml") == settings


def test_the_old_train_backend_is_read_as_dist_backend_with_a_warning(tmp_path):
    with pytest.warns(FutureWarning, match="train.backend is now train.dist_backend"):
        settings = load_settings(Settings, overrides=["train.backend=gloo"])
    assert settings.train.dist_backend == "gloo" and settings.train.knn_backend == "exact"
    old = tmp_path / "old.yaml"
    old.write_text("train:\n  backend: gloo\n  epochs: 2\n")
    with pytest.warns(FutureWarning):
        assert load_settings(Settings, old).train.dist_backend == "gloo"
    both = tmp_path / "both.yaml"
    both.write_text("train:\n  backend: gloo\n  dist_backend: nccl\n")
    with pytest.raises(SettingsError, match=r"train\.backend is the old name of train\.dist_backend") as err:
        load_settings(Settings, both)
    assert err.value.option == "--config"
    with pytest.raises(SettingsError, match=r"train\.dist_backend should be one of auto, gloo, nccl"):
        load_settings(Settings, overrides=["train.dist_backend=mpi"])


def test_demo_cluster_settings_leave_threshold_and_max_size_to_be_chosen():
    from hdml_ext.demo.config import demo_settings

    cluster = demo_settings(quick=True).cluster
    assert cluster.threshold is None and cluster.max_size is None and cluster.step == 0.1
    assert load_settings(Settings).cluster.threshold == 0.5
    with pytest.raises(ValueError, match=r"cluster\.threshold should be a number"):
        cluster.cluster_config().propagation_settings()
