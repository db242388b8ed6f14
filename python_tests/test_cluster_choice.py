"""hdml_ext.cluster.choice: the validated clustering choice, its round trip through a checkpoint,
and how settings override it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hdml_ext.cluster import (
    ClusterConfig,
    calibrate,
    choose_clustering,
    choose_infomap,
    cluster_edges,
    link_edges,
    resolve_choice,
    run_clustering,
    selection_score,
    store_choice,
    stored_choice,
)
from hdml_ext.engine.checkpoint import atomic_save, load_model, model_record, read_checkpoint
from hdml_ext.engine.models import new_model
from hdml_ext.engine.settings import ClusterSettings, ModelSettings

STORED = {
    "method": "infomap",
    "chosen_on": {"rows": 48, "identities": 8},
    "methods": {
        "propagation": {"threshold": 0.9, "max_size": 20, "step": 0.1, "max_iter": 50, "validation": {}},
        "infomap": {"threshold": 0.7, "validation": {}},
    },
}


def _model_and_data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 6)
    features = rng.normal(size=(48, 5)) + 2 * rng.normal(size=(8, 5))[labels]
    features = torch.from_numpy(features.astype(np.float32))
    torch.manual_seed(0)
    model = new_model(ModelSettings(k=4, gcn_dims=[8], cosine_prior=True), num_classes=0, feature_dim=5)
    return model.eval(), features, labels


def test_calibrate_takes_each_methods_validated_best():
    model, features, labels = _model_and_data()
    config = ClusterConfig()
    choice = calibrate(model, features, labels, config, max_sizes=(10, None))
    edges = link_edges(model, features, 4)
    threshold, max_size, metrics = choose_clustering(edges, labels, config, [10, None])
    floor, infomap_metrics = choose_infomap(edges, labels)
    assert choice["methods"]["propagation"] == {"threshold": threshold, "max_size": max_size, "step": 0.05,
                                                "max_iter": 20, "validation": metrics}
    assert choice["methods"]["infomap"] == {"threshold": floor, "validation": infomap_metrics}
    better = "infomap" if selection_score(infomap_metrics) > selection_score(metrics) else "propagation"
    assert choice["method"] == better
    assert choice["chosen_on"] == {"rows": 48, "identities": 8}


def test_choice_round_trips_through_the_checkpoint(tmp_path):
    model, features, labels = _model_and_data()
    path = tmp_path / "model.pt"
    atomic_save(model_record(model), path)
    choice = calibrate(model, features, labels, ClusterConfig(), max_sizes=(10,))
    store_choice(path, choice)
    record = read_checkpoint(path)
    assert stored_choice(record) == choice
    # The model is untouched.
    reloaded = load_model(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value)


def test_no_stored_choice_keeps_the_settings():
    settings = ClusterSettings(threshold=0.3)
    method, config, line = resolve_choice(None, settings, set())
    assert method == "propagation" and config.threshold == 0.3 and config.max_size == 300
    assert "stores no validated choice" in line


def test_stored_choice_replaces_what_is_not_given():
    method, config, line = resolve_choice(STORED, ClusterSettings(), set())
    assert method == "infomap" and config.threshold == 0.7
    assert "stored choice (infomap, edge floor 0.7" in line and "overridden" not in line


def test_a_given_method_takes_that_methods_stored_parameters():
    settings = ClusterSettings(method="propagation")
    method, config, line = resolve_choice(STORED, settings, {"cluster.method"})
    assert method == "propagation"
    assert (config.threshold, config.max_size, config.step, config.max_iter) == (0.9, 20, 0.1, 50)
    assert "overridden by the settings: cluster.method" in line


def test_a_given_parameter_overrides_the_stored_one():
    settings = ClusterSettings(method="propagation", threshold=0.5)
    method, config, line = resolve_choice(STORED, settings, {"cluster.method", "cluster.threshold",
                                                             "cluster.device"})
    assert method == "propagation" and config.threshold == 0.5 and config.max_size == 20
    assert "overridden by the settings: cluster.method, cluster.threshold" in line


def test_cluster_edges_runs_the_named_method():
    src, dst = np.array([0, 1, 2, 3, 1]), np.array([1, 2, 0, 4, 3])
    score = np.array([0.9, 0.9, 0.9, 0.9, 0.4])
    config = ClusterConfig(threshold=0.5, max_size=None)
    np.testing.assert_array_equal(cluster_edges(5, (src, dst, score), "propagation", config), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(
        cluster_edges(5, (src, dst, score), "propagation", replace(config, threshold=0.3)), [0] * 5
    )
    infomap_labels = cluster_edges(5, (src, dst, score), "infomap", config)
    assert infomap_labels[0] == infomap_labels[1] == infomap_labels[2] != infomap_labels[3]
    with pytest.raises(ValueError, match="method should be one of propagation, infomap"):
        cluster_edges(5, (src, dst, score), "kmeans", config)


def test_run_clustering_builds_the_fgraphs_with_the_configs_backend():
    model, features, _ = _model_and_data()
    run = run_clustering("propagation", model, features, ClusterConfig(backend="faiss-flat"))
    assert run.info["knn"]["backend"] == "faiss-flat" and run.fgraphs.backend == "faiss-flat"
    assert run.fgraphs.knn_idx.shape == (48, 4)
    exact = run_clustering("propagation", model, features, ClusterConfig(backend="exact"))
    assert exact.info["knn"]["backend"] == "exact"
    np.testing.assert_array_equal(run.labels, exact.labels)  # flat search finds the same neighbours
    given = run_clustering("propagation", model, features, ClusterConfig(backend="ivf"), knn=exact.fgraphs)
    assert given.info["knn"]["backend"] == "exact"  # given F-Graphs are used as they are


def test_an_unfixed_threshold_is_refused_before_any_work():
    model, features, _ = _model_and_data()
    with pytest.raises(ValueError, match=r"cluster\.threshold should be a number"):
        run_clustering("infomap", model, features, ClusterConfig(threshold=None))
