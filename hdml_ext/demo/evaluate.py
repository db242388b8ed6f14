"""Scoring trained models on the held-out identities, as the demo and benchmarks/bench_ablation.py
report them: Re-ID rankings (graph, distance, k-reciprocal re-ranking), clusterings (propagation
over link scores or cosine similarity with settings chosen on the validation split; k-means told
the true K as an oracle), and how well link scores separate the held-out kNN edges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

from ..cluster import (
    ClusterConfig,
    choose_clustering,
    clustering_metrics,
    edge_diagnostics,
    link_edges,
    similarity_edges,
)
from ..cluster.selection import propagate
from ..engine.inference import embed_rows
from ..reid import (
    LinkRerankSettings,
    choose_link_rerank,
    distance_order,
    evaluate_orders,
    graph_order,
    k_reciprocal_order,
    link_rerank_order,
    query_link_scores,
)
from ..reid.selection import selection_score
from .config import DemoSettings
from .splits import DemoSplits, query_gallery, take

#: Every row's metrics, in results.json and the table; None where a row does not rank or cluster.
REID_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
CLUSTER_KEYS = ("nmi", "pairwise_f", "bcubed_f")
METRIC_KEYS = REID_KEYS + CLUSTER_KEYS


@dataclass(frozen=True)
class Embedded:
    """One model's embeddings [N, D] of each split; test = query rows, then gallery rows."""

    fit: Tensor
    val: Tensor
    query: Tensor
    gallery: Tensor

    @property
    def test(self) -> Tensor:
        return torch.cat([self.query, self.gallery])


@torch.no_grad()
def embed_splits(model: nn.Module, data: DemoSplits) -> Embedded:
    """`model.embed` of every split's images (CPU, eval mode)."""
    model.eval()
    splits = (data.fit, data.val, data.query, data.gallery)
    return Embedded(*(embed_rows(model, split.images) for split in splits))


def reid_row(orders: Iterable[tuple[slice, Tensor]], data: DemoSplits) -> dict:
    """REID_KEYS and the CMC curve of a ranking of the gallery for every query (Market-1501 protocol)."""
    query, gallery = data.query, data.gallery
    result = evaluate_orders(orders, query.labels, gallery.labels, query.camids, gallery.camids)
    return {**{key: float(result[key]) for key in REID_KEYS}, "cmc": result["cmc"]}


def graph_ranking(model: nn.Module, emb: Embedded, data: DemoSplits, k: int) -> dict:
    """The paper's Re-ID ranking: each query's k F-Graph neighbours by link score, then the rest
    by distance."""
    neighbours, scores = query_link_scores(model, emb.query, emb.gallery, k)
    return reid_row(graph_order(emb.query, emb.gallery, neighbours, scores), data)


def validation_reid(emb: Embedded, data: DemoSplits) -> tuple[Tensor, Tensor, tuple]:
    """The validation identities laid out as Re-ID query and gallery (`query_gallery`): (query
    embeddings [Q, D], gallery embeddings [G, D], (q_pids, g_pids, q_camids, g_camids))."""
    query_rows, gallery_rows = query_gallery(data.val)
    query, gallery = take(data.val, query_rows), take(data.val, gallery_rows)
    pids = (query.labels, gallery.labels, query.camids, gallery.camids)
    return emb.val[torch.from_numpy(query_rows)], emb.val[torch.from_numpy(gallery_rows)], pids


def choose_rankings(model: nn.Module, emb: Embedded, data: DemoSplits, k: int) -> dict:
    """HDML's rankings chosen on the validation identities (laid out as query and gallery by
    `query_gallery`): re-ranking with learned edges of each query alone and of all queries
    together (`hdml_ext.reid.choose_link_rerank` over its SEARCH_SPACE), and the default: the
    paper's graph rule or inductive re-ranking with learned edges, whichever scores higher
    there. Returns {"default", "link_rerank", "link_rerank_together", "validation"}."""
    val_query, val_gallery, pids = validation_reid(emb, data)
    neighbours, scores = query_link_scores(model, val_query, val_gallery, k)
    graph = evaluate_orders(graph_order(val_query, val_gallery, neighbours, scores), *pids)
    validation = {"graph": {"mAP": float(graph["mAP"]), "rank1": float(graph["rank1"])}}
    chosen = {}
    for name, together in (("link_rerank", False), ("link_rerank_together", True)):
        settings, metrics, _ = choose_link_rerank(model, val_query, val_gallery, *pids,
                                                  queries_together=together)
        chosen[name], validation[name] = settings, metrics
    better = selection_score(validation["link_rerank"]) > selection_score(validation["graph"])
    return {"default": "link_rerank" if better else "graph", **chosen, "validation": validation,
            "validation_images": {"query": int(val_query.shape[0]), "gallery": int(val_gallery.shape[0])}}


def link_ranking(model: nn.Module, emb: Embedded, data: DemoSplits, settings: LinkRerankSettings) -> dict:
    """Re-ranking with learned edges (`hdml_ext.reid.link_rerank`) of the held-out queries."""
    return reid_row(link_rerank_order(model, emb.query, emb.gallery, settings), data)


def distance_ranking(emb: Embedded, data: DemoSplits) -> dict:
    return reid_row(distance_order(emb.query, emb.gallery), data)


def k_reciprocal_ranking(emb: Embedded, data: DemoSplits, queries_together: bool = True) -> dict:
    """k-reciprocal re-ranking (Zhong et al. 2017; k1 20, k2 6, lambda 0.3) of the same
    embeddings: of all queries at once (the reference's way), or of each query with the gallery
    alone (queries_together=False, as graph ranking sees a query)."""
    return reid_row(k_reciprocal_order(emb.query, emb.gallery, queries_together=queries_together), data)


class Clusterer:
    """Propagation over the kNN edges of the held-out rows, with its threshold and max_size chosen
    on the validation split's edges (the held-out rows choose nothing); k-means told the true K."""

    def __init__(self, data: DemoSplits, settings: DemoSettings) -> None:
        cluster = settings.cluster
        self.data = data
        self.k = settings.model.k if cluster.k is None else cluster.k
        self.config: ClusterConfig = replace(cluster.cluster_config(), threshold=0.5)
        self.fixed = {"link": cluster.threshold, "similarity": cluster.similarity_threshold}
        fixed_size = cluster.max_size is not None
        self.max_sizes = [cluster.max_size] if fixed_size else list(cluster.max_size_candidates)
        # Closed-set classes grow with the split, so a cap chosen on validation scales to the test
        # split; open-set identities keep their size (views per identity) whatever the split.
        self.size_scale = 1.0 if data.open_set else data.test_labels.size / len(data.val)
        self.seed = settings.train.seed

    def edges(self, model: nn.Module | None, embeddings: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(src, dst, score) of the kNN edges of `embeddings`, scored by `model`'s link head, or
        by cosine similarity when model is None."""
        if model is None:
            return similarity_edges(embeddings, self.k)
        return link_edges(model, embeddings, self.k, batch_size=self.config.batch_size)

    def propagation(self, model: nn.Module | None, emb: Embedded) -> tuple[np.ndarray, dict]:
        """(held-out cluster labels, the chosen settings and their validation metrics)."""
        kind = "similarity" if model is None else "link"
        if self.fixed[kind] is None:
            threshold, max_size, metrics = choose_clustering(
                self.edges(model, emb.val), self.data.val.labels.numpy(), self.config, self.max_sizes
            )
            choice = {"threshold": threshold, "max_size": max_size, "chosen_on": "validation",
                      "validation": metrics}
        else:
            threshold, max_size = float(self.fixed[kind]), self.max_sizes[0]
            choice = {"threshold": threshold, "max_size": max_size, "chosen_on": "settings"}
        if max_size is not None:
            max_size = max(1, round(max_size * self.size_scale))
        test_config = replace(self.config, max_size=max_size)
        labels = propagate(self.edges(model, emb.test), self.data.test_labels.size, test_config, threshold)
        return labels, {**choice, "held_out_max_size": max_size}

    def kmeans_true_k(self, features: np.ndarray) -> np.ndarray:
        """k-means told the true number of held-out identities: an oracle the propagation rows do not get."""
        num_clusters = len(np.unique(self.data.test_labels))
        return KMeans(n_clusters=num_clusters, n_init=3, random_state=self.seed).fit_predict(features)

    def metrics(self, predicted: np.ndarray) -> dict:
        """CLUSTER_KEYS of held-out cluster labels."""
        scores = clustering_metrics(self.data.test_labels, predicted)
        return {key: float(scores[key]) for key in CLUSTER_KEYS}


def row(reid: dict | None = None, clusters: dict | None = None, **extra: object) -> dict:
    """One results.json row: every METRIC_KEYS entry (None where the method does not rank or
    cluster), then `extra` (e.g. "oracle": True, link_auc)."""
    values = {key: None for key in METRIC_KEYS}
    values.update({key: reid[key] for key in REID_KEYS} if reid else {})
    values.update(clusters or {})
    return {**values, **extra}


def score_hdml(model: nn.Module, emb: Embedded, data: DemoSplits, clusterer: Clusterer) -> tuple[dict, dict]:
    """The HDML row (its validated default ranking, link-score propagation, link and cosine AUC on
    the held-out kNN edges) and its details: the CMC curve, the cluster labels, the chosen
    clustering settings, the edge diagnostics of the validation and held-out edges, the rows of
    each HDML ranking (the paper's graph rule, re-ranking with learned edges of each query and
    of all queries) and the ranking choices (`choose_rankings`)."""
    rankings = choose_rankings(model, emb, data, clusterer.k)
    by_name = {
        "graph": graph_ranking(model, emb, data, clusterer.k),
        "link_rerank": link_ranking(model, emb, data, rankings["link_rerank"]),
        "link_rerank_together": link_ranking(model, emb, data, rankings["link_rerank_together"]),
    }
    reid = by_name[rankings["default"]]
    labels, choice = clusterer.propagation(model, emb)
    diagnostics = {
        split: edge_diagnostics(
            clusterer.edges(model, embeddings), clusterer.edges(None, embeddings), split_labels
        )
        for split, embeddings, split_labels in (
            ("fit", emb.fit, data.fit.labels.numpy()),
            ("val", emb.val, data.val.labels.numpy()),
            ("test", emb.test, data.test_labels),
        )
    }
    test = diagnostics["test"]
    result = row(reid, clusterer.metrics(labels), link_auc=test["link_auc"], cosine_auc=test["cosine_auc"])
    ranking_rows = {
        "hdml_graph_rule": row(by_name["graph"]),
        "hdml_link_rerank": row(by_name["link_rerank"]),
        "hdml_link_rerank_together": row(by_name["link_rerank_together"]),
    }
    choices = {
        "default": rankings["default"],
        **{name: rankings[name].to_dict() for name in ("link_rerank", "link_rerank_together")},
        "validation": rankings["validation"], "validation_images": rankings["validation_images"],
    }
    return result, {"cmc": reid["cmc"], "clusters": labels, "choice": choice, "diagnostics": diagnostics,
                    "rows": ranking_rows, "ranking_choices": choices}


def score_embeddings(name: str, emb: Embedded, data: DemoSplits, clusterer: Clusterer) -> tuple[dict, dict]:
    """The no-graph rows of one model's embeddings: `name` (distance ranking, cosine-similarity
    propagation), `name`_k_reciprocal (re-ranked, all queries at once; it ranks only),
    `name`_k_reciprocal_per_query (each query re-ranked with the gallery alone, the setting of
    graph ranking; it ranks only) and `name`_kmeans_true_k (the oracle; it clusters only).
    Returns ({row name: row}, {"cmc": distance CMC, "choice": the propagation's chosen settings})."""
    distance = distance_ranking(emb, data)
    labels, choice = clusterer.propagation(None, emb)
    rows = {
        name: row(distance, clusterer.metrics(labels)),
        f"{name}_k_reciprocal": row(k_reciprocal_ranking(emb, data)),
        f"{name}_k_reciprocal_per_query": row(k_reciprocal_ranking(emb, data, queries_together=False)),
        f"{name}_kmeans_true_k": row(
            None, clusterer.metrics(clusterer.kmeans_true_k(emb.test.numpy())), oracle=True
        ),
    }
    return rows, {"cmc": distance["cmc"], "choice": choice}
