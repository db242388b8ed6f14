"""hdml_ext.cluster.scoring: the batch link_edges sizes for its device, the projection budget it
gives a link model, and the fused kernel under `hdml cluster`'s scoring."""

from __future__ import annotations

import pytest
import torch

from hdml_ext.cluster import link_edges
from hdml_ext.cluster import scoring as scoring_module
from hdml_ext.cluster.scoring import CPU_BATCH, GPU_BATCH_RANGE, locality_order, scoring_batch_size
from hdml_ext.engine.settings import Settings, SettingsError, load_settings
from hdml_ext.graph import build_fgraphs
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.nn.link_inference import module_path


def _features(num_rows: int = 70, dim: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(num_rows, dim, generator=torch.Generator().manual_seed(seed))


def _model(k: int = 5) -> HDMLOnFeatures:
    torch.manual_seed(0)
    return HDMLOnFeatures(10, k=k, gcn_dims=(16, 8), cosine_prior=True, overlap_prior=True).eval()


def test_cpu_batch_size():
    assert scoring_batch_size(_model(), torch.device("cpu"), 5) == CPU_BATCH


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU present: sizing reads the GPU's free memory")
def test_gpu_batch_size_fits_free_memory():
    size = scoring_batch_size(_model(), torch.device("cuda"), 5)
    assert GPU_BATCH_RANGE[0] <= size <= GPU_BATCH_RANGE[1] and size % 256 == 0


def test_default_batch_equals_small_batches():
    """batch_size=None (CPU_BATCH) and batches of 7 give the same edges and scores."""
    features, model = _features(), _model()
    src, dst, score = link_edges(model, features, 5)
    src7, dst7, score7 = link_edges(model, features, 5, batch_size=7)
    assert torch.equal(src, src7) and torch.equal(dst, dst7)
    torch.testing.assert_close(score, score7, rtol=0, atol=1e-6)


def test_fused_scores_equal_module_scores():
    features, model = _features(), _model()
    _, _, fused = link_edges(model, features, 5, batch_size=16)
    with module_path():
        _, _, modules = link_edges(model, features, 5, batch_size=16)
    torch.testing.assert_close(fused, modules, rtol=0, atol=2e-6)
    assert model.training is False


def test_link_model_gets_the_clustering_projection_budget(monkeypatch):
    """A link model holds the whole projected table up to MAX_PROJECTED_BYTES; past it (budget
    shrunk here to fewer bytes than the table takes) each batch projects its own rows, with
    the same scores."""
    features, model = _features(), _model()
    _, _, whole = link_edges(model, features, 5, batch_size=16)
    monkeypatch.setattr(scoring_module, "MAX_PROJECTED_BYTES", 100)
    calls = []
    original = model.regcn.project
    monkeypatch.setattr(model.regcn, "project", lambda table: calls.append(table.shape[0]) or original(table))
    _, _, by_batch = link_edges(model, features, 5, batch_size=16)
    assert len(calls) == 5 and max(calls) < features.shape[0]  # one projection per batch of 16
    torch.testing.assert_close(by_batch, whole, rtol=0, atol=1e-6)


def test_cluster_batch_size_setting():
    assert load_settings(Settings).cluster.batch_size is None
    assert load_settings(Settings, overrides=["cluster.batch_size=4096"]).cluster.batch_size == 4096
    with pytest.raises(SettingsError, match="batch_size"):
        load_settings(Settings, overrides=["cluster.batch_size=0"])


def test_locality_order_groups_clusters():
    """A permutation of the foci in which consecutive F-Graphs of clustered rows (shuffled
    clusters of 10) share more nodes than in index order."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.randperm(200, generator=gen) % 20
    rows = 20.0 * torch.randn(20, 8, generator=gen)[labels] + torch.randn(200, 8, generator=gen)
    knn_idx = build_fgraphs(rows, 5, backend="exact").knn_idx
    order = locality_order(knn_idx)
    assert torch.equal(order.sort().values, torch.arange(200))

    def distinct_per_group(focus: torch.Tensor) -> float:
        groups = [torch.cat([f, knn_idx[f].reshape(-1)]).unique().numel() for f in focus.split(10)]
        return sum(groups) / len(groups)

    assert distinct_per_group(order) < 0.5 * distinct_per_group(torch.arange(200))
