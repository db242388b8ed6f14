"""hdml_ext.nn.HDML (the joint model) and HDMLOnFeatures (RE-GCN + edge head on given features)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad, clustered_features, knn_fgraphs

from hdml_ext.nn import HDML, HDMLOnFeatures, HDMLOutput


def _tiny(**kwargs) -> HDML:
    config = {"backbone": "resnet18", "k": 4, "gcn_dims": (32, 16)} | kwargs
    return HDML(5, **config)


def _batch(num_images: int = 8, num_graphs: int = 2, k: int = 4, hw: tuple[int, int] = (64, 32),
           seed: int = 0):
    """Images [U, 3, H, W], labels [U], nodes [B, k+1] (distinct members, focus first), adj."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, 3, *hw, generator=gen)
    labels = torch.arange(num_images) % 3
    nodes = torch.stack([torch.randperm(num_images, generator=gen)[:k + 1] for _ in range(num_graphs)])
    adj = torch.rand(num_graphs, k + 1, k + 1, generator=gen) < 0.4
    adj = (adj | adj.transpose(1, 2)) & ~torch.eye(k + 1, dtype=torch.bool)
    adj[:, 0, 1:] = adj[:, 1:, 0] = True
    return images, labels, nodes, adj


def test_paper_default_size_forward_and_backward():
    torch.manual_seed(0)
    model = HDML(10)  # resnet50, 1536-d, RE-GCN 1536-1536-512-256, k = 50
    assert model.out_dim == 1536 and model.k == 50
    images = torch.randn(8, 3, 64, 32)
    # 2 graphs of 51 nodes share 8 images
    nodes = torch.cat([torch.tensor([[0], [5]]), torch.randint(0, 8, (2, 50))], dim=1)
    adj = torch.rand(2, 51, 51) < 0.2
    out = model(images, nodes, adj)
    assert isinstance(out, HDMLOutput)
    assert out.embeddings.shape == (8, 1536)
    assert out.node_logits.shape == (8, 10)
    assert out.link_logits.shape == (2, 50, 2)
    total, parts = model.loss(out, torch.arange(8) % 10, nodes)
    total.backward()
    assert set(parts) == {"node", "link"} and torch.isfinite(total)
    assert_every_parameter_has_a_finite_grad(model)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradient_reaches_every_parameter(device, mode):
    torch.manual_seed(0)
    model = _tiny().to(device).train(mode == "train")
    images, labels, nodes, adj = (t.to(device) for t in _batch())
    total, _ = model.loss(model(images, nodes, adj), labels, nodes)
    total.backward()
    assert_every_parameter_has_a_finite_grad(model)


def test_shared_images_forward_equals_the_naive_per_graph_forward():
    torch.manual_seed(0)
    model = _tiny().eval()
    images, _, nodes, adj = _batch(num_images=8, num_graphs=3)
    with torch.no_grad():
        out = model(images, nodes, adj)
        for b in range(nodes.shape[0]):
            members = torch.stack([model.hanet(images[i][None])[0] for i in nodes[b]])  # one image at a time
            torch.testing.assert_close(out.embeddings[nodes[b]], members, rtol=1e-4, atol=1e-5)
            naive = model.edge_head(model.regcn(members[None], adj[b][None])[:, 1:])[0]
            torch.testing.assert_close(out.link_logits[b], naive, rtol=1e-4, atol=1e-5)


def test_embed_and_link_scores_match_forward_in_eval_mode():
    torch.manual_seed(0)
    model = _tiny().eval()
    images, _, nodes, adj = _batch()
    with torch.no_grad():
        out = model(images, nodes, adj)
        z = model.embed(images)
        torch.testing.assert_close(z, out.embeddings)
        scores = model.link_scores(z[nodes], adj)
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores, torch.softmax(out.link_logits, dim=-1)[..., 1])


def test_loss_targets_are_same_identity_as_the_focus():
    model = _tiny(node_weight=0.5, link_weight=2.0)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    nodes = torch.tensor([[0, 2, 1, 5, 3], [4, 1, 0, 3, 2]])
    gen = torch.Generator().manual_seed(0)
    out = HDMLOutput(torch.zeros(6, 8), torch.randn(6, 5, generator=gen), torch.randn(2, 4, 2, generator=gen))
    total, parts = model.loss(out, labels, nodes)
    targets = torch.tensor([[1, 0, 1, 0], [1, 0, 0, 0]])
    expected_link = -torch.log_softmax(out.link_logits, -1).gather(-1, targets[..., None]).mean()
    expected_node = -torch.log_softmax(out.node_logits, -1)[torch.arange(6), labels].mean()
    torch.testing.assert_close(parts["link"], expected_link)
    torch.testing.assert_close(parts["node"], expected_node)
    torch.testing.assert_close(total, 0.5 * expected_node + 2.0 * expected_link)


def test_overfits_a_tiny_image_problem():
    # 4 identities x 4 images at 32x16; each image is a focus with its 3 same-identity images
    # and 4 others; edges join same-identity members plus some noise.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    num_ids, per_id, k = 4, 4, 7
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    images = torch.randn(num_ids, 3, 32, 16, generator=gen)[labels]
    images = images + 0.5 * torch.randn(16, 3, 32, 16, generator=gen)
    rows = []
    for focus in range(16):
        same = [j for j in range(16) if labels[j] == labels[focus] and j != focus]
        others = torch.nonzero(labels != labels[focus]).flatten()
        picked = others[torch.randperm(len(others), generator=gen)[:k - len(same)]]
        rows.append([focus, *same, *picked.tolist()])
    nodes = torch.tensor(rows)
    graph_labels = labels[nodes]
    noise = torch.rand(16, k + 1, k + 1, generator=gen) < 0.2
    adj = (graph_labels[:, :, None] == graph_labels[:, None, :]) | noise
    adj = (adj | adj.transpose(1, 2)) & ~torch.eye(k + 1, dtype=torch.bool)
    model = HDML(num_ids, backbone="resnet18", k=k, gcn_dims=(64, 32))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(15):
        total, parts = model.loss(model(images, nodes, adj), labels, nodes)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        history.append({name: value.item() for name, value in parts.items()})
    assert history[-1]["node"] < 0.3 * history[0]["node"]
    assert history[-1]["link"] < 0.5 * history[0]["link"]


def test_ablation_switches_are_constructor_arguments():
    model = HDML(3, backbone="resnet18", k=10, use_nfa=False, nfe_stages=(3, 4), gcn_dims=(64, 32, 16),
                 attention=False)
    assert model.hanet.nfa is None
    assert model.out_dim == 1024 and model.node_head.in_dim == 1024 and model.regcn.in_dim == 1024
    assert len(model.regcn.layers) == 3 and all(layer.attention is None for layer in model.regcn.layers)
    assert model.edge_head.dim == 16
    images, _, nodes, adj = _batch(num_images=12, num_graphs=2, k=10)
    out = model(images, nodes, adj)
    assert out.link_logits.shape == (2, 10, 2) and out.embeddings.shape == (12, 1024)


def test_configs_written_before_the_link_options_still_load():
    old = {"num_classes": 5, "backbone": "resnet18", "k": 4, "use_nfa": True, "nfe_stages": [2, 3, 4],
           "gcn_dims": [32, 16], "attention": True, "node_weight": 1.0, "link_weight": 1.0,
           "lo": 0.3, "hi": 0.9}
    config = HDML.from_config(old).to_config()
    assert config == old | {"edge_input": "node", "relative_input": False, "balanced_link_loss": False,
                           "cosine_prior": False, "overlap_prior": False}
    old_features = {"in_dim": 12, "k": 5, "gcn_dims": [16, 8], "attention": True}
    assert HDMLOnFeatures.from_config(old_features).to_config()["edge_input"] == "node"


def test_config_round_trip():
    torch.manual_seed(0)
    model = _tiny(use_nfa=False, nfe_stages=(2, 4), attention=False, node_weight=0.3, lo=0.2, hi=0.8).eval()
    config = json.loads(json.dumps(model.to_config()))
    assert config["nfe_stages"] == [2, 4] and config["gcn_dims"] == [32, 16] and config["k"] == 4
    rebuilt = HDML.from_config(config).eval()
    assert rebuilt.to_config() == model.to_config()
    rebuilt.load_state_dict(model.state_dict())
    images, _, nodes, adj = _batch()
    with torch.no_grad():
        for a, b in zip(model(images, nodes, adj), rebuilt(images, nodes, adj)):
            torch.testing.assert_close(a, b)


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="config has keys HDML does not take: depth"):
        HDML.from_config({"num_classes": 3, "depth": 2})


def test_compiled_forward_matches_eager():
    torch.manual_seed(0)
    model = _tiny().eval()
    images, _, nodes, adj = _batch()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        for a, b in zip(compiled(images, nodes, adj), model(images, nodes, adj)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inductor_compiled_training_step_matches_eager():
    torch.manual_seed(0)
    model = _tiny()
    images, labels, nodes, adj = _batch(hw=(32, 16))
    compiled = torch.compile(model)
    eager_total, _ = model.loss(model(images, nodes, adj), labels, nodes)
    total, _ = model.loss(compiled(images, nodes, adj), labels, nodes)
    total.backward()
    torch.testing.assert_close(total, eager_total, rtol=1e-4, atol=1e-4)
    assert_every_parameter_has_a_finite_grad(model)


def test_runs_under_cpu_autocast_bfloat16():
    torch.manual_seed(0)
    model = _tiny()
    images, labels, nodes, adj = _batch(num_images=6, hw=(128, 64))  # see test_nn_hanet: not 64x32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, nodes, adj)
        total, _ = model.loss(out, labels, nodes)
    total.backward()
    assert out.link_logits.dtype == torch.bfloat16 and torch.isfinite(total)
    assert_every_parameter_has_a_finite_grad(model)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU present")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_runs_under_cuda_autocast(dtype):
    torch.manual_seed(0)
    model = _tiny().cuda()
    images, labels, nodes, adj = (t.cuda() for t in _batch())
    with torch.autocast("cuda", dtype=dtype):
        out = model(images, nodes, adj)
        total, _ = model.loss(out, labels, nodes)
    total.backward()
    assert out.link_logits.dtype == dtype and torch.isfinite(total)
    assert_every_parameter_has_a_finite_grad(model)


@pytest.fixture(scope="module")
def tiny_model() -> HDML:
    return _tiny().eval()


@pytest.mark.parametrize("shape", [(8, 1, 64, 32), (8, 3, 64), (3, 64, 32)])
def test_rejects_images_of_the_wrong_shape(tiny_model, shape):
    _, _, nodes, adj = _batch()
    with pytest.raises(ValueError, match=r"images should be \[U, 3, H, W\]"):
        tiny_model(torch.randn(shape), nodes, adj)


def test_rejects_nodes_that_are_not_int64(tiny_model):
    images, _, nodes, adj = _batch()
    with pytest.raises(TypeError, match=r"nodes should have dtype torch\.int64"):
        tiny_model(images, nodes.int(), adj)


def test_rejects_nodes_of_the_wrong_width(tiny_model):
    images, _, nodes, adj = _batch()
    with pytest.raises(ValueError, match=r"nodes should be \[B, k\+1\] = \[B, 5\] \(k = 4\)"):
        tiny_model(images, nodes[:, :4], adj)


@pytest.mark.parametrize("bad", [8, -1])
def test_rejects_nodes_out_of_the_image_batch(tiny_model, bad):
    images, _, nodes, adj = _batch()
    nodes[1, 2] = bad
    with pytest.raises(ValueError, match=r"nodes should index the 8 images, i.e. lie in \[0, 8\)"):
        tiny_model(images, nodes, adj)


def test_rejects_nodes_on_another_device(tiny_model):
    images, _, nodes, adj = _batch()
    with pytest.raises(ValueError, match="nodes should be on cpu like the images, got meta"):
        tiny_model(images, nodes.to("meta"), adj)


def test_rejects_adjacency_on_another_device(tiny_model):
    images, _, nodes, adj = _batch()
    with pytest.raises(ValueError, match="adj should be on cpu"):
        tiny_model(images, nodes, adj.to("meta"))


@pytest.mark.parametrize("shape", [(2, 5, 4), (3, 5, 5), (2, 6, 6), (5, 5)])
def test_rejects_adjacency_of_the_wrong_shape(tiny_model, shape):
    images, _, nodes, _ = _batch()
    with pytest.raises(ValueError, match=r"adj should be \[B, k\+1, k\+1\] = \[2, 5, 5\]"):
        tiny_model(images, nodes, torch.ones(shape, dtype=torch.bool))


def test_rejects_labels_of_the_wrong_length(tiny_model):
    images, labels, nodes, adj = _batch()
    out = tiny_model(images, nodes, adj)
    with pytest.raises(ValueError, match=r"labels should have shape \[8\]"):
        tiny_model.loss(out, labels[:7], nodes)


def test_rejects_float_labels(tiny_model):
    images, labels, nodes, adj = _batch()
    out = tiny_model(images, nodes, adj)
    with pytest.raises(TypeError, match="labels should be an integer tensor"):
        tiny_model.loss(out, labels.float(), nodes)


def test_rejects_loss_nodes_of_another_batch(tiny_model):
    images, labels, nodes, adj = _batch()
    out = tiny_model(images, nodes, adj)
    with pytest.raises(ValueError, match="nodes should have one row per F-Graph"):
        tiny_model.loss(out, labels, nodes[:1])


def test_rejects_an_unknown_backbone():
    with pytest.raises(ValueError, match=r"backbone should be one of resnet18, .*resnet101"):
        HDML(3, backbone="resnet19")


def test_rejects_bad_nfe_stages():
    with pytest.raises(ValueError, match="nfe_stages"):
        HDML(3, backbone="resnet18", nfe_stages=(1, 5))


def test_rejects_empty_gcn_dims():
    with pytest.raises(ValueError, match="gcn_dims"):
        HDML(3, backbone="resnet18", gcn_dims=())


@pytest.mark.parametrize(("name", "value"), [("num_classes", 0), ("k", 0)])
def test_rejects_non_positive_sizes(name, value):
    kwargs = {"num_classes": 3, "backbone": "resnet18", name: value}
    with pytest.raises(ValueError, match=name):
        HDML(kwargs.pop("num_classes"), **kwargs)


def test_rejects_link_scores_of_the_wrong_width(tiny_model):
    with pytest.raises(ValueError, match=r"z should be \[B, n, 1536\]"):
        tiny_model.link_scores(torch.randn(2, 5, 512), torch.ones(2, 5, 5, dtype=torch.bool))


# HDMLOnFeatures: the graph half on given features (face clustering), same interface as HDML.


def _feature_batch(num_clusters: int = 3, per_cluster: int = 6, dim: int = 12, k: int = 5):
    """Features [U, dim], labels [U], and the F-Graphs of every row: nodes [U, k+1], adj."""
    features, labels = clustered_features(num_clusters, per_cluster, dim)
    nodes, adj = knn_fgraphs(features, k)
    return features, labels, nodes, adj


def test_on_features_paper_dims_shapes():
    model = HDMLOnFeatures(1536)
    assert model.input_kind == "features" and HDML.input_kind == "images"
    assert model.out_dim == 1536 and model.k == 50
    rows = torch.randn(60, 1536)
    nodes = torch.randint(0, 60, (2, 51))
    adj = torch.rand(2, 51, 51) < 0.2
    out = model(rows, nodes, adj)
    assert isinstance(out, HDMLOutput) and out.node_logits is None
    assert out.embeddings is rows and out.link_logits.shape == (2, 50, 2)
    assert model.link_scores(rows[nodes], adj).shape == (2, 50)


def test_on_features_overfits_clustered_features():
    torch.manual_seed(0)
    features, labels = clustered_features(6, 10, 16, spread=1.0)
    nodes, adj = knn_fgraphs(features, 8)
    model = HDMLOnFeatures(16, k=8, gcn_dims=(32, 16))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss, parts = model.loss(model(features, nodes, adj), labels, nodes)
        assert set(parts) == {"link"} and parts["link"] is loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("device", DEVICES)
def test_on_features_gradient_and_scores(device):
    torch.manual_seed(0)
    features, labels, nodes, adj = (t.to(device) for t in _feature_batch())
    model = HDMLOnFeatures(12, k=5, gcn_dims=(16, 8)).to(device)
    out = model(features, nodes, adj)
    model.loss(out, labels, nodes)[0].backward()
    assert_every_parameter_has_a_finite_grad(model)
    scores = model.link_scores(features[nodes], adj)
    assert scores.shape == (18, 5) and ((scores >= 0) & (scores <= 1)).all()


def test_on_features_forward_equals_the_literal_per_graph_path():
    # The first projection runs once per distinct row: the same as running RE-GCN on rows[nodes].
    torch.manual_seed(0)
    features, _, nodes, adj = _feature_batch()
    model = HDMLOnFeatures(12, k=5, gcn_dims=(16, 8)).eval()
    with torch.no_grad():
        out = model(features, nodes, adj)
        literal = model.edge_head(model.regcn(features[nodes], adj)[:, 1:])
        torch.testing.assert_close(out.link_logits, literal)
        torch.testing.assert_close(model.link_scores(features[nodes], adj),
                                   torch.softmax(out.link_logits, dim=-1)[..., 1])


def test_on_features_loss_equals_hdml_link_loss():
    features, labels, nodes, adj = _feature_batch()
    model = HDMLOnFeatures(12, k=5, gcn_dims=(8,))
    out = model(features, nodes, adj)
    loss, _ = model.loss(out, labels, nodes)
    same = labels[nodes][:, 1:] == labels[nodes][:, :1]
    expected = -torch.log_softmax(out.link_logits, -1).gather(-1, same.long()[..., None]).mean()
    torch.testing.assert_close(loss, expected)


def test_on_features_embed_is_the_features_checked():
    model = HDMLOnFeatures(12, k=5, gcn_dims=(8,))
    rows = torch.randn(4, 12)
    assert model.embed(rows) is rows
    with pytest.raises(ValueError, match=r"rows should be \[U, 12\] features, got shape \(4, 10\)"):
        model.embed(torch.randn(4, 10))
    with pytest.raises(TypeError, match="rows should be a floating-point tensor"):
        model.embed(torch.zeros(4, 12, dtype=torch.int64))


def test_on_features_config_round_trip():
    model = HDMLOnFeatures(12, k=5, gcn_dims=(16, 8), attention=False)
    config = json.loads(json.dumps(model.to_config()))
    assert config == {"in_dim": 12, "k": 5, "gcn_dims": [16, 8], "attention": False, "edge_input": "node",
                      "relative_input": False, "balanced_link_loss": False, "cosine_prior": False,
                      "overlap_prior": False}
    assert HDMLOnFeatures.from_config(config).to_config() == config


@pytest.mark.parametrize(("cosine_prior", "overlap_prior"), [(False, False), (True, False), (True, True)])
def test_on_features_compiles_fullgraph(cosine_prior, overlap_prior):
    torch.manual_seed(0)
    model = HDMLOnFeatures(12, k=5, gcn_dims=(16, 8), cosine_prior=cosine_prior, overlap_prior=overlap_prior)
    model.eval()
    rows, nodes, adj = torch.randn(8, 12), torch.randint(0, 8, (3, 6)), torch.rand(3, 6, 6) < 0.5
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(rows, nodes, adj).link_logits, model(rows, nodes, adj).link_logits)


def test_on_features_rejects_adjacency_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"adj should be \[B, k\+1, k\+1\] = \[2, 6, 6\]"):
        HDMLOnFeatures(12, k=5)(torch.randn(8, 12), torch.zeros(2, 6, dtype=torch.int64),
                                torch.ones(2, 4, 4, dtype=torch.bool))


def test_on_features_rejects_features_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"rows should be \[U, 12\] features"):
        HDMLOnFeatures(12, k=5)(torch.randn(8, 10), torch.zeros(2, 6, dtype=torch.int64),
                                torch.ones(2, 6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"z should be \[B, n, 12\]"):
        HDMLOnFeatures(12, k=5).link_scores(torch.randn(2, 6, 10), torch.ones(2, 6, 6, dtype=torch.bool))


def test_on_features_rejects_nodes_out_of_the_rows():
    with pytest.raises(ValueError, match=r"nodes should index the 8 images, i.e. lie in \[0, 8\)"):
        HDMLOnFeatures(12, k=5)(torch.randn(8, 12), torch.full((2, 6), 8),
                                torch.ones(2, 6, 6, dtype=torch.bool))


def test_on_features_rejects_labels_of_the_wrong_shape():
    features, labels, nodes, adj = _feature_batch()
    model = HDMLOnFeatures(12, k=5, gcn_dims=(8,))
    out = model(features, nodes, adj)
    with pytest.raises(ValueError, match=r"labels should have shape \[18\]"):
        model.loss(out, labels[:5], nodes)


def test_on_features_rejects_loss_nodes_of_another_batch():
    features, labels, nodes, adj = _feature_batch()
    model = HDMLOnFeatures(12, k=5, gcn_dims=(8,))
    out = model(features, nodes, adj)
    with pytest.raises(ValueError, match="nodes should have one row per F-Graph"):
        model.loss(out, labels, nodes[:2])


def test_on_features_from_config_needs_in_dim():
    with pytest.raises(ValueError, match="config should give in_dim"):
        HDMLOnFeatures.from_config({"k": 5})
