"""The graph half both models share (hdml_ext.nn.base, .loss, .priors): focus-aware edge inputs, the relative
GCN input, the class-balanced link loss, the cosine and overlap priors, directed or symmetric
adjacency, and their configs."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import torch
from nn_helpers import assert_every_parameter_has_a_finite_grad, clustered_features, knn_fgraphs

from hdml_ext.graph import FGraphs
from hdml_ext.nn import EDGE_INPUTS, HDML, HDMLOnFeatures, HDMLOutput, link_loss
from hdml_ext.nn.base import undirected
from hdml_ext.nn.priors import COSINE_PRIOR_INIT, OVERLAP_PRIOR_INIT, neighbour_overlap
from hdml_ext.ops import reference


def _graphs(dim: int = 6, k: int = 3, dtype: torch.dtype = torch.float32):
    features, labels = clustered_features(3, 4, dim)
    nodes, adj = knn_fgraphs(features, k)
    return features.to(dtype), labels, nodes, adj


@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
@pytest.mark.parametrize("relative_input", [False, True])
def test_every_edge_input_shapes_and_gradients(edge_input, relative_input):
    torch.manual_seed(0)
    features, labels, nodes, adj = _graphs()
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input=edge_input, relative_input=relative_input)
    assert model.edge_head.fc1.in_features == {"pair": 15, "relative_cosine": 6}.get(edge_input, 5)
    out = model(features, nodes, adj)
    assert out.link_logits.shape == (12, 3, 2)
    model.loss(out, labels, nodes)[0].backward()
    assert_every_parameter_has_a_finite_grad(model)
    scores = model.link_scores(features[nodes], adj)
    assert scores.shape == (12, 3) and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
def test_every_edge_input_passes_gradcheck(edge_input):
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dim=4, dtype=torch.float64)
    model = HDMLOnFeatures(4, k=3, gcn_dims=(5,), attention=False, edge_input=edge_input,
                           relative_input=True).double()
    rows = features[:8].clone().requires_grad_()
    nodes = nodes[nodes.max(dim=1).values < 8][:3]
    assert nodes.shape[0] >= 1
    adj = adj[: nodes.shape[0]]
    assert torch.autograd.gradcheck(lambda r: model(r, nodes, adj).link_logits, (rows,))


def test_edge_inputs_read_the_focus():
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dtype=torch.float64)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), edge_input="pair").double().eval()
    with torch.no_grad():
        h = model.regcn(features[nodes], adj)
        focus = h[:, :1].expand(-1, 3, -1)
        expected = model.edge_head(torch.cat([h[:, 1:], focus, (h[:, 1:] - focus).abs()], dim=-1))
        torch.testing.assert_close(model(features, nodes, adj).link_logits, expected)
        model.edge_input = "relative"
        model.edge_head.fc1 = torch.nn.Linear(5, 5).double()
        expected = model.edge_head(h[:, 1:] - h[:, :1])
        torch.testing.assert_close(model(features, nodes, adj).link_logits, expected)


def test_relative_cosine_adds_the_cosine_of_the_inputs():
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dtype=torch.float64)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), edge_input="relative_cosine").double().eval()
    with torch.no_grad():
        h = model.regcn(features[nodes], adj)
        z = features[nodes]
        cosine = torch.nn.functional.cosine_similarity(z[:, 1:], z[:, :1].expand(-1, 3, -1), dim=-1)
        expected = model.edge_head(torch.cat([h[:, 1:] - h[:, :1], cosine[..., None]], dim=-1))
        torch.testing.assert_close(model(features, nodes, adj).link_logits, expected)
        torch.testing.assert_close(model.link_scores(z, adj), torch.softmax(expected.float(), dim=-1)[..., 1])


@pytest.mark.parametrize("attention", [False, True])
def test_relative_input_equals_subtracting_the_focus_by_hand(attention):
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dtype=torch.float64)
    options = {"k": 3, "gcn_dims": (8, 5), "attention": attention}
    relative = HDMLOnFeatures(6, relative_input=True, **options).double().eval()
    plain = HDMLOnFeatures(6, **options).double().eval()
    plain.load_state_dict(relative.state_dict())
    with torch.no_grad():
        z = features[nodes]
        by_hand = plain.edge_head(plain.regcn(z - z[:, :1], adj)[:, 1:])  # the literal path
        assert relative.regcn.layers[0].bias.abs().min() > 0  # the bias takes part
        torch.testing.assert_close(relative(features, nodes, adj).link_logits, by_hand)
        expected_scores = torch.softmax(by_hand.float(), dim=-1)[..., 1]
        torch.testing.assert_close(relative.link_scores(z, adj), expected_scores)


def test_relative_input_on_the_image_model():
    torch.manual_seed(0)
    model = HDML(3, backbone="resnet18", k=3, nfe_stages=(2,), gcn_dims=(8,), relative_input=True,
                 edge_input="relative").eval()
    images = torch.randn(5, 3, 32, 16)
    nodes = torch.tensor([[0, 1, 2, 3], [4, 0, 2, 1]])
    adj = torch.ones(2, 4, 4, dtype=torch.bool) & ~torch.eye(4, dtype=torch.bool)
    with torch.no_grad():
        out = model(images, nodes, adj)
        z = out.embeddings[nodes]
        torch.testing.assert_close(model.link_scores(z, adj), torch.softmax(out.link_logits, dim=-1)[..., 1],
                                   rtol=1e-4, atol=1e-5)


def test_balanced_link_loss_against_a_hand_computation():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, generator=gen)
    same = torch.tensor([[True, False, False], [False, False, True]])
    per_edge = -torch.log_softmax(logits, -1).gather(-1, same.long()[..., None])[..., 0]
    expected = 0.5 * per_edge[same].mean() + 0.5 * per_edge[~same].mean()
    torch.testing.assert_close(link_loss(logits, same, balanced=True), expected)
    torch.testing.assert_close(link_loss(logits, same), per_edge.mean())
    # one class alone: its mean
    torch.testing.assert_close(link_loss(logits, torch.ones_like(same), balanced=True),
                               -torch.log_softmax(logits, -1)[..., 1].mean())


def test_balanced_link_loss_is_the_models_loss():
    features, _, nodes, adj = _graphs()
    labels = torch.arange(12) % 3  # not the clusters: the graphs hold both kinds of edges
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), balanced_link_loss=True)
    out = model(features, nodes, adj)
    graph_labels = labels[nodes]
    same = graph_labels[:, 1:] == graph_labels[:, :1]
    assert same.any() and (~same).any()
    expected = link_loss(out.link_logits, same, balanced=True)
    torch.testing.assert_close(model.loss(out, labels, nodes)[0], expected)
    image_model = HDML(3, backbone="resnet18", k=3, nfe_stages=(2,), gcn_dims=(8,), balanced_link_loss=True)
    fake = HDMLOutput(torch.zeros(12, 512), torch.zeros(12, 3), out.link_logits)
    torch.testing.assert_close(image_model.loss(fake, labels, nodes)[1]["link"], expected)


def _cosines(features: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
    unit = torch.nn.functional.normalize(features[nodes], dim=-1)
    return (unit[:, 1:] * unit[:, :1]).sum(dim=-1)


@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
def test_cosine_prior_adds_scaled_cosine_to_the_same_identity_logit(edge_input):
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dtype=torch.float64)
    plain = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input=edge_input).double().eval()
    prior = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input=edge_input, cosine_prior=True).double().eval()
    assert prior.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["cosine_prior"]
    assert prior.cosine_prior.tolist() == list(COSINE_PRIOR_INIT)
    with torch.no_grad():
        prior.cosine_prior.copy_(torch.tensor([3.0, -0.5]))
        difference = prior(features, nodes, adj).link_logits - plain(features, nodes, adj).link_logits
    torch.testing.assert_close(difference[..., 0], torch.zeros(12, 3, dtype=torch.float64))
    torch.testing.assert_close(difference[..., 1], 3.0 * _cosines(features, nodes) - 0.5)


def test_cosine_prior_makes_an_untrained_head_rank_as_cosine():
    # A head that adds nothing (zeroed last layer) scores sigmoid(a cos + b): cosine's order.
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(dtype=torch.float64)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input="relative", cosine_prior=True).double().eval()
    with torch.no_grad():
        model.edge_head.fc2.weight.zero_()
        model.edge_head.fc2.bias.zero_()
        scores = model.link_scores(features[nodes], adj)
    scale, bias = COSINE_PRIOR_INIT
    torch.testing.assert_close(scores, torch.sigmoid(scale * _cosines(features, nodes) + bias).float())


def test_cosine_prior_learns_and_passes_gradcheck():
    torch.manual_seed(0)
    features, labels, nodes, adj = _graphs(dim=4, dtype=torch.float64)
    model = HDMLOnFeatures(4, k=3, gcn_dims=(5,), attention=False, edge_input="relative",
                           cosine_prior=True).double()
    model.loss(model(features, nodes, adj), labels, nodes)[0].backward()
    assert model.cosine_prior.grad is not None and model.cosine_prior.grad.abs().sum() > 0
    rows = features[:8].clone().requires_grad_()
    nodes = nodes[nodes.max(dim=1).values < 8][:3]
    adj = adj[: nodes.shape[0]]
    assert torch.autograd.gradcheck(lambda r: model(r, nodes, adj).link_logits, (rows,))


def _directed_graphs(k: int = 3, dtype: torch.dtype = torch.float64):
    """_graphs' features and nodes, with the directed adjacency FGraphs.batch gives, and the
    kNN table it comes from."""
    features, labels = clustered_features(3, 4, 6)
    dist = torch.cdist(features, features)
    dist.fill_diagonal_(float("inf"))
    knn_idx = dist.topk(k, dim=1, largest=False).indices
    nodes = reference.fgraph_nodes(knn_idx)
    return features.to(dtype), labels, nodes, reference.fgraph_adjacency(knn_idx, symmetric=False), knn_idx


def test_neighbour_overlap_counts_each_nodes_neighbours_inside_the_graph():
    _, _, nodes, adj, knn_idx = _directed_graphs(k=3)
    overlap = neighbour_overlap(adj)
    assert overlap.shape == (12, 3) and overlap.dtype == torch.float32
    for b in range(12):
        members = set(nodes[b].tolist())
        for i in range(1, 4):
            inside = sum(int(j) in members for j in knn_idx[nodes[b, i]])
            assert overlap[b, i - 1] == inside / 3
    symmetric = undirected(adj)
    assert torch.equal(symmetric, reference.fgraph_adjacency(knn_idx))
    assert torch.equal(undirected(symmetric), symmetric)
    weights = adj.double() * 0.5
    torch.testing.assert_close(undirected(weights), torch.maximum(weights, weights.transpose(1, 2)))


@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
@pytest.mark.parametrize("cosine_prior", [False, True])
def test_directed_and_symmetric_adjacency_give_the_same_graph_convolution(edge_input, cosine_prior):
    # The RE-GCN runs on the undirected graph either way: without the overlap prior the scores
    # are the same for the directed adjacency FGraphs.batch gives and its symmetric version.
    torch.manual_seed(0)
    features, _, nodes, adj, _ = _directed_graphs()
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input=edge_input, cosine_prior=cosine_prior).double()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(features, nodes, adj).link_logits,
                                   model(features, nodes, undirected(adj)).link_logits, rtol=0, atol=0)


@pytest.mark.parametrize("cosine_prior", [False, True])
def test_overlap_prior_adds_weighted_overlap_to_the_same_identity_logit(cosine_prior):
    torch.manual_seed(0)
    features, _, nodes, adj, _ = _directed_graphs()
    plain = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), cosine_prior=cosine_prior).double().eval()
    prior = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), cosine_prior=cosine_prior, overlap_prior=True)
    prior = prior.double().eval()
    assert prior.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["overlap_prior"]
    assert prior.overlap_prior.item() == OVERLAP_PRIOR_INIT
    with torch.no_grad():
        prior.overlap_prior.fill_(1.5)
        difference = prior(features, nodes, adj).link_logits - plain(features, nodes, adj).link_logits
        scores = prior.link_scores(features[nodes], adj)
        shared = torch.cat(list(prior.link_scores_of_nodes(features, _batches(nodes, adj, 5))))
    torch.testing.assert_close(difference[..., 0], torch.zeros(12, 3, dtype=torch.float64))
    torch.testing.assert_close(difference[..., 1], 1.5 * neighbour_overlap(adj).double())
    torch.testing.assert_close(shared, scores)


@pytest.mark.parametrize("call", ["forward", "link_scores", "link_scores_of_nodes"])
def test_overlap_prior_refuses_the_symmetric_adjacency(call):
    # FGraphs.adjacency() defaults to symmetric=True; read by the overlap prior, each row would
    # count the node's degree instead of its own neighbours inside the graph.
    torch.manual_seed(0)
    features = torch.randn(12, 6, dtype=torch.float64)
    graphs = FGraphs(reference.knn(features, 3)[1])
    nodes, directed = graphs.batch(torch.arange(12))
    symmetric = graphs.adjacency()
    assert torch.equal(symmetric, undirected(directed)) and not torch.equal(symmetric, directed)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), overlap_prior=True).double().eval()
    plain = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5)).double().eval()
    calls = {
        "forward": lambda m, adj: m(features, nodes, adj),
        "link_scores": lambda m, adj: m.link_scores(features[nodes], adj),
        "link_scores_of_nodes": lambda m, adj: list(m.link_scores_of_nodes(features,
                                                                            _batches(nodes, adj, 5))),
    }
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"adj should be the directed F-Graph adjacency .*overlap_prior"):
            calls[call](model, symmetric)
        calls[call](model, directed)
        calls[call](plain, symmetric)


def test_overlap_prior_takes_complete_graphs_in_either_form():
    # A complete F-Graph is symmetric in its directed form too, and both forms give overlap 1.
    features = torch.randn(4, 6, dtype=torch.float64)
    knn_idx = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    graphs = FGraphs(knn_idx)
    nodes, adj = graphs.batch(torch.arange(4))
    assert torch.equal(adj, graphs.adjacency())
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), overlap_prior=True).double().eval()
    with torch.no_grad():
        assert model.link_scores(features[nodes], adj).shape == (4, 3)
    torch.testing.assert_close(neighbour_overlap(adj), torch.ones(4, 3))


def test_overlap_prior_learns_and_passes_gradcheck():
    torch.manual_seed(0)
    features, labels, nodes, adj, _ = _directed_graphs()
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), attention=False, overlap_prior=True).double()
    model.loss(model(features, nodes, adj), labels, nodes)[0].backward()
    assert model.overlap_prior.grad is not None and model.overlap_prior.grad.abs() > 0
    rows = features[:8].clone().requires_grad_()
    keep = nodes.max(dim=1).values < 8
    nodes, adj = nodes[keep][:3], adj[keep][:3]
    assert torch.autograd.gradcheck(lambda r: model(r, nodes, adj).link_logits, (rows,))


def test_link_options_config_round_trip():
    torch.manual_seed(0)
    options = {"edge_input": "pair", "relative_input": True, "balanced_link_loss": True, "cosine_prior": True,
               "overlap_prior": True}
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,), **options).eval()
    config = json.loads(json.dumps(model.to_config()))
    assert {key: config[key] for key in options} == options
    rebuilt = HDMLOnFeatures.from_config(config).eval()
    rebuilt.load_state_dict(model.state_dict())
    features, _, nodes, adj = _graphs()
    with torch.no_grad():
        expected = model(features, nodes, adj).link_logits
        torch.testing.assert_close(rebuilt(features, nodes, adj).link_logits, expected)
    image_config = HDML(3, backbone="resnet18", k=3, gcn_dims=(8,), **options).to_config()
    assert HDML.from_config(image_config).to_config() == image_config
    assert {key: image_config[key] for key in options} == options


def test_rejects_bad_link_options():
    message = "edge_input should be one of node, relative, pair, relative_cosine, got 'both'"
    with pytest.raises(ValueError, match=message):
        HDMLOnFeatures(6, edge_input="both")
    with pytest.raises(TypeError, match="relative_input should be a bool, got int"):
        HDMLOnFeatures(6, relative_input=1)
    with pytest.raises(TypeError, match="balanced_link_loss should be a bool"):
        HDML(3, backbone="resnet18", balanced_link_loss="yes")
    with pytest.raises(TypeError, match=r"cosine_prior should be a bool, got str \('no'\)"):
        HDMLOnFeatures(6, cosine_prior="no")
    with pytest.raises(TypeError, match=r"overlap_prior should be a bool, got int \(1\)"):
        HDMLOnFeatures(6, overlap_prior=1)


def _batches(nodes: torch.Tensor, adj: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(nodes[start : start + size], adj[start : start + size]) for start in range(0, len(nodes), size)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("relative_input", [False, True])
@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
@pytest.mark.parametrize("cosine_prior", [False, True])
def test_shared_projection_scores_equal_graph_by_graph_scores(edge_input, relative_input, attention, dtype,
                                                              cosine_prior):
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(k=4, dtype=dtype)
    model = HDMLOnFeatures(6, k=4, gcn_dims=(8, 5), attention=attention, edge_input=edge_input,
                           relative_input=relative_input, cosine_prior=cosine_prior).to(dtype).eval()
    with torch.no_grad():
        model.regcn.layers[0].bias.uniform_(0.5, 1.0)  # a bias that would show if it were subtracted
        shared = list(model.link_scores_of_nodes(features, _batches(nodes, adj, 5)))
        graph_by_graph = [model.link_scores(features[n], a) for n, a in _batches(nodes, adj, 5)]
    assert [s.shape for s in shared] == [(5, 4), (5, 4), (2, 4)]
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {}
    torch.testing.assert_close(torch.cat(shared), torch.cat(graph_by_graph), **tolerance)
    if dtype == torch.float64 and not relative_input:  # the same products summed in the same order
        assert torch.equal(torch.cat(shared), torch.cat(graph_by_graph))


@pytest.mark.parametrize("relative_input", [False, True])
def test_scoring_by_shared_projection_on_the_image_model(relative_input):
    torch.manual_seed(0)
    model = HDML(3, backbone="resnet18", k=3, nfe_stages=(2,), gcn_dims=(8,), relative_input=relative_input,
                 edge_input="pair").eval()
    nodes = torch.tensor([[0, 1, 2, 3], [4, 0, 2, 1], [2, 4, 3, 0]])
    adj = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.6
    with torch.no_grad():
        table = model.embed(torch.randn(5, 3, 32, 16))
        (shared,) = model.link_scores_of_nodes(table, [(nodes, adj)])
        torch.testing.assert_close(shared, model.link_scores(table[nodes], adj))


def test_scoring_by_shared_projection_projects_the_table_once():
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(k=3)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5)).eval()
    first = model.regcn.layers[0]
    with torch.no_grad(), mock.patch.object(first, "project", wraps=first.project) as project:
        scores = list(model.link_scores_of_nodes(features, _batches(nodes, adj, 4)))
    assert len(scores) == 3 and project.call_count == 1
    assert project.call_args.args[0] is features


def test_a_table_too_large_to_project_whole_is_projected_batch_by_batch():
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(k=3)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), relative_input=True).eval()
    first = model.regcn.layers[0]
    with torch.no_grad(), mock.patch.object(first, "project", wraps=first.project) as project:
        shared = list(model.link_scores_of_nodes(features, _batches(nodes, adj, 4)))
        assert project.call_count == 1
        # 12 rows x 16 projected floats x 4 bytes = 768 bytes: one byte less forces batches.
        batches = _batches(nodes, adj, 4)
        per_batch = list(model.link_scores_of_nodes(features, batches, max_projected_bytes=767))
        assert project.call_count == 1 + len(per_batch)
        assert all(call.args[0].shape[0] == 4 for call in project.call_args_list[1:])
    torch.testing.assert_close(torch.cat(per_batch), torch.cat(shared))
    with pytest.raises(ValueError, match="max_projected_bytes"):
        model.link_scores_of_nodes(features, [], max_projected_bytes=-1)


def test_scoring_by_shared_projection_rejects_bad_inputs():
    features, _, nodes, adj = _graphs(k=3)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(5,)).eval()
    with pytest.raises(ValueError, match=r"table should be \[U, 6\] node features, got shape \(12, 5\)"):
        model.link_scores_of_nodes(features[:, :5], [(nodes, adj)])
    with pytest.raises(ValueError, match=r"nodes should index the 12 .*, i\.e\. lie in \[0, 12\)"):
        next(model.link_scores_of_nodes(features, [(nodes + 1, adj)]))
    with pytest.raises(ValueError, match="adj should be"):
        next(model.link_scores_of_nodes(features, [(nodes, adj[:3])]))


@pytest.mark.parametrize("relative_input", [False, True])
def test_shared_projection_under_autocast_keeps_the_projection_in_bfloat16(relative_input):
    # autocast projects the table in bfloat16 (half the memory); with relative_input the focus
    # is then subtracted in bfloat16, after the projection, rather than in float32 before it.
    torch.manual_seed(0)
    features, _, nodes, adj = _graphs(k=4)
    model = HDMLOnFeatures(6, k=4, gcn_dims=(8, 5), relative_input=relative_input).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.regcn.project(features).dtype == torch.bfloat16
        (shared,) = model.link_scores_of_nodes(features, [(nodes, adj)])
        graph_by_graph = model.link_scores(features[nodes], adj)
    assert shared.dtype == torch.float32
    torch.testing.assert_close(shared, graph_by_graph, rtol=0.0, atol=0.0 if not relative_input else 1e-2)


def _backward_node_names(tensor: torch.Tensor) -> set[str]:
    """The names of every autograd node `tensor` was computed through."""
    names, seen, stack = set(), set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(node.name())
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("edge_input", EDGE_INPUTS)
@pytest.mark.parametrize("cosine_prior", [False, True])
def test_the_loss_gathers_rows_with_index_select(edge_input, cosine_prior):
    # The backward of table[nodes] (index_put_ with accumulate) adds large gradients on the CPU
    # with atomics in parallel, so training would differ from process to process; the backward
    # of index_select (index_add_) adds them in order.
    features, labels, nodes, adj, _ = _directed_graphs(dtype=torch.float32)
    model = HDMLOnFeatures(6, k=3, gcn_dims=(8, 5), edge_input=edge_input, cosine_prior=cosine_prior,
                           overlap_prior=True)
    loss = model.loss(model(features.requires_grad_(), nodes, adj), labels, nodes)[0]
    names = _backward_node_names(loss)
    assert "IndexSelectBackward0" in names
    assert "IndexBackward0" not in names
