"""`run_demo`: train HDML and a node-only baseline on the digits, then cluster and rank the
held-out images against baselines (docs/demo.md)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

from ...data import load_digits_features
from ..checkpoint import seed_everything
from ..clustering import clustering_metrics, link_edges, similarity_edges
from ..inference import embed_rows
from ..models import new_model
from ..reid import distance_order, evaluate_orders, graph_order, query_link_scores
from ..settings import dump_settings
from ..trainer import Trainer
from .config import DemoSettings, demo_settings
from .report import CLOSED_SET_NOTE, format_table, plot, readme
from .splits import DemoSplits, load_demo_splits
from .thresholds import choose_threshold, diagnostics_text, edge_diagnostics, propagate

#: The clusterings by propagation: (results row, edge scores, whose embeddings).
PROPAGATION_ROWS = (
    ("hdml", "link", "hdml"),
    ("hdml_embeddings_no_graph", "similarity", "hdml"),
    ("node_only", "similarity", "node_only"),
)


def run_demo(
    out_dir: str | os.PathLike, settings: DemoSettings | None = None, *, log: Callable[[str], None] = print
) -> dict:
    """Run the demo (docs/demo.md) into `out_dir`; returns the results.json dict."""
    settings = settings or demo_settings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.yaml").write_text(dump_settings(settings), encoding="utf-8")
    started = time.perf_counter()
    data = load_demo_splits(settings.data)
    log(
        f"digits: {len(data.splits.train)} train images ({len(data.fit)} to fit, {len(data.val)} to "
        f"validate), {len(data.query)} query, {len(data.gallery)} gallery images "
        f"({settings.data.height}x{settings.data.width}), {data.splits.num_train_classes} classes, "
        "random camera ids"
    )
    log(CLOSED_SET_NOTE)
    hdml, hdml_history, hdml_seconds = _train("hdml", settings, data, settings.model.link_weight, out, log)
    base, base_history, base_seconds = _train("node_only", settings, data, 0.0, out, log)
    with torch.no_grad():
        emb = {name: _embed_splits(model, data) for name, model in (("hdml", hdml), ("node_only", base))}
    clustering = _Clustering(hdml, emb, data, settings)
    chosen, propagated = clustering.propagate_all(log)
    diagnostics = clustering.diagnostics()
    log(f"  hdml link edges: {diagnostics_text(diagnostics)}")
    results, detail, cmc, embeddings_2d = _evaluate(hdml, emb, data, propagated, settings)

    total = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    seconds = {"total": total, "train_hdml": hdml_seconds, "train_node_only": base_seconds}
    info = _run_info(seconds, data, clustering, chosen, diagnostics, detail)
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(readme(results, info, settings), encoding="utf-8")
    plot(out, {"HDML": hdml_history, "node-only": base_history}, cmc, embeddings_2d, clustering.test_labels)
    log("")
    log(format_table(results))
    log("")
    log(
        "Re-ID: query vs gallery (Market-1501 protocol). Clustering: all held-out images; hdml, "
        "hdml_embeddings_no_graph and node_only by propagation (link scores vs cosine similarity, "
        "thresholds chosen on the validation split); *_kmeans_true_k and kmeans_pixels by k-means "
        f"told the true number of classes ({clustering.num_classes}), an oracle the propagation rows "
        "do not get."
    )
    log(CLOSED_SET_NOTE)
    log(f"wrote {out / 'results.json'} and plots in {out}/ ({total:.0f} s in all)")
    return results


def _train(
    name: str, settings: DemoSettings, data: DemoSplits, link_weight: float, out: Path,
    log: Callable[[str], None],
) -> tuple[nn.Module, list[dict], float]:  # fmt: skip
    """HDML trained on the fit split with `link_weight` (0: the node-only baseline), in eval mode;
    its step log and training seconds."""
    seed_everything(settings.train.seed)
    model_settings = replace(settings.model, link_weight=link_weight)
    model = new_model(model_settings, num_classes=data.splits.num_train_classes)
    started = time.perf_counter()
    history = Trainer(model, data.fit.images, data.fit.labels, settings.train, out_dir=out / name).fit()
    seconds = time.perf_counter() - started
    last = history[-1]
    log(
        f"  trained {name} for {settings.train.epochs} epochs ({len(history)} steps) in {seconds:.0f} s; "
        f"last step loss {last['loss']:.3f} (node {last['node']:.3f}, link {last['link']:.3f})"
    )
    return model.eval(), history, seconds


def _embed_splits(model: nn.Module, data: DemoSplits) -> dict[str, Tensor]:
    """The model's embeddings of the fit, val, query and gallery images, and of test = query + gallery."""
    splits = (("fit", data.fit), ("val", data.val), ("query", data.query), ("gallery", data.gallery))
    parts = {split: embed_rows(model, rows.images) for split, rows in splits}
    parts["test"] = torch.cat([parts["query"], parts["gallery"]])
    return parts


class _Clustering:
    """The propagation clusterings: each one's edges on the validation split choose its threshold
    (unless the settings fix one), then the held-out edges are propagated at that threshold."""

    def __init__(self, hdml: nn.Module, emb: dict, data: DemoSplits, settings: DemoSettings) -> None:
        self.hdml, self.emb = hdml, emb
        self.split_labels = {
            "fit": data.fit.labels.numpy(),
            "val": data.val.labels.numpy(),
            "test": torch.cat([data.query.labels, data.gallery.labels]).numpy(),
        }
        self.test_labels = self.split_labels["test"]
        self.num_classes = len(np.unique(self.test_labels))
        cluster = settings.cluster
        self.fixed = {"link": cluster.threshold, "similarity": cluster.similarity_threshold}
        self.config = replace(cluster.cluster_config(), threshold=0.5)
        self.k = settings.model.k if self.config.k is None else self.config.k
        # The validation split is smaller than the held-out set: max_size scales with the image count.
        max_size = self.config.max_size
        if max_size is not None:
            max_size = max(1, round(max_size * self.split_labels["val"].size / self.test_labels.size))
        self.val_config = replace(self.config, max_size=max_size)

    def edges(self, kind: str, name: str, split: str) -> tuple:
        """(src, dst, score) of the kNN edges of `name`'s embeddings of `split`, scored by HDML's
        link head (kind "link") or cosine similarity ("similarity")."""
        if kind == "link":
            return link_edges(self.hdml, self.emb[name][split], self.k, batch_size=self.config.batch_size)
        return similarity_edges(self.emb[name][split], self.k)

    def propagate_all(self, log: Callable[[str], None]) -> tuple[dict, dict]:
        """({row: its threshold and where it was chosen}, {row: held-out cluster labels})."""
        chosen: dict[str, dict] = {}
        propagated: dict[str, np.ndarray] = {}
        for row, kind, name in PROPAGATION_ROWS:
            if self.fixed[kind] is None:
                edges = self.edges(kind, name, "val")
                threshold, metrics = choose_threshold(edges, self.split_labels["val"], self.val_config)
                chosen[row] = {"threshold": threshold, "chosen_on": "validation", "validation": metrics}
            else:
                threshold = float(self.fixed[kind])
                chosen[row] = {"threshold": threshold, "chosen_on": "settings"}
            test_edges = self.edges(kind, name, "test")
            propagated[row] = propagate(test_edges, self.test_labels.size, self.config, threshold)
            log(f"  {row}: propagation threshold {threshold:.6g} ({chosen[row]['chosen_on']})")
        return chosen, propagated

    def diagnostics(self) -> dict:
        """`edge_diagnostics` of HDML's link edges on the fit, val and test splits."""
        return {
            split: edge_diagnostics(
                self.edges("link", "hdml", split), self.edges("similarity", "hdml", split), labels
            )
            for split, labels in self.split_labels.items()
        }


def _kmeans(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    return KMeans(n_clusters=num_clusters, n_init=10, random_state=seed).fit_predict(features)


def _evaluate(
    hdml: nn.Module, emb: dict, data: DemoSplits, propagated: dict, settings: DemoSettings
) -> tuple[dict, dict, dict, dict]:
    """Re-ID and clustering of every method on the held-out images: (results.json, every
    clustering's metrics, CMC curves, embeddings for the 2-D plot)."""
    query, gallery = data.query, data.gallery
    pids = (query.labels, gallery.labels, query.camids, gallery.camids)
    test_labels = torch.cat([query.labels, gallery.labels]).numpy()
    num_classes, seed = len(np.unique(test_labels)), settings.train.seed
    results: dict = {"hdml": {}, "baselines": {}}
    detail: dict[str, dict] = {}

    def add(row: str, reid: dict, labels: np.ndarray) -> None:
        detail[row] = clustering_metrics(test_labels, labels)
        summary = {key: reid[key] for key in ("mAP", "rank1", "rank5", "rank10")}
        summary["mAP"] = float(summary["mAP"])
        summary.update({key: detail[row][key] for key in ("nmi", "pairwise_f", "bcubed_f")})
        (results if row == "hdml" else results["baselines"])[row] = summary

    # HDML: link scores on each query's F-Graph, then distance; propagation over link scores.
    q_emb, g_emb = emb["hdml"]["query"], emb["hdml"]["gallery"]
    neighbours, scores = query_link_scores(hdml, q_emb, g_emb, settings.model.k)
    reid = evaluate_orders(graph_order(q_emb, g_emb, neighbours, scores), *pids)
    add("hdml", reid, propagated["hdml"])
    cmc, embeddings_2d = {"HDML (graph)": reid["cmc"]}, {"HDML": emb["hdml"]["test"].numpy()}
    # The same HDML embeddings without the graph: distance ranking; propagation over cosine
    # similarity on the same kNN edges (what the link head adds), and k-means told the true K.
    reid = evaluate_orders(distance_order(q_emb, g_emb), *pids)
    add("hdml_embeddings_no_graph", reid, propagated["hdml_embeddings_no_graph"])
    add("hdml_embeddings_kmeans_true_k", reid, _kmeans(emb["hdml"]["test"].numpy(), num_classes, seed))
    # Node-only backbone: distance ranking; the same two clusterings.
    reid = evaluate_orders(distance_order(emb["node_only"]["query"], emb["node_only"]["gallery"]), *pids)
    add("node_only", reid, propagated["node_only"])
    add("node_only_kmeans_true_k", reid, _kmeans(emb["node_only"]["test"].numpy(), num_classes, seed))
    cmc["node-only (distance)"], embeddings_2d["node-only"] = reid["cmc"], emb["node_only"]["test"].numpy()
    # Raw pixels (the 8x8 digits as 64 values): distance ranking, k-means with the true K.
    pixels = torch.from_numpy(load_digits_features().features)
    q_pix, g_pix = pixels[query.indices], pixels[gallery.indices]
    reid = evaluate_orders(distance_order(q_pix, g_pix), *pids)
    test_pix = torch.cat([q_pix, g_pix]).numpy()
    add("kmeans_pixels", reid, _kmeans(test_pix, num_classes, seed))
    cmc["raw pixels (distance)"], embeddings_2d["raw pixels"] = reid["cmc"], test_pix
    return results, detail, cmc, embeddings_2d


def _run_info(
    seconds: dict, data: DemoSplits, clustering: _Clustering, chosen: dict, diagnostics: dict, detail: dict
) -> dict:
    """run_info.json: seconds, image counts, what each clustering is, the chosen thresholds, link
    edge diagnostics and every clustering's metrics."""
    config, num_classes = clustering.config, clustering.num_classes
    propagation_text = (
        f"pseudo-label propagation over the kNN edges (k {clustering.k}) at a threshold chosen on the "
        f"validation split (max_size {config.max_size}, step {config.step})"
    )
    return {
        "seconds": seconds,
        "num_images": {
            "train": len(data.splits.train), "fit": len(data.fit), "validation": len(data.val),
            "query": len(data.query), "gallery": len(data.gallery),
        },
        "clustering": {
            "hdml": f"{propagation_text}, edges scored by the link head",
            "hdml_embeddings_no_graph": f"{propagation_text}, edges scored by cosine similarity",
            "node_only": f"{propagation_text}, edges scored by cosine similarity",
            "*_kmeans_true_k, kmeans_pixels": f"k-means told the true number of classes ({num_classes})",
        },
        "thresholds": chosen,
        "link_edge_diagnostics": diagnostics,
        "held_out_clustering": detail,
        "note": CLOSED_SET_NOTE,
    }  # fmt: skip
