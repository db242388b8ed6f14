"""The graph half of a link model in inference form, scored by the fused `hdml_ext.ops.fgraph_scores`
kernel: `FGraphLinkModel.link_scores_of_nodes` takes this path on the CPU whenever no gradient is
wanted, and the module path (`REGCN.forward_projected` + `EdgeHead`) otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import require_graph_adjacency, require_nodes, require_tensor
from ..ops import ScoringWeights, fgraph_scores
from .regcn import NodeChannelAttention

if TYPE_CHECKING:
    from .base import FGraphLinkModel

#: Table dtypes scored by the fused kernel. float64 tables keep the module path, whose scores
#: `link_scores` reproduces bit for bit (the kernel would round differently); the kernel itself
#: runs float64 too (`hdml_ext.ops.fgraph_scores`).
FUSED_DTYPES = (torch.float32,)

_FUSED_ENABLED: ContextVar[bool] = ContextVar("hdml_fused_scoring", default=True)


@contextmanager
def module_path() -> Iterator[None]:
    """Within this block `link_scores_of_nodes` scores with the modules (`REGCN.forward_projected`
    and `EdgeHead`) even where the fused kernel applies: the path to compare it with."""
    token = _FUSED_ENABLED.set(False)
    try:
        yield
    finally:
        _FUSED_ENABLED.reset(token)


def kernel_built() -> bool:
    """Whether the loaded hdml_ext._C carries fgraph_scores (an extension built before it was
    added keeps the module path until it is rebuilt)."""
    return hasattr(torch.ops.hdml, "fgraph_scores")


def folded_attention(attention: NodeChannelAttention) -> tuple[Tensor, Tensor] | None:
    """The attention's FC with its eval-mode BatchNorm folded in: (W [d, d], b [d]) with
    FC(BN(z)) = z W^T + b, or None when the BatchNorm keeps no running statistics (it would
    normalise by each batch's own)."""
    bn, fc = attention.bn, attention.fc
    if bn.running_mean is None or bn.running_var is None:
        return None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return fc.weight * scale[None, :], fc.bias + fc.weight @ shift


def scoring_weights(model: FGraphLinkModel, dtype: torch.dtype) -> ScoringWeights | None:
    """The model's graph half as `fgraph_scores` reads it, in `dtype`, or None when the model has
    a part the kernel does not run (a BatchNorm without running statistics)."""
    layers = model.regcn.layers
    attention: list[Tensor] = []
    for layer in layers:
        if layer.attention is not None:
            folded = folded_attention(layer.attention)
            if folded is None:
                return None
            attention.extend(folded)
    head = model.edge_head
    fc2 = head.fc2
    cosine = None if model.cosine_prior is None else tuple(model.cosine_prior.detach().double().tolist())
    overlap = None if model.overlap_prior is None else float(model.overlap_prior.detach())
    cast = [t.detach().to(dtype).contiguous() for t in (
        *(layer.weight for layer in layers[1:]), *(layer.bias for layer in layers), *attention,
        head.fc1.weight, head.fc1.bias, head.act.weight, fc2.weight[1] - fc2.weight[0],
        (fc2.bias[1] - fc2.bias[0]).reshape(1))]
    num_layers = len(layers)
    return ScoringWeights(
        weights=tuple(cast[: num_layers - 1]), biases=tuple(cast[num_layers - 1 : 2 * num_layers - 1]),
        attention=tuple(cast[2 * num_layers - 1 : 2 * num_layers - 1 + len(attention)]),
        head=tuple(cast[-5:]), edge_input=model.edge_input, relative_input=model.relative_input,
        cosine_prior=cosine, overlap_prior=overlap)


def fused_link_scores(model: FGraphLinkModel, table: Tensor, batches: Iterable[tuple[Tensor, Tensor]],
                      max_projected_bytes: int) -> Iterator[Tensor] | None:
    """`model.link_scores_of_nodes(table, batches)` by the fused kernel, or None where it does not
    apply: an extension built without the kernel, table off the CPU or not float32, the model
    training, grad mode on, autocast on, a part the kernel does not run (`scoring_weights`), or
    inside `module_path()`.

    With the first projection of all rows within `max_projected_bytes` it is computed once
    ([N, 2 * gcn_dims[0]]); otherwise each batch projects the distinct rows its graphs hold.
    Yields float32 [B, k] per batch, as the module path does.
    """
    require_tensor("table", table)
    if (not _FUSED_ENABLED.get() or not kernel_built() or table.device.type != "cpu"
            or table.dtype not in FUSED_DTYPES or model.training or torch.is_grad_enabled()
            or torch.is_autocast_enabled("cpu")):
        return None
    weights = scoring_weights(model, table.dtype)
    if weights is None:
        return None
    width = 2 * model.regcn.dims[0]
    if table.shape[0] * width * table.element_size() > max_projected_bytes:
        return _scores_by_batch(model, table, batches, weights)
    return _scores_of_projected(model, table, model.regcn.project(table), batches, weights)


def _scores_of_projected(model: FGraphLinkModel, table: Tensor, projected: Tensor,
                         batches: Iterable[tuple[Tensor, Tensor]], weights: ScoringWeights
                         ) -> Iterator[Tensor]:
    for nodes, adj in batches:
        require_nodes(nodes, projected.shape[0], model.k, projected.device)
        require_graph_adjacency(adj, nodes.shape[0], model.k, projected.device)
        yield fgraph_scores(projected, nodes, adj, weights, table=table)


def _scores_by_batch(model: FGraphLinkModel, table: Tensor, batches: Iterable[tuple[Tensor, Tensor]],
                     weights: ScoringWeights) -> Iterator[Tensor]:
    for nodes, adj in batches:
        require_nodes(nodes, table.shape[0], model.k, table.device)
        require_graph_adjacency(adj, nodes.shape[0], model.k, table.device)
        rows, local = torch.unique(nodes, return_inverse=True)
        batch_rows = table.index_select(0, rows)
        with torch.no_grad():
            projected = model.regcn.project(batch_rows)
        yield fgraph_scores(projected, local, adj, weights, table=batch_rows)
