"""Face clustering: scored F-Graph edges, propagation, metrics (hdml_ext.cluster.scoring)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import DEVICES
from torch import nn

from hdml_ext.cluster import (
    ClusterConfig,
    cluster,
    clustering_metrics,
    link_edges,
    propagate_edges,
    similarity_edges,
)
from hdml_ext.engine import TrainConfig, Trainer
from hdml_ext.graph import build_fgraphs
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.ops import reference


class DistanceScorer(nn.Module):
    """A stand-in model: S = exp(-distance to the focus)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def to_config(self) -> dict:
        return {"k": self.k}

    def link_scores(self, z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(z[:, 1:] - z[:, :1]).norm(dim=-1))

    def link_scores_of_nodes(self, table: torch.Tensor, batches) -> Iterator[torch.Tensor]:
        for nodes, adj in batches:
            yield self.link_scores(table[nodes], adj)


def _blobs(num_classes=4, per_class=8, dim=5, spread=0.05, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    centers = 10.0 * torch.randn(num_classes, dim, generator=gen)
    points = centers[labels] + spread * torch.randn(labels.numel(), dim, generator=gen)
    return points.to(device), labels


@pytest.mark.parametrize("device", DEVICES)
def test_link_edges_score_every_node_graph(device):
    points, _ = _blobs(device=device)
    k = 5
    src, dst, score = link_edges(DistanceScorer(k), points, k, batch_size=7)
    _, knn_idx = reference.knn(points.cpu(), k)
    assert torch.equal(src, torch.arange(points.shape[0]).repeat_interleave(k))
    assert torch.equal(dst, knn_idx.reshape(-1))
    expected = torch.exp(-(points.cpu()[dst] - points.cpu()[src]).norm(dim=-1))
    torch.testing.assert_close(score, expected)


@pytest.mark.parametrize("relative_input", [False, True])
def test_link_edges_of_a_model_equal_its_scores_graph_by_graph(relative_input):
    points, _ = _blobs(dim=6, spread=1.0)
    k = 5
    torch.manual_seed(0)
    model = HDMLOnFeatures(6, k=k, gcn_dims=(8, 4), edge_input="pair", relative_input=relative_input)
    _, dst, score = link_edges(model, points, k, batch_size=7)
    assert model.training  # restored
    graphs = build_fgraphs(points, k, backend="exact")
    model.eval()
    with torch.no_grad():
        expected = model.link_scores(points[graphs.nodes()], graphs.adjacency())
    assert torch.equal(dst, graphs.knn_idx.reshape(-1))
    torch.testing.assert_close(score, expected.reshape(-1))


def test_similarity_edges_are_link_edges_scored_by_cosine():
    points, labels = _blobs()
    k = 5
    src, dst, score = similarity_edges(points, k)
    ref_src, ref_dst, _ = link_edges(DistanceScorer(k), points, k)
    assert torch.equal(src, ref_src) and torch.equal(dst, ref_dst)
    expected = torch.nn.functional.cosine_similarity(points[src], points[dst], dim=1)
    torch.testing.assert_close(score, expected)
    # The same propagation clusters them: the blobs' kNN edges are all within a blob.
    predicted, _ = propagate_edges(points.shape[0], src, dst, score,
                                   **ClusterConfig(threshold=0.9, max_size=None).propagation_settings())
    assert clustering_metrics(labels.numpy(), predicted)["nmi"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k should be at most N - 1"):
        similarity_edges(points, points.shape[0])


def test_cluster_recovers_separated_blobs():
    points, labels = _blobs()
    config = ClusterConfig(k=6, threshold=0.5, max_size=20, step=0.1)
    predicted = cluster(DistanceScorer(6), points, config)
    metrics = clustering_metrics(labels.numpy(), predicted)
    assert metrics["num_clusters"] == 4
    assert metrics["nmi"] == pytest.approx(1.0)
    assert metrics["pairwise_f"] == pytest.approx(1.0)
    assert metrics["bcubed_f"] == pytest.approx(1.0)


def test_threshold_above_every_score_gives_singletons():
    points, labels = _blobs(per_class=4)
    predicted = cluster(DistanceScorer(3), points, ClusterConfig(k=3, threshold=1.01))
    assert len(np.unique(predicted)) == labels.numel()


def test_cluster_returns_propagation_info_and_warns_when_it_did_not_converge(caplog):
    # Before, cluster() dropped propagation's info: callers never learnt that components above
    # max_size remained after max_iter.
    points, _ = _blobs()
    config = ClusterConfig(k=6, threshold=0.0, max_size=5, step=0.01, max_iter=1)  # blobs of 8
    with caplog.at_level(logging.WARNING, logger="hdml_ext.cluster.run"):
        labels, info = cluster(DistanceScorer(6), points, config, return_info=True)
    assert not info["converged"] and info["num_oversized"] == 4 and info["iterations"] == 1
    assert info["knn"]["backend"] == "exact" and info["knn"]["params"]["sample_recall"] == 1.0
    assert info["knn"]["reason"].startswith("auto:")
    assert np.array_equal(labels, cluster(DistanceScorer(6), points, config))
    assert json.loads(json.dumps(info)) == info
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings and "did not converge: 4 clusters still hold more than max_size = 5" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hdml_ext.cluster.run"):
        _, info = cluster(DistanceScorer(6), points, ClusterConfig(k=6, max_size=20), return_info=True)
    assert info["converged"] and not caplog.records


def test_cluster_refuses_another_k_before_any_work(monkeypatch):
    # Before, ClusterConfig.k other than the model's ran the kNN work and failed after (or, with
    # a model that does not check, clustered graphs of the wrong size).
    points, _ = _blobs()
    monkeypatch.setattr("hdml_ext.cluster.scoring.build_fgraphs", lambda *a, **k: pytest.fail("kNN work ran"))
    with pytest.raises(ValueError, match=r"config\.k should be None or the model's k = 6 .*got 5"):
        cluster(DistanceScorer(6), points, ClusterConfig(k=5))


def test_max_size_splits_a_merged_component():
    # Two blobs joined by one strong edge: the joint component exceeds max_size and is re-split
    # at a higher threshold.
    src = torch.tensor([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 5])
    dst = torch.tensor([1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 6])
    score = torch.tensor([0.99] * 10 + [0.6])
    merged, _ = propagate_edges(12, src, dst, score,
                                **ClusterConfig(threshold=0.5, max_size=None).propagation_settings())
    split, _ = propagate_edges(12, src, dst, score,
                               **ClusterConfig(threshold=0.5, max_size=8, step=0.5).propagation_settings())
    assert len(np.unique(merged)) == 1
    np.testing.assert_array_equal(split, np.repeat([0, 1], 6))


def test_end_to_end_with_a_trained_feature_model():
    points, labels = _blobs(num_classes=3, per_class=6, dim=4, spread=1.0)
    torch.manual_seed(0)
    model = HDMLOnFeatures(4, k=4, gcn_dims=(16,))
    config = TrainConfig(
        epochs=2,
        lr=0.05,
        milestones=(),
        identities_per_batch=3,
        focus_per_identity=3,
        device="cpu",
        progress=False,
    )
    Trainer(model, points, labels, config).fit()
    predicted = cluster(model, points, ClusterConfig(threshold=0.5, max_size=None))
    assert predicted.shape == (labels.numel(),) and predicted.dtype == np.int64
    metrics = clustering_metrics(labels.numpy(), predicted)
    assert set(metrics) == {
        "nmi",
        "pairwise_precision",
        "pairwise_recall",
        "pairwise_f",
        "bcubed_precision",
        "bcubed_recall",
        "bcubed_f",
        "num_clusters",
    }
    assert 0.0 <= metrics["nmi"] <= 1.0


def test_error_k_too_large():
    points, _ = _blobs(num_classes=1, per_class=4)
    with pytest.raises(ValueError, match="k should be at most N - 1 = 3"):
        link_edges(DistanceScorer(4), points, 4)


def test_error_embeddings_not_2d():
    with pytest.raises(ValueError, match="embeddings should be 2-D"):
        link_edges(DistanceScorer(2), torch.zeros(5), 2)


def test_error_bad_batch_size():
    points, _ = _blobs()
    with pytest.raises(ValueError, match="batch_size should be >= 1"):
        link_edges(DistanceScorer(2), points, 2, batch_size=0)


def test_link_edges_takes_precomputed_fgraphs_or_table():
    points, _ = _blobs()
    k = 4
    graphs = build_fgraphs(points, 6, backend="faiss-flat")
    scorer = DistanceScorer(k)
    from_graphs = link_edges(scorer, points, k, batch_size=5, knn_idx=graphs)
    from_table = link_edges(scorer, points, k, batch_size=5, knn_idx=graphs.knn_idx)
    computed = link_edges(scorer, points, k, batch_size=5)
    for a, b, c in zip(from_graphs, from_table, computed):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(from_graphs[1], graphs.knn_idx[:, :k].reshape(-1))
    labels = cluster(scorer, points, ClusterConfig(k=k, max_size=None), knn=graphs)
    assert np.array_equal(labels, cluster(scorer, points, ClusterConfig(k=k, max_size=None)))
    with pytest.raises(ValueError, match=r"knn_idx should be \[N, >= k\] = \[32, >= 4\], got \(32, 3\)"):
        link_edges(scorer, points, k, knn_idx=graphs.knn_idx[:, :3])
    with pytest.raises(TypeError, match=r"knn_idx should have dtype torch\.int64"):
        link_edges(scorer, points, k, knn_idx=graphs.knn_idx.int())


def test_similarity_edges_take_the_same_neighbour_tables_as_link_edges():
    points, _ = _blobs()
    k = 4
    graphs = build_fgraphs(points, 6, backend="faiss-flat")
    from_graphs = similarity_edges(points, k, knn_idx=graphs)
    from_table = similarity_edges(points, k, knn_idx=graphs.knn_idx)
    for a, b in zip(from_graphs, from_table):
        assert torch.equal(a, b)
    assert torch.equal(from_graphs[1], graphs.knn_idx[:, :k].reshape(-1))
    with pytest.raises(ValueError, match=r"knn_idx should be \[N, >= k\] = \[32, >= 4\], got \(32, 3\)"):
        similarity_edges(points, k, knn_idx=graphs.knn_idx[:, :3])


def test_cluster_config_defaults_are_propagation_defaults():
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(propagate_edges).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert ClusterConfig().propagation_settings() == defaults
    assert defaults == {"threshold": 0.5, "max_size": 300, "step": 0.05, "max_iter": 20}
