"""hdml_ext.nn.REGCN / REGCNLayer / NodeChannelAttention (paper eq. 12-13)."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES
from nn_helpers import assert_every_parameter_has_a_finite_grad, clustered_features, knn_fgraphs

from hdml_ext.nn import REGCN, NodeChannelAttention, REGCNLayer
from hdml_ext.nn.regcn import gather_rows


def _normalised(adj: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Â = D^-1/2 A D^-1/2 as a dense matrix; isolated nodes get zero rows and columns."""
    a = adj.to(dtype)
    deg = a.sum(-1)
    inv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
    return inv[:, :, None] * a * inv[:, None, :]


def _literal_attention(att: NodeChannelAttention, z: torch.Tensor) -> torch.Tensor:
    """Eq. 13 written out: BN over the B*n nodes, FC, ReLU, sigmoid, multiply."""
    flat = z.reshape(-1, z.shape[-1])
    if att.training:
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
    else:
        mean, var = att.bn.running_mean, att.bn.running_var
    normed = (flat - mean) / torch.sqrt(var + att.bn.eps) * att.bn.weight + att.bn.bias
    cw = torch.sigmoid(torch.relu(normed @ att.fc.weight.T + att.fc.bias))
    return (flat * cw).reshape(z.shape)


def _literal_layer(layer: REGCNLayer, z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """Eq. 12 as printed: ReLU(hstack(Z, ÂZ) W + b), W = [W_self; W_nbr] of shape [2 in, out]."""
    w = torch.cat([layer.weight[:layer.out_dim].T, layer.weight[layer.out_dim:].T], dim=0)
    out = torch.relu(torch.cat([z, _normalised(adj, z.dtype) @ z], dim=-1) @ w + layer.bias)
    return _literal_attention(layer.attention, out) if layer.attention is not None else out


def _graphs(batch: int, n: int, *, weighted: bool = False, isolated: bool = False, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    adj = torch.rand(batch, n, n, generator=gen) < 0.3
    adj = adj | adj.transpose(1, 2)
    adj &= ~torch.eye(n, dtype=torch.bool)
    if isolated:
        adj[:, -1, :] = False
        adj[:, :, -1] = False
    if weighted:
        return adj.double() * torch.rand(batch, n, n, generator=gen, dtype=torch.float64)
    return adj


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("weighted", "isolated"), [(False, False), (True, False), (False, True)])
def test_layer_equals_the_literal_hstack_form_of_eq_12_in_float64(attention, mode, weighted, isolated):
    torch.manual_seed(0)
    layer = REGCNLayer(12, 7, attention=attention).double().train(mode == "train")
    if attention:
        with torch.no_grad():
            layer.attention.bn.running_mean.uniform_(-1, 1)
            layer.attention.bn.running_var.uniform_(0.5, 2)
    z = torch.randn(3, 9, 12, dtype=torch.float64)
    adj = _graphs(3, 9, weighted=weighted, isolated=isolated)
    torch.testing.assert_close(layer(z, adj), _literal_layer(layer, z, adj), rtol=1e-12, atol=1e-12)


def test_stack_equals_the_literal_form_layer_by_layer_in_float64():
    torch.manual_seed(0)
    stack = REGCN(16, (16, 12, 6), attention=True).double()
    z = torch.randn(4, 11, 16, dtype=torch.float64)
    adj = _graphs(4, 11)
    expected = z
    for layer in stack.layers:
        expected = _literal_layer(layer, expected, adj)
    torch.testing.assert_close(stack(z, adj), expected, rtol=1e-12, atol=1e-12)


def test_gradients_equal_the_literal_forms_in_float64():
    torch.manual_seed(0)
    layer = REGCNLayer(8, 5).double()
    z = torch.randn(2, 7, 8, dtype=torch.float64, requires_grad=True)
    adj = _graphs(2, 7)
    upstream = torch.randn(2, 7, 5, dtype=torch.float64)
    ours = torch.autograd.grad((layer(z, adj) * upstream).sum(), (z, layer.weight, layer.bias))
    literal = torch.autograd.grad((_literal_layer(layer, z, adj) * upstream).sum(),
                                  (z, layer.weight, layer.bias))
    for a, b in zip(ours, literal):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_node_table_with_an_index_equals_the_gathered_batch(mode):
    # Graphs sharing nodes: the first projection runs once per distinct row, then gathers.
    torch.manual_seed(0)
    stack = REGCN(10, (8, 6)).double().train(mode == "train")
    table = torch.randn(7, 10, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 7, (4, 9))
    adj = _graphs(4, 9)
    upstream = torch.randn(4, 9, 6, dtype=torch.float64)
    shared = stack(table, adj, index=index)
    (grad_shared,) = torch.autograd.grad((shared * upstream).sum(), table)
    gathered = stack(table[index], adj)
    (grad_gathered,) = torch.autograd.grad((gathered * upstream).sum(), table)
    torch.testing.assert_close(shared, gathered, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_shared, grad_gathered, rtol=1e-12, atol=1e-12)


def test_plain_gcn_has_no_attention():
    stack = REGCN(16, (8, 4), attention=False)
    assert all(layer.attention is None for layer in stack.layers)
    assert not any("attention" in name for name, _ in stack.named_parameters())


def test_attention_weights_lie_in_half_to_one():
    # sigmoid(ReLU(.)) >= 0.5: the attention can only damp a channel by up to half.
    torch.manual_seed(0)
    att = NodeChannelAttention(6)
    z = torch.randn(3, 5, 6).abs() + 0.1
    ratio = att(z) / z
    assert ratio.min() >= 0.5 and ratio.max() < 1.0


def test_attention_normalises_over_all_nodes_of_all_graphs():
    torch.manual_seed(0)
    att = NodeChannelAttention(4).train()
    z = torch.randn(3, 5, 4)
    torch.testing.assert_close(att(z), _literal_attention(att, z))
    # moving one graph's nodes changes the batch statistics, hence the other graphs' outputs
    z2 = z.clone()
    z2[0] += 5.0
    assert not torch.allclose(att(z2)[1:], att(z)[1:])


def test_paper_dims_shapes():
    stack = REGCN()
    assert stack.dims == (1536, 1536, 512, 256) and len(stack.layers) == 4 and stack.out_dim == 256
    z = torch.randn(2, 51, 1536)
    adj = torch.rand(2, 51, 51) < 0.2
    assert stack(z, adj).shape == (2, 51, 256)


@pytest.mark.parametrize("dims", [(8,), (8, 8), (16, 8, 4, 4, 2)])
def test_number_of_layers_is_the_length_of_dims(dims):
    stack = REGCN(6, dims)
    assert len(stack.layers) == len(dims)
    assert stack(torch.randn(2, 5, 6), torch.ones(2, 5, 5, dtype=torch.bool)).shape == (2, 5, dims[-1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", [False, True])
def test_gradient_reaches_every_parameter_and_the_input(device, attention):
    torch.manual_seed(0)
    features, _ = clustered_features(3, 6, 10)
    nodes, adj = knn_fgraphs(features, 5)
    stack = REGCN(10, (12, 8, 4), attention=attention).to(device)
    z = features[nodes].to(device).requires_grad_()
    stack(z, adj.to(device)).square().sum().backward()
    assert_every_parameter_has_a_finite_grad(stack)
    assert z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("device", DEVICES)
def test_float_and_bool_adjacency_agree(device):
    torch.manual_seed(0)
    stack = REGCN(6, (5, 4)).to(device).eval()
    z = torch.randn(2, 7, 6, device=device)
    adj = _graphs(2, 7).to(device)
    torch.testing.assert_close(stack(z, adj), stack(z, adj.float()))


def test_runs_under_cpu_autocast_bfloat16():
    stack = REGCN(16, (16, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stack(torch.randn(2, 9, 16), _graphs(2, 9))
    out.float().sum().backward()
    assert out.shape == (2, 9, 8) and torch.isfinite(out.float()).all()
    assert_every_parameter_has_a_finite_grad(stack)


def test_compiles_fullgraph():
    torch.manual_seed(0)
    stack = REGCN(8, (8, 4)).eval()
    z, adj = torch.randn(2, 6, 8), _graphs(2, 6)
    compiled = torch.compile(stack, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(z, adj), stack(z, adj))


def test_rejects_empty_gcn_dims():
    with pytest.raises(ValueError, match="gcn_dims should name at least one layer"):
        REGCN(8, ())


@pytest.mark.parametrize("dims", [(8, 0), (8, -2), (8, 2.5)])
def test_rejects_non_positive_gcn_dims(dims):
    with pytest.raises(ValueError, match="gcn_dims should hold positive ints"):
        REGCN(8, dims)


def test_rejects_features_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"z should be \[B, n, 8\]"):
        REGCN(8, (4,))(torch.randn(2, 5, 7), torch.ones(2, 5, 5, dtype=torch.bool))


def test_rejects_adjacency_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"adj should be \[B, n, n\] = \[2, 5, 5\]"):
        REGCN(8, (4,))(torch.randn(2, 5, 8), torch.ones(2, 5, 4, dtype=torch.bool))


def test_rejects_integer_adjacency():
    with pytest.raises(TypeError, match="adj should be a bool or floating-point"):
        REGCN(8, (4,))(torch.randn(2, 5, 8), torch.ones(2, 5, 5, dtype=torch.int64))


def test_rejects_integer_features():
    with pytest.raises(TypeError, match="z should be a floating-point"):
        REGCNLayer(8, 4)(torch.ones(2, 5, 8, dtype=torch.int64), torch.ones(2, 5, 5, dtype=torch.bool))


def test_rejects_zero_width_layer():
    with pytest.raises(ValueError, match="out_dim"):
        REGCNLayer(8, 0)


def test_rejects_an_index_that_is_not_int64():
    with pytest.raises(TypeError, match=r"index should be an int64 \[B, n\] tensor"):
        REGCN(8, (4,))(torch.randn(6, 8), torch.ones(2, 5, 5, dtype=torch.bool), index=torch.zeros(2, 5))


@pytest.mark.parametrize("bad", [6, -1])
def test_rejects_an_index_out_of_the_table(bad):
    index = torch.zeros(2, 5, dtype=torch.int64)
    index[1, 3] = bad
    with pytest.raises(ValueError, match=r"index should index the 6 rows of z, i.e. lie in \[0, 6\)"):
        REGCN(8, (4,))(torch.randn(6, 8), torch.ones(2, 5, 5, dtype=torch.bool), index=index)


def test_rejects_a_batched_z_with_an_index():
    index = torch.zeros(2, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"z should be a \[U, 8\] table of node features when index"):
        REGCN(8, (4,))(torch.randn(2, 5, 8), torch.ones(2, 5, 5, dtype=torch.bool), index=index)


def test_rejects_adjacency_that_does_not_match_the_index():
    index = torch.zeros(2, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"adj should be \[B, n, n\] = \[2, 5, 5\] to match index"):
        REGCN(8, (4,))(torch.randn(6, 8), torch.ones(2, 4, 4, dtype=torch.bool), index=index)


@pytest.mark.parametrize("relative", [False, True])
def test_projecting_a_table_once_then_the_rest_equals_forward_with_an_index(relative):
    torch.manual_seed(0)
    stack = REGCN(10, (8, 6)).double().eval()
    table = torch.randn(7, 10, dtype=torch.float64)
    index = torch.randint(0, 7, (4, 9))
    adj = _graphs(4, 9)
    projected = stack.project(table)
    assert projected.shape == (7, 16)
    split = stack.forward_projected(gather_rows(projected, index), adj, relative)
    assert torch.equal(split, stack(table, adj, index=index, relative=relative))
    torch.testing.assert_close(split, stack(table[index], adj, relative=relative), rtol=1e-12, atol=1e-12)


def test_projection_errors_name_the_argument():
    stack = REGCN(8, (4,))
    with pytest.raises(ValueError, match=r"table should be \[U, 8\] node features, got shape \(2, 5, 8\)"):
        stack.project(torch.randn(2, 5, 8))
    with pytest.raises(TypeError, match="table should be a floating-point tensor"):
        stack.project(torch.zeros(6, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"projected should be \[B, n, 8\] first-layer projections"):
        stack.forward_projected(torch.randn(2, 5, 4), torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"adj should be \[B, n, n\] = \[2, 5, 5\], got shape \(2, 4, 4\)"):
        stack.forward_projected(torch.randn(2, 5, 8), torch.ones(2, 4, 4, dtype=torch.bool))
