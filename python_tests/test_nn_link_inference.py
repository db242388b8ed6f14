"""hdml_ext.nn.link_inference: `link_scores_of_nodes` by the fused fgraph_scores kernel equals the
module path (RE-GCN and edge head as torch modules) for every option of the link models, and
the module path is kept wherever the kernel does not apply."""

from __future__ import annotations

import pytest
import torch

from hdml_ext.graph import build_fgraphs
from hdml_ext.nn import HDMLOnFeatures
from hdml_ext.nn.link_inference import folded_attention, fused_link_scores, module_path, scoring_weights

NUM_ROWS, DIM, K = 90, 12, 6


def _model(**options) -> HDMLOnFeatures:
    """A small model in eval mode whose BatchNorms hold non-trivial running statistics."""
    torch.manual_seed(0)
    model = HDMLOnFeatures(DIM, k=K, gcn_dims=options.pop("gcn_dims", (24, 16)), **options)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.2)
    return model.eval()


def _data() -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(NUM_ROWS, DIM, generator=gen)
    graphs = build_fgraphs(table, K, backend="exact")
    starts = range(0, NUM_ROWS, 32)
    batches = [graphs.batch(torch.arange(start, min(start + 32, NUM_ROWS))) for start in starts]
    return table, batches


def _both(model, table, batches, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        fused = torch.cat(list(model.link_scores_of_nodes(table, batches, **kwargs)))
        with module_path():
            modules = torch.cat(list(model.link_scores_of_nodes(table, batches, **kwargs)))
    return fused, modules


OPTIONS = [
    {},
    {"edge_input": "relative"},
    {"edge_input": "pair", "attention": False},
    {"edge_input": "relative_cosine", "relative_input": True},
    {"cosine_prior": True, "overlap_prior": True},
    {"relative_input": True, "cosine_prior": True, "gcn_dims": (20, 16, 8)},
]


def _name(options: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in options.items()) or "paper"


@pytest.mark.parametrize("options", OPTIONS, ids=_name)
def test_fused_equals_modules(options):
    model = _model(**options)
    table, batches = _data()
    with torch.no_grad():
        assert fused_link_scores(model, table, batches, 1 << 30) is not None  # the kernel applies
    fused, modules = _both(model, table, batches)
    assert fused.shape == (NUM_ROWS, K)
    assert fused.dtype == modules.dtype == torch.float32
    torch.testing.assert_close(fused, modules, rtol=0, atol=2e-6)
    assert fused.std() > 1e-3  # the scores vary: the comparison is not between constants


def test_fused_equals_graph_by_graph_scores():
    """Against `link_scores` on gathered rows, the projection-per-member path."""
    model = _model(cosine_prior=True, overlap_prior=True)
    table, batches = _data()
    with torch.no_grad():
        fused = torch.cat(list(model.link_scores_of_nodes(table, batches)))
        per_graph = torch.cat([model.link_scores(table[nodes], adj) for nodes, adj in batches])
    torch.testing.assert_close(fused, per_graph, rtol=0, atol=2e-6)


def test_memory_bound_path_projects_each_batch():
    """With no room for the whole projected table, each batch projects its graphs' distinct rows."""
    model = _model(edge_input="relative_cosine", overlap_prior=True)
    table, batches = _data()
    fused, modules = _both(model, table, batches, max_projected_bytes=0)
    torch.testing.assert_close(fused, modules, rtol=0, atol=2e-6)


def test_folded_attention_equals_batchnorm_then_fc():
    attention = _model().regcn.layers[0].attention
    z = torch.randn(40, attention.dim)
    weight, bias = folded_attention(attention)
    with torch.no_grad():
        torch.testing.assert_close(z @ weight.T + bias, attention.fc(attention.bn(z)), rtol=1e-5, atol=1e-5)


def test_module_path_kept_where_the_kernel_does_not_apply():
    """Grad mode on (the scores must be differentiable), training mode (BatchNorm uses batch
    statistics), a BatchNorm without running statistics, and float64 rows (whose module-path
    scores `link_scores` reproduces bit for bit)."""
    model = _model()
    table, batches = _data()
    scores = next(iter(model.link_scores_of_nodes(table, batches)))
    assert scores.requires_grad

    model.train()
    with torch.no_grad():
        train_scores = next(iter(model.link_scores_of_nodes(table, batches)))
        with module_path():
            expected = next(iter(model.link_scores_of_nodes(table, batches)))
    torch.testing.assert_close(train_scores, expected)

    untracked = _model()
    untracked.regcn.layers[0].attention.bn.running_mean = None
    untracked.regcn.layers[0].attention.bn.running_var = None
    untracked.regcn.layers[0].attention.bn.track_running_stats = False
    assert scoring_weights(untracked, torch.float32) is None
    with torch.no_grad():
        assert fused_link_scores(untracked, table, batches, 1 << 30) is None
    fused, modules = _both(untracked, table, batches)
    torch.testing.assert_close(fused, modules)

    with torch.no_grad():
        assert fused_link_scores(model.eval().double(), table.double(), batches, 1 << 30) is None


def test_scoring_weights_layout():
    model = _model(edge_input="pair", cosine_prior=True, gcn_dims=(20, 16, 8))
    weights = scoring_weights(model, torch.float64)
    assert [tuple(w.shape) for w in weights.weights] == [(32, 20), (16, 16)]
    assert [tuple(b.shape) for b in weights.biases] == [(20,), (16,), (8,)]
    assert [tuple(a.shape) for a in weights.attention] == [(20, 20), (20,), (16, 16), (16,), (8, 8), (8,)]
    assert [tuple(h.shape) for h in weights.head] == [(8, 24), (8,), (8,), (8,), (1,)]
    assert all(t.dtype == torch.float64 for t in (*weights.weights, *weights.head))
    assert weights.edge_input == "pair" and weights.cosine_prior == pytest.approx((10.0, -5.0))
