"""The graph half both models share (paper III-D), `FGraphLinkModel`: RE-GCN over each F-Graph,
then the edge head on its non-focus nodes, with the focus-aware options the paper lacks (the
edge inputs here; the priors in `priors`, the link loss L2 in `loss`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from .._checks import require_graph_adjacency, require_graph_batch, require_int, require_labels, require_nodes
from .heads import EdgeHead
from .link_inference import fused_link_scores
from .loss import link_loss
from .priors import COSINE_PRIOR_INIT, OVERLAP_PRIOR_INIT, neighbour_overlap, require_directed
from .regcn import REGCN, gather_rows

#: What the edge head reads for node i of an F-Graph whose focus is f: "node" (the paper, h_i),
#: "relative" (h_i - h_f, as L-GCN), "pair" ([h_i, h_f, |h_i - h_f|], width 3d) or
#: "relative_cosine" ([h_i - h_f, cos(z_i, z_f)], width d + 1: the cosine similarity of the two
#: nodes' RE-GCN inputs, which the GCN's features no longer carry, beside the relative feature).
EDGE_INPUTS = ("node", "relative", "pair", "relative_cosine")

#: `FGraphLinkModel.link_scores_of_nodes` projects the whole table once when the projection fits
#: in this many bytes, and graph batch by graph batch otherwise.
MAX_PROJECTED_BYTES = 1 << 30


class HDMLOutput(NamedTuple):
    """What a model's `forward` returns.

    embeddings: [U, D] embedding of every distinct row (HDML: HA-Net's m, D = 512 *
        len(nfe_stages); HDMLOnFeatures: the given features).
    node_logits: [U, num_classes] node classification logits (the auxiliary task), or None for
        a model without the node task (HDMLOnFeatures).
    link_logits: [B, k, 2] edge logits of each F-Graph's non-focus nodes 1..k (the main task).
    """

    embeddings: Tensor
    node_logits: Tensor | None
    link_logits: Tensor


def edge_inputs(h: Tensor, edge_input: str, z: Tensor | None = None) -> Tensor:
    """The edge head's input for the non-focus nodes of F-Graphs whose final RE-GCN features are
    h [B, k+1, d] (focus first): [B, k, d] ("node", "relative"), [B, k, 3d] ("pair") or
    [B, k, d + 1] ("relative_cosine", which also reads the RE-GCN inputs z [B, k+1, D])."""
    nodes, focus = h[:, 1:], h[:, :1]
    if edge_input == "node":
        return nodes
    if edge_input == "relative":
        return nodes - focus
    if edge_input == "relative_cosine":
        if z is None:
            raise ValueError('edge_input "relative_cosine" needs the RE-GCN inputs z, got None')
        unit = functional.normalize(z, dim=-1)
        cosine = (unit[:, 1:] * unit[:, :1]).sum(dim=-1, keepdim=True).to(h.dtype)
        return torch.cat([nodes - focus, cosine], dim=-1)
    return torch.cat([nodes, focus.expand_as(nodes), (nodes - focus).abs()], dim=-1)


def undirected(adj: Tensor) -> Tensor:
    """The F-Graphs' undirected edges, which the RE-GCN runs on (the paper's): A or A^T (bool
    adjacency [B, n, n]) or max(A, A^T) (float). Unchanged for a symmetric adjacency."""
    transposed = adj.transpose(1, 2)
    return adj | transposed if adj.dtype == torch.bool else torch.maximum(adj, transposed)


def config_from(cls: type, config: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """`config` as constructor keyword arguments of `cls`; raise on keys it does not take."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config should be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"config has keys {cls.__name__} does not take: {', '.join(unknown)}")
    return dict(config)


class FGraphLinkModel(nn.Module):
    """Base of HDML and HDMLOnFeatures: their RE-GCN (`regcn`) and edge head (`edge_head`) on
    F-Graphs of k+1 nodes, and the link task's calls.

    Subclasses call `_build_graph_half` in their constructor. Options (recorded in `to_config`):
        edge_input: one of `EDGE_INPUTS` ("node" is the paper's head).
        relative_input: subtract each graph's focus input feature from all its nodes before
            the RE-GCN (L-GCN's pivot subtraction).
        balanced_link_loss: L2 weighs positive and negative edges equally (see `link_loss`).
        cosine_prior: add a * cos(z_i, z_f) + b (a, b learnt, from `COSINE_PRIOR_INIT`) to the
            "same identity" logit, z being the RE-GCN inputs (the embeddings): the head then
            starts from cosine similarity's ranking and learns what the graph adds to it.
        overlap_prior: add c * o_i (c learnt, from `OVERLAP_PRIOR_INIT`) to that logit, o_i =
            `neighbour_overlap(adj)`: the share of node i's k nearest neighbours inside the
            focus's F-Graph. It reads the directed adjacency (`FGraphs.batch`); the RE-GCN's
            symmetric normalisation of the undirected graph hides that count.

    Every call takes the F-Graphs' directed adjacency (`FGraphs.batch`) and runs the RE-GCN on
    `undirected(adj)`, the paper's graph convolution. Without the overlap prior a symmetric
    adjacency gives the same results; with it, a batch whose every graph is symmetric (and not
    complete) raises ValueError (`require_directed`): it is what `FGraphs.adjacency()`'s default
    gives, and the prior would silently read node degrees.
    """

    k: int
    out_dim: int
    regcn: REGCN
    edge_head: EdgeHead

    def _build_graph_half(self, in_dim: int, k: int, gcn_dims: Iterable[int], attention: bool,
                          edge_input: str, relative_input: bool, balanced_link_loss: bool,
                          cosine_prior: bool, overlap_prior: bool) -> None:
        if edge_input not in EDGE_INPUTS:
            raise ValueError(f"edge_input should be one of {', '.join(EDGE_INPUTS)}, got {edge_input!r}")
        for name, value in (("relative_input", relative_input), ("balanced_link_loss", balanced_link_loss),
                            ("cosine_prior", cosine_prior), ("overlap_prior", overlap_prior)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be a bool, got {type(value).__name__} ({value!r})")
        self.k = k
        self.edge_input = edge_input
        self.relative_input = relative_input
        self.balanced_link_loss = balanced_link_loss
        self.regcn = REGCN(in_dim, gcn_dims, attention)
        width = self.regcn.out_dim
        in_width = {"pair": 3 * width, "relative_cosine": width + 1}.get(edge_input, width)
        self.edge_head = EdgeHead(width, in_width)
        self.cosine_prior = nn.Parameter(torch.tensor(COSINE_PRIOR_INIT)) if cosine_prior else None
        self.overlap_prior = nn.Parameter(torch.tensor(OVERLAP_PRIOR_INIT)) if overlap_prior else None

    def _graph_options(self) -> dict[str, Any]:
        return {"edge_input": self.edge_input, "relative_input": self.relative_input,
                "balanced_link_loss": self.balanced_link_loss, "cosine_prior": self.cosine_prior is not None,
                "overlap_prior": self.overlap_prior is not None}

    def _link_logits(self, table: Tensor, nodes: Tensor, adj: Tensor) -> Tensor:
        """Edge logits [B, k, 2] of F-Graphs whose nodes are rows `nodes` [B, k+1] of `table`
        [U, D] (the first RE-GCN projection runs once per row of the table)."""
        h = self.regcn(table, undirected(adj), index=nodes, relative=self.relative_input)
        return self._edge_logits(h, self._inputs_if_read(table, nodes), self._overlap_if_read(adj))

    def _inputs_if_read(self, table: Tensor, nodes: Tensor) -> Tensor | None:
        """table[nodes] when the edge logits read the RE-GCN inputs ("relative_cosine" or the
        cosine prior), else None. Gathered with index_select: its CPU backward (index_add_) adds
        the rows in order, where table[nodes]'s (index_put_ with accumulate) adds large
        gradients with atomics in parallel, in an order that differs from run to run."""
        if self.edge_input == "relative_cosine" or self.cosine_prior is not None:
            return gather_rows(table, nodes)
        return None

    def _overlap_if_read(self, adj: Tensor) -> Tensor | None:
        """`neighbour_overlap(adj)` when the overlap prior reads it (adj checked by
        `require_directed`), else None."""
        if self.overlap_prior is None:
            return None
        require_directed(adj)
        return neighbour_overlap(adj)

    def _edge_logits(self, h: Tensor, z: Tensor | None, overlap: Tensor | None = None) -> Tensor:
        """Edge logits [B, k, 2] of F-Graphs whose final RE-GCN features are h [B, k+1, d] (focus
        first), inputs z [B, k+1, D] (None unless `_inputs_if_read` reads them) and neighbour
        overlaps [B, k] (None unless `_overlap_if_read` reads them)."""
        logits = self.edge_head(edge_inputs(h, self.edge_input, z))
        prior = None
        if self.cosine_prior is not None:
            unit = functional.normalize(z, dim=-1)
            cosine = (unit[:, 1:] * unit[:, :1]).sum(dim=-1).to(logits.dtype)
            scale, bias = self.cosine_prior.to(logits.dtype)
            prior = scale * cosine + bias
        if self.overlap_prior is not None:
            term = self.overlap_prior.to(logits.dtype) * overlap.to(logits.dtype)
            prior = term if prior is None else prior + term
        if prior is None:
            return logits
        return logits + torch.stack([torch.zeros_like(prior), prior], dim=-1)

    def _scores(self, h: Tensor, z: Tensor | None, overlap: Tensor | None = None) -> Tensor:
        """S_f [B, k] of F-Graphs whose final RE-GCN features are h [B, k+1, d] (focus first),
        inputs z [B, k+1, D] and neighbour overlaps [B, k] (read only by "relative_cosine" and
        the priors)."""
        logits = self._edge_logits(h, z, overlap)
        return torch.softmax(logits.float(), dim=-1)[..., 1]

    def link_scores(self, z: Tensor, adj: Tensor) -> Tensor:
        """S_f (eq. 14) of F-Graphs whose nodes are already embedded: z [B, k+1, out_dim] (focus
        first), adj [B, k+1, k+1] -> [B, k], the probability each node shares the focus's identity."""
        require_graph_batch(z, adj, self.out_dim)
        require_graph_adjacency(adj, z.shape[0], self.k, z.device)
        h = self.regcn(z, undirected(adj), relative=self.relative_input)
        return self._scores(h, z, self._overlap_if_read(adj))

    def link_scores_of_nodes(self, table: Tensor, batches: Iterable[tuple[Tensor, Tensor]], *,
                             max_projected_bytes: int = MAX_PROJECTED_BYTES) -> Iterator[Tensor]:
        """S_f of F-Graphs whose nodes are rows of one embedded table, batch by batch.

        table: [N, out_dim] embeddings. batches: (nodes int64 [B, k+1], rows of table with each
        graph's focus first; adj [B, k+1, k+1]) pairs. Yields S_f [B, k] per batch, equal to
        `link_scores(table[nodes], adj)` up to float rounding.

        The first RE-GCN projection is the one step that reads a node alone, so it runs once
        per row of `table`, here, before the first batch (it holds [N, 2 * gcn_dims[0]] in
        table's dtype, or autocast's, while the batches are read), and each graph gathers its
        nodes' rows instead of projecting k+1 inputs. With relative_input the focus's row is
        subtracted after the projection (W(x_i - x_f) = W x_i - W x_f, the bias comes later).
        When that projected table would take more than `max_projected_bytes` (default 1 GiB:
        N = 1M rows at gcn_dims[0] = 256 in float32 take 2 GiB), each batch projects its own
        graphs' nodes instead, as `link_scores` does: the same scores, less memory, slower.
        """
        require_int("max_projected_bytes", max_projected_bytes, minimum=0)
        fused = fused_link_scores(self, table, batches, max_projected_bytes)
        if fused is not None:
            return fused
        width = 2 * self.regcn.dims[0]
        if table.shape[0] * width * table.element_size() > max_projected_bytes:
            return (self.link_scores(gather_rows(table, nodes), adj) for nodes, adj in batches)
        projected = self.regcn.project(table)
        return self._scores_of_projected(table, projected, batches)

    def _scores_of_projected(self, table: Tensor, projected: Tensor, batches: Iterable[tuple[Tensor, Tensor]]
                             ) -> Iterator[Tensor]:
        for nodes, adj in batches:
            require_nodes(nodes, projected.shape[0], self.k, projected.device)
            require_graph_adjacency(adj, nodes.shape[0], self.k, projected.device)
            gathered = gather_rows(projected, nodes)
            h = self.regcn.forward_projected(gathered, undirected(adj), self.relative_input)
            yield self._scores(h, self._inputs_if_read(table, nodes), self._overlap_if_read(adj))

    def _check_loss_inputs(self, output: HDMLOutput, labels: Tensor, nodes: Tensor) -> None:
        """Raise unless labels is an integer [U] tensor and nodes an int64 [B, k+1] one that
        fit `output`."""
        num_rows = output.embeddings.shape[0]
        require_labels("labels", labels, (num_rows,))
        require_nodes(nodes, num_rows, self.k, output.link_logits.device)
        if nodes.shape[0] != output.link_logits.shape[0]:
            raise ValueError(f"nodes should have one row per F-Graph of output "
                             f"({output.link_logits.shape[0]}), got {nodes.shape[0]}")

    def _link_loss(self, output: HDMLOutput, labels: Tensor, nodes: Tensor) -> Tensor:
        """L2 of `output` against "labels[nodes[:, i]] == labels[nodes[:, 0]]" (i = 1..k)
        (inputs checked by `_check_loss_inputs`)."""
        graph_labels = labels[nodes]
        same = graph_labels[:, 1:] == graph_labels[:, :1]
        return link_loss(output.link_logits, same, self.balanced_link_loss)
