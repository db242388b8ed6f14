"""RE-GCN (paper III-D, eq. 12-13, Fig. 4): graph convolution followed by node-wise channel
attention, stacked."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional

from .. import ops
from .._checks import (
    require_adjacency,
    require_floating,
    require_graph_batch,
    require_int,
    require_node_table,
    require_tensor,
)


def gather_rows(rows: Tensor, index: Tensor) -> Tensor:
    """rows [U, F] gathered by index int64 [B, n] (ids in [0, U), unchecked): [B, n, F]."""
    return rows.index_select(0, index.reshape(-1)).view(*index.shape, rows.shape[1])


class NodeChannelAttention(nn.Module):
    """The RE-GCN attention (eq. 13): cw = sigmoid(ReLU(FC(BN(Z)))), Z~ = Z * cw.

    BN normalises the feature channel over all nodes of all graphs ([B, n, F] seen as B*n
    samples); the paper's GAP over its 1x1 extension is the identity and is left out.

    Shapes:
        forward(z [B, n, dim]) -> [B, n, dim].
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = require_int("dim", dim, minimum=1)
        self.bn = nn.BatchNorm1d(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, z: Tensor) -> Tensor:
        flat = z.reshape(-1, self.dim)
        cw = torch.sigmoid(functional.relu(self.fc(self.bn(flat))))
        return (flat * cw).view(z.shape)


class REGCNLayer(nn.Module):
    """One RE-GCN layer: Z' = ReLU(Z W_self + Â (Z W_nbr) + b), then the channel attention.

    This is eq. 12, ReLU(hstack(Z, ÂZ) W), with W = [W_self; W_nbr] (plus a bias), Â =
    D^-1/2 A D^-1/2. Both projections run as one GEMM against `weight` ([2 * out_dim, in_dim]:
    rows [:out_dim] are W_self^T, rows [out_dim:] W_nbr^T), and Â is applied after the
    projection by the fused `hdml_ext.ops.gcn_aggregate`, on out_dim rather than in_dim
    columns.

    Args:
        in_dim, out_dim: feature widths.
        attention: False gives the plain GCN layer (the paper's GCN vs RE-GCN ablation).

    Shapes:
        forward(z [B, n, in_dim], adj [B, n, n] bool or float) -> [B, n, out_dim].
        forward(z [U, in_dim], adj, index [B, n] int64) -> [B, n, out_dim]: node b, i is row
        index[b, i] of the table z. The projection is per node, so each distinct row is
        projected once and the results gathered: graphs that share nodes share that GEMM.
        relative=True makes every node's input x_i - x_focus (node 0 of its graph, as L-GCN
        does). With index it is applied after the projection, W(x_i - x_f) = W x_i - W x_f (the
        bias is added after the aggregation, outside the projection, so this is exact).
    """

    def __init__(self, in_dim: int, out_dim: int, attention: bool = True) -> None:
        super().__init__()
        self.in_dim = require_int("in_dim", in_dim, minimum=1)
        self.out_dim = require_int("out_dim", out_dim, minimum=1)
        self.weight = nn.Parameter(torch.empty(2 * out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        self.attention = NodeChannelAttention(out_dim) if attention else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation, per projection."""
        for half in self.weight.data.split(self.out_dim):
            nn.init.kaiming_uniform_(half, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, z: Tensor, adj: Tensor, index: Tensor | None = None, relative: bool = False) -> Tensor:
        if index is None:
            require_graph_batch(z, adj, self.in_dim)
            return self.combine(self.project(z - z[:, :1] if relative else z), adj)
        require_node_table(z, index, adj, self.in_dim)
        return self.combine(gather_rows(self.project(z), index), adj, relative)

    def project(self, z: Tensor) -> Tensor:
        """[Z W_self, Z W_nbr] of every row: z [..., in_dim] -> [..., 2 * out_dim], no bias.

        A per-row linear map: the projection of a node is the same in every graph that holds
        it, so a table of rows can be projected once and gathered (`gather_rows`)."""
        return functional.linear(z, self.weight)

    def combine(self, projected: Tensor, adj: Tensor, relative: bool = False) -> Tensor:
        """The rest of the layer on projected F-Graphs: projected [B, n, 2 * out_dim] (`project`
        of each node's input), adj [B, n, n] -> [B, n, out_dim].

        relative=True subtracts each graph's focus (node 0) from the projections, which is the
        projection of the focus-relative input, W(x_i - x_f) = W x_i - W x_f (exact in real
        arithmetic: the bias is added after the aggregation, never projected)."""
        if relative:
            projected = projected - projected[:, :1]
        own, nbr = projected.split(self.out_dim, dim=-1)
        out = functional.relu(own + ops.gcn_aggregate(adj, nbr) + self.bias)
        return self.attention(out) if self.attention is not None else out

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}"


def check_gcn_dims(dims: object) -> tuple[int, ...]:
    """The layer widths as a tuple; raise unless a non-empty sequence of positive ints."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Iterable):
        raise TypeError(f"gcn_dims should be a sequence of layer widths, got {dims!r}")
    out = tuple(dims)
    if not out:
        raise ValueError("gcn_dims should name at least one layer width, got an empty sequence")
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in out):
        raise ValueError(f"gcn_dims should hold positive ints, got {dims!r}")
    return out


class REGCN(nn.Module):
    """A stack of `REGCNLayer`s of output widths `dims` (the paper: 1536, 1536, 512, 256).

    Args:
        in_dim: the node features' width (HA-Net's 1536).
        dims: each layer's output width; len(dims) is the number of layers (Table IV).
        attention: False gives the plain GCN stack (Table II).

    Shapes:
        forward(z [B, n, in_dim], adj [B, n, n]) -> [B, n, dims[-1]].
        forward(z [U, in_dim], adj, index [B, n] int64) -> [B, n, dims[-1]]: the nodes are
        rows of the table z (see `REGCNLayer`; only the first layer can share the work).
        relative=True subtracts each graph's focus (node 0) from the first layer's input.
        project(table [U, in_dim]) -> [U, 2 * dims[0]] and forward_projected(gathered [B, n,
        2 * dims[0]], adj, relative) -> [B, n, dims[-1]]: the same, split where one node's
        work ends, so a caller scoring many batches over one table projects it once.
    """

    def __init__(self, in_dim: int = 1536, dims: Iterable[int] = (1536, 1536, 512, 256),
                 attention: bool = True) -> None:
        super().__init__()
        self.in_dim = require_int("in_dim", in_dim, minimum=1)
        self.dims = check_gcn_dims(dims)
        self.attention = bool(attention)
        widths = (in_dim, *self.dims)
        self.layers = nn.ModuleList([REGCNLayer(a, b, attention) for a, b in zip(widths[:-1], widths[1:])])
        self.out_dim = self.dims[-1]

    def forward(self, z: Tensor, adj: Tensor, index: Tensor | None = None, relative: bool = False) -> Tensor:
        z = self.layers[0](z, adj, index, relative)
        return self._after_first(z, adj)

    def project(self, table: Tensor) -> Tensor:
        """The first layer's projection of every row of `table` [U, in_dim]: [U, 2 * dims[0]],
        the only part of the stack that depends on one node alone (every later step mixes a
        graph's nodes). Gather it per F-Graph with `gather_rows` for `forward_projected`."""
        require_tensor("table", table)
        if table.dim() != 2 or table.shape[1] != self.in_dim:
            raise ValueError(f"table should be [U, {self.in_dim}] node features, "
                             f"got shape {tuple(table.shape)}")
        require_floating("table", table)
        return self.layers[0].project(table)

    def forward_projected(self, projected: Tensor, adj: Tensor, relative: bool = False) -> Tensor:
        """The stack on F-Graphs whose nodes' first projections are given: projected [B, n,
        2 * dims[0]] (rows of `project`'s output), adj [B, n, n] -> [B, n, dims[-1]]. Equals
        `forward(table, adj, index, relative)` for projected = gather_rows(project(table), index)."""
        require_tensor("projected", projected)
        width = 2 * self.dims[0]
        if projected.dim() != 3 or projected.shape[2] != width:
            raise ValueError(f"projected should be [B, n, {width}] first-layer projections, "
                             f"got shape {tuple(projected.shape)}")
        n = projected.shape[1]
        require_adjacency(adj, (projected.shape[0], n, n), f"[B, n, n] = {[projected.shape[0], n, n]}")
        return self._after_first(self.layers[0].combine(projected, adj, relative), adj)

    def _after_first(self, z: Tensor, adj: Tensor) -> Tensor:
        for layer in self.layers[1:]:
            z = layer(z, adj)
        return z

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, dims={self.dims}, attention={self.attention}"
