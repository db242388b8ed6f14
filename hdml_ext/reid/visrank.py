"""`hdml evaluate --visrank N`: ranked-list pictures of N queries, each under the evaluated
ranking and, below it, under plain distance ranking, so the picture shows what the graph (or
the re-ranking) changed.

    paths = write_visrank("visrank", model, query, gallery, query_images, gallery_images,
                          q_pids, g_pids, q_camids, g_camids, count=8, ranking="graph")

The queries are spread evenly over those with a true match in the gallery (under the
Market-1501 protocol), so they show different identities and each has something to find.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import require_int
from ..data.digits import IMAGENET_MEAN, IMAGENET_STD
from ..data.rows import RowSource, read_rows
from .link_rerank import LinkRerankSettings, link_rerank_order
from .ranking import distance_order, graph_order, query_link_scores
from .rerank import k_reciprocal_order
from .visualize import save_ranked_lists

#: The rankings `ranking_orders` draws (those of `hdml_ext.reid.evaluate_reid`).
VISRANK_RANKINGS = ("graph", "distance", "k_reciprocal", "k_reciprocal_per_query", "link_rerank",
                    "link_rerank_together")


def _numpy(values: object) -> np.ndarray:
    return np.asarray(torch.as_tensor(values).cpu()).reshape(-1)


def visrank_queries(
    q_pids: object, q_camids: object, g_pids: object, g_camids: object, count: int
) -> np.ndarray:
    """int64 [min(count, valid)]: query ids spread evenly over the queries that have a true
    match in the gallery once the Market-1501 protocol removes the query's own camera's shots
    and junk (pid -1) entries."""
    require_int("count", count, minimum=1)
    q_pids, q_camids, g_pids, g_camids = map(_numpy, (q_pids, q_camids, g_pids, g_camids))
    cameras_of: dict[int, set[int]] = {}
    for pid, camid in zip(g_pids.tolist(), g_camids.tolist()):
        cameras_of.setdefault(pid, set()).add(camid)
    valid = np.array([pid != -1 and bool(cameras_of.get(pid, set()) - {camid})
                      for pid, camid in zip(q_pids.tolist(), q_camids.tolist())], dtype=bool)
    candidates = np.flatnonzero(valid)
    if candidates.size <= count:
        return candidates.astype(np.int64)
    return candidates[np.linspace(0, candidates.size - 1, count).round().astype(np.int64)]


def _blocks_of_rows(blocks: Iterator[tuple[slice, Tensor]], rows: np.ndarray) -> Tensor:
    """The orders of query `rows` from (slice, order) blocks over all queries, in `rows`' order."""
    wanted = {int(row): position for position, row in enumerate(rows)}
    kept: list[Tensor | None] = [None] * len(rows)
    for span, order in blocks:
        for row in range(span.start, span.stop):
            if row in wanted:
                kept[wanted[row]] = order[row - span.start].cpu()
    return torch.stack(kept)  # type: ignore[arg-type]


def ranking_orders(
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    rows: np.ndarray,
    ranking: str,
    *,
    k: int | None = None,
    link_rerank: LinkRerankSettings | None = None,
    batch_size: int = 256,
) -> Tensor:
    """int64 [len(rows), G]: the gallery ranked for query `rows` by `ranking` (one of
    `hdml_ext.reid.RANKINGS`, as `evaluate_reid` ranks), best first.

    query [Q, D], gallery [G, D]: embeddings. k: F-Graph size (the model's own when None);
    link_rerank: the settings of the link_rerank rankings (their defaults when None). Rankings
    of each query alone (graph, distance, k_reciprocal_per_query, link_rerank) are computed for
    `rows` only; those of all queries together (k_reciprocal, link_rerank_together) for every
    query, as evaluation does.
    """
    picked = query[torch.as_tensor(rows, dtype=torch.long, device=query.device)]
    if ranking == "distance":
        return torch.cat([order.cpu() for _, order in distance_order(picked, gallery)])
    if ranking == "k_reciprocal_per_query":
        blocks = k_reciprocal_order(picked, gallery, queries_together=False)
        return torch.cat([order.cpu() for _, order in blocks])
    if ranking == "k_reciprocal":
        return _blocks_of_rows(k_reciprocal_order(query, gallery, queries_together=True), rows)
    if ranking in ("link_rerank", "link_rerank_together"):
        together = ranking == "link_rerank_together"
        settings = replace(link_rerank or LinkRerankSettings(), queries_together=together)
        blocks = link_rerank_order(model, query if together else picked, gallery, settings, k=k,
                                   batch_size=batch_size)
        if together:
            return _blocks_of_rows(blocks, rows)
        return torch.cat([order.cpu() for _, order in blocks])
    if ranking == "graph":
        k = int(model.to_config()["k"]) if k is None else k
        neighbours, scores = query_link_scores(model, picked, gallery, k, batch_size=batch_size)
        return torch.cat([order.cpu() for _, order in graph_order(picked, gallery, neighbours, scores)])
    raise ValueError(f"ranking should be one of {', '.join(map(repr, VISRANK_RANKINGS))} for ranked-list "
                     f"pictures, got {ranking!r}")


def write_visrank(
    folder: str | os.PathLike,
    model: nn.Module,
    query: Tensor,
    gallery: Tensor,
    query_images: RowSource,
    gallery_images: RowSource,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    *,
    count: int,
    ranking: str,
    k: int | None = None,
    link_rerank: LinkRerankSettings | None = None,
    batch_size: int = 256,
    top: int = 10,
    display_height: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[Path]:
    """Write `count` ranked-list PNGs into `folder` and return their paths.

    query [Q, D], gallery [G, D]: embeddings; query_images, gallery_images: the same rows' images
    (normalised with `mean` / `std`; tensors or data sets). Each picture (`draw_ranked_lists`)
    holds a row for `ranking` and, unless that is "distance" itself, a row for distance ranking
    below it (k, link_rerank, batch_size: as `ranking_orders`). Files are named
    query<id>_pid<pid>_cam<camid>.png after the query's row id.
    """
    rows = visrank_queries(q_pids, q_camids, g_pids, g_camids, count)
    if rows.size == 0:
        return []
    g_pids, g_camids = _numpy(g_pids), _numpy(g_camids)
    q_pids, q_camids = _numpy(q_pids), _numpy(q_camids)
    names = [ranking] if ranking == "distance" else [ranking, "distance"]
    orders = {name: ranking_orders(model, query, gallery, rows, name, k=k, link_rerank=link_rerank,
                                   batch_size=batch_size) for name in names}
    images = read_rows(query_images, torch.from_numpy(rows))
    paths = []
    for position, (row, image) in enumerate(zip(rows.tolist(), images)):
        pid, camid = int(q_pids[row]), int(q_camids[row])
        path = Path(folder) / f"query{row:05d}_pid{pid}_cam{camid}.png"
        rankings = [(name, orders[name][position]) for name in names]
        paths.append(save_ranked_lists(path, image, gallery_images, rankings, pid, camid, g_pids, g_camids,
                                       top=top, display_height=display_height, mean=mean, std=std))
    return paths
