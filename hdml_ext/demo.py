"""`hdml demo`: HDML end to end on scikit-learn's digits, on a CPU, in a few minutes.

The digits (1,797 8x8 images of 10 classes) ship with scikit-learn, so nothing is downloaded.
`hdml_ext.data.load_digits_reid` splits them per class into train / query / gallery and gives
every image a random camera id. The demo

1. carves a validation split (data.val_fraction of each class) from the training images;
2. trains HDML (a small resnet18 HA-Net, small RE-GCN, small k) on the rest of them (fit);
3. trains the same backbone with the node loss alone (link_weight = 0, same batches and
   schedule): the no-graph baseline;
4. evaluates on the held-out images:
   - Re-ID, query vs gallery, Market-1501 protocol (same-camera matches of the query's identity
     are ignored): HDML ranks each query's k graph neighbours by link score, then the rest by
     distance; the baselines rank by distance (raw pixels; node-only embeddings);
   - clustering of all held-out images (query + gallery) by the same pseudo-label propagation
     over the same kNN edges: HDML's edges scored by its link head; the no-graph baselines'
     edges (node-only embeddings, and HDML's own embeddings) by cosine similarity. Each
     method's threshold is the one that clusters the validation split best (mean of NMI,
     pairwise F and BCubed F over a grid of its own score quantiles); max_size scales with the
     number of images clustered. For reference, k-means told the true number of classes (10),
     an oracle the propagation rows do not get, on raw pixels and both embeddings;
5. writes results.json, run_info.json (chosen thresholds, cluster counts), settings.yaml, the
   step logs and PNG plots to the output folder, and prints a table.

Why the graph does not help here: a digit class holds ~70-90 images in each split, far more
than k = 10, so a trained embedding's F-Graphs are almost all positives (about 99% of the
training kNN edges). The link loss is then minimised by answering "same" everywhere; the link
head's scores rank held-out kNN edges worse than plain cosine similarity does, and give nearly
every wrong edge a high score, so propagation over them either merges classes or, once
max_size re-splits them at higher thresholds, fragments them. run_info.json records the
thresholds and cluster counts. The paper's setting (Market-1501, ~17 images per identity,
k = 50) is the opposite: most F-Graph nodes are negatives. k = 50 was no better here on the
validation split.

The digits have only 10 classes, so the held-out images show the same 10 identities as the
training images (closed-set), unlike Market-1501, whose test identities are never seen in
training. Settings are chosen without looking at the held-out split.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .data import TensorSplit, load_digits_features, load_digits_reid
from .engine import (
    ClusterConfig,
    TrainConfig,
    Trainer,
    clustering_metrics,
    distance_order,
    embed_rows,
    evaluate_orders,
    graph_order,
    link_edges,
    propagate_edges,
    query_link_scores,
    seed_everything,
)
from .engine.clustering import similarity_edges
from .settings import dump_settings

#: The demo's settings: the paper's model and schedule scaled down to digits on a 2-core CPU.
#: Epochs, milestones, drop_last and max_size were compared on a validation split carved from the
#: training images, never on the held-out split. cluster.threshold (link scores) and
#: cluster.similarity_threshold (cosine, the no-graph rows) are None: chosen in each run on the
#: validation split (`_choose_threshold`); a number fixes them.
DEMO_SETTINGS: dict[str, dict] = {
    "data": {
        "height": 16,
        "width": 16,
        "seed": 0,
        "train_fraction": 0.5,
        "query_fraction": 0.2,
        "num_cameras": 6,
        "eval_stride": 1,
        "val_fraction": 0.2,
    },
    "model": {
        "backbone": "resnet18",
        "k": 10,
        "use_nfa": True,
        "nfe_stages": [2, 3, 4],
        "gcn_dims": [256, 128],
        "attention": True,
        "node_weight": 1.0,
        "link_weight": 1.0,
        "lo": 0.3,
        "hi": 0.9,
    },
    "train": {
        "epochs": 10,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "milestones": [7],
        "gamma": 0.1,
        "identities_per_batch": 4,
        "focus_per_identity": 8,
        "drop_last": True,
        "graph_lr_mult": 1.0,
        "rebuild_every": 1,
        "flip": False,
        "embed_batch_size": 256,
        "seed": 0,
        "device": "cpu",
        "num_workers": 0,
        "progress": True,
    },
    "cluster": {
        "k": None,
        "threshold": None,
        "similarity_threshold": None,
        "max_size": 100,
        "step": 0.1,
        "max_iter": 100,
        "batch_size": 256,
    },
}

#: `--quick`: a seconds-long smoke run (tests), not meaningful numbers.
QUICK_OVERRIDES: dict[str, dict] = {
    "data": {"height": 8, "width": 8, "train_fraction": 0.1, "eval_stride": 4},
    "model": {"k": 4, "gcn_dims": [16]},
    "train": {"epochs": 1, "milestones": [], "identities_per_batch": 2, "focus_per_identity": 2},
}

CLOSED_SET_NOTE = (
    "Note: the digits have only 10 classes, so the held-out (query/gallery) images show the same "
    "10 identities as the training images (closed-set), unlike Market-1501 where test identities "
    "are unseen in training."
)

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "nmi", "pairwise_f", "bcubed_f")


def demo_settings(quick: bool = False) -> dict[str, dict]:
    """The demo's default settings (with the `--quick` overrides when asked)."""
    settings = {section: dict(values) for section, values in DEMO_SETTINGS.items()}
    if quick:
        for section, values in QUICK_OVERRIDES.items():
            settings[section].update(values)
    return settings


def _every(split: TensorSplit, stride: int) -> TensorSplit:
    if stride == 1:
        return split
    keep = slice(None, None, stride)
    return TensorSplit(split.images[keep], split.labels[keep], split.camids[keep], split.indices[keep])


def _kmeans(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=num_clusters, n_init=10, random_state=seed).fit_predict(features)


def _reid_summary(result: dict) -> dict:
    return {
        "mAP": float(result["mAP"]),
        "rank1": result["rank1"],
        "rank5": result["rank5"],
        "rank10": result["rank10"],
    }


def _cluster_summary(metrics: dict) -> dict:
    return {key: metrics[key] for key in ("nmi", "pairwise_f", "bcubed_f")}


def _split_validation(train: TensorSplit, fraction: float, seed: int) -> tuple[TensorSplit, TensorSplit]:
    """(fit, validation): `fraction` of each class's training images (at least one, and at least
    one left to fit) become the validation split, which chooses the clustering thresholds."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"data.val_fraction should be a number strictly between 0 and 1, got {fraction!r}")
    rng = np.random.default_rng(seed + 1)
    labels = train.labels.numpy()
    val = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if members.size < 2:
            raise ValueError(f"class {cls} has {members.size} training image(s); a validation split needs 2")
        val.append(members[: min(max(1, round(fraction * members.size)), members.size - 1)])
    val_rows = np.sort(np.concatenate(val))
    fit_rows = np.setdiff1d(np.arange(labels.size), val_rows)

    def take(rows: np.ndarray) -> TensorSplit:
        index = torch.from_numpy(rows)
        parts = (train.images, train.labels, train.camids, train.indices)
        return TensorSplit(*(part[index] for part in parts))

    return take(fit_rows), take(val_rows)


def _train(name: str, settings: dict, train: TensorSplit, num_classes: int, link_weight: float,
           out_dir: Path, log: Callable[[str], None]):
    from .nn import HDML

    seed_everything(settings["train"]["seed"])
    model_cfg = dict(settings["model"], link_weight=link_weight)
    model = HDML(num_classes, **model_cfg)
    config = TrainConfig.from_dict(settings["train"])
    started = time.perf_counter()
    history = Trainer(model, train.images, train.labels, config, out_dir=out_dir / name).fit()
    seconds = time.perf_counter() - started
    last = history[-1]
    log(
        f"  trained {name} for {config.epochs} epochs ({len(history)} steps) in {seconds:.0f} s; "
        f"last step loss {last['loss']:.3f} (node {last['node']:.3f}, link {last['link']:.3f})"
    )
    return model.eval(), history, seconds


#: Candidate thresholds: these quantiles of a method's own validation edge scores, so that link
#: scores (in [0, 1], often near 1) and cosine similarities get the same search.
THRESHOLD_QUANTILES = np.linspace(0.0, 0.99, 100)


def _selection_score(metrics: dict) -> float:
    """What the threshold search maximises on the validation split."""
    return (metrics["nmi"] + metrics["pairwise_f"] + metrics["bcubed_f"]) / 3.0


def _choose_threshold(edges: tuple, labels: np.ndarray, config: ClusterConfig) -> tuple[float, dict]:
    """The threshold of `propagate_edges` that maximises `_selection_score` on validation
    `edges` (src, dst, score) of images with true `labels`; ties keep the lowest threshold.
    Returns (threshold, the validation metrics at it)."""
    src, dst, score = edges
    best: tuple[float, float, dict] | None = None
    for quantile_value in np.unique(np.quantile(score.numpy().astype(np.float64), THRESHOLD_QUANTILES)):
        threshold = float(quantile_value)
        predicted, _ = propagate_edges(labels.size, src, dst, score,
                                       **replace(config, threshold=threshold).propagation_settings())
        metrics = clustering_metrics(labels, predicted)
        value = _selection_score(metrics)
        if best is None or value > best[0]:
            best = (value, threshold, metrics)
    assert best is not None
    return best[1], best[2]


def _edge_diagnostics(link: tuple, cosine: tuple, labels: np.ndarray) -> dict:
    """How well the link head separates the kNN edges of one split, next to cosine similarity.

    link, cosine: (src, dst, score) of the same kNN edges; labels: [N] class of each row.
    Returns the share of same-class edges, the ROC AUC of link scores and of cosine similarity
    for "same class", and how many different-class edges get a link score >= 0.9.
    """
    from sklearn.metrics import roc_auc_score

    src, dst, link_score = (t.numpy() for t in link)
    same = labels[src] == labels[dst]
    both = 0 < same.sum() < same.size
    return {
        "edges": int(same.size),
        "same_class_share": float(same.mean()),
        "link_auc": float(roc_auc_score(same, link_score)) if both else None,
        "cosine_auc": float(roc_auc_score(same, cosine[2].numpy())) if both else None,
        "wrong_edges": int((~same).sum()),
        "wrong_edges_link_score_ge_0.9": int(((~same) & (link_score >= 0.9)).sum()),
    }


def _diagnostics_text(diagnostics: dict) -> str:
    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return "; ".join(
        f"{split}: {d['same_class_share']:.3f} same-class, link AUC {auc(d['link_auc'])} "
        f"(cosine {auc(d['cosine_auc'])}), {d['wrong_edges_link_score_ge_0.9']}/{d['wrong_edges']} "
        "wrong edges scored >= 0.9"
        for split, d in diagnostics.items()
    )


def _propagate(edges: tuple, num_nodes: int, config: ClusterConfig, threshold: float) -> np.ndarray:
    src, dst, score = edges
    labels, _ = propagate_edges(num_nodes, src, dst, score,
                                **replace(config, threshold=threshold).propagation_settings())
    return labels


def run_demo(
    out_dir: str | os.PathLike, settings: dict | None = None, *, log: Callable[[str], None] = print
) -> dict:
    """Run the demo (see the module docstring); returns the results.json dict."""
    settings = settings or demo_settings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.yaml").write_text(dump_settings(settings), encoding="utf-8")
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = settings["data"]
    splits = load_digits_reid(
        height=data["height"],
        width=data["width"],
        seed=data["seed"],
        train_fraction=data["train_fraction"],
        query_fraction=data["query_fraction"],
        num_cameras=data["num_cameras"],
    )
    fit, val = _split_validation(splits.train, data["val_fraction"], data["seed"])
    # eval_stride > 1 keeps every n-th held-out image (quick runs only).
    query, gallery = _every(splits.query, data["eval_stride"]), _every(splits.gallery, data["eval_stride"])
    log(
        f"digits: {len(splits.train)} train images ({len(fit)} to fit, {len(val)} to validate), "
        f"{len(query)} query, {len(gallery)} gallery images ({data['height']}x{data['width']}), "
        f"{splits.num_train_classes} classes, random camera ids"
    )
    log(CLOSED_SET_NOTE)

    num_train_classes = splits.num_train_classes
    hdml, hdml_history, hdml_seconds = _train(
        "hdml", settings, fit, num_train_classes, settings["model"]["link_weight"], out, log
    )
    base, base_history, base_seconds = _train("node_only", settings, fit, num_train_classes, 0.0, out, log)

    # Held-out rows: Re-ID uses query vs gallery; clustering uses all of them.
    test_labels = torch.cat([query.labels, gallery.labels]).numpy()
    val_labels = val.labels.numpy()
    num_test, num_classes = test_labels.size, len(np.unique(test_labels))
    seed = settings["train"]["seed"]
    pids = (query.labels, gallery.labels, query.camids, gallery.camids)
    k = settings["model"]["k"]
    cluster_settings = dict(settings["cluster"])
    fixed = {
        "link": cluster_settings.pop("threshold"),
        "similarity": cluster_settings.pop("similarity_threshold"),
    }
    cluster_cfg = ClusterConfig(threshold=0.5, **cluster_settings)
    cluster_k = k if cluster_cfg.k is None else cluster_cfg.k
    # The validation split is smaller than the held-out set: max_size scales with the image count.
    max_size = cluster_cfg.max_size
    if max_size is not None:
        max_size = max(1, round(max_size * val_labels.size / num_test))
    val_cfg = replace(cluster_cfg, max_size=max_size)

    with torch.no_grad():
        emb = {
            name: {split: embed_rows(model, images) for split, images in
                   (("fit", fit.images), ("val", val.images), ("query", query.images),
                    ("gallery", gallery.images))}
            for name, model in (("hdml", hdml), ("node_only", base))
        }
    for parts in emb.values():
        parts["test"] = torch.cat([parts["query"], parts["gallery"]])

    # Each clustering by propagation: its edges on the validation split choose its threshold
    # (unless the settings fix one), then the held-out edges are propagated at that threshold.
    def edges(kind: str, name: str, split: str) -> tuple:
        if kind == "link":
            return link_edges(hdml, emb[name][split], cluster_k, batch_size=cluster_cfg.batch_size)
        return similarity_edges(emb[name][split], cluster_k)

    chosen: dict[str, dict] = {}
    propagated: dict[str, np.ndarray] = {}
    for row, kind, name in (
        ("hdml", "link", "hdml"),
        ("hdml_embeddings_no_graph", "similarity", "hdml"),
        ("node_only", "similarity", "node_only"),
    ):
        if fixed[kind] is None:
            threshold, val_metrics = _choose_threshold(edges(kind, name, "val"), val_labels, val_cfg)
            chosen[row] = {"threshold": threshold, "chosen_on": "validation", "validation": val_metrics}
        else:
            threshold = float(fixed[kind])
            chosen[row] = {"threshold": threshold, "chosen_on": "settings"}
        propagated[row] = _propagate(edges(kind, name, "test"), num_test, cluster_cfg, threshold)
        log(f"  {row}: propagation threshold {threshold:.6g} ({chosen[row]['chosen_on']})")

    split_labels = {"fit": fit.labels.numpy(), "val": val_labels, "test": test_labels}
    diagnostics = {
        split: _edge_diagnostics(edges("link", "hdml", split), edges("similarity", "hdml", split), labels)
        for split, labels in split_labels.items()
    }
    log(f"  hdml link edges: {_diagnostics_text(diagnostics)}")

    results: dict = {"hdml": {}, "baselines": {}}
    cmc: dict[str, np.ndarray] = {}
    embeddings_2d: dict[str, np.ndarray] = {}
    clustering_detail: dict[str, dict] = {}

    def add(row: str, reid: dict, labels: np.ndarray) -> None:
        metrics = clustering_metrics(test_labels, labels)
        clustering_detail[row] = metrics
        summary = {**_reid_summary(reid), **_cluster_summary(metrics)}
        if row == "hdml":
            results["hdml"] = summary
        else:
            results["baselines"][row] = summary

    # HDML: link scores on each query's F-Graph, then distance; propagation over link scores.
    q_emb, g_emb = emb["hdml"]["query"], emb["hdml"]["gallery"]
    neighbours, scores = query_link_scores(hdml, q_emb, g_emb, k)
    reid = evaluate_orders(graph_order(q_emb, g_emb, neighbours, scores), *pids)
    add("hdml", reid, propagated["hdml"])
    cmc["HDML (graph)"] = reid["cmc"]
    embeddings_2d["HDML"] = emb["hdml"]["test"].numpy()

    # The same HDML embeddings without the graph: distance ranking; propagation over cosine
    # similarity on the same kNN edges (what the link head adds), and k-means told the true K.
    reid = evaluate_orders(distance_order(q_emb, g_emb), *pids)
    add("hdml_embeddings_no_graph", reid, propagated["hdml_embeddings_no_graph"])
    add("hdml_embeddings_kmeans_true_k", reid, _kmeans(emb["hdml"]["test"].numpy(), num_classes, seed))

    # Node-only backbone: distance ranking; the same two clusterings.
    q_base, g_base = emb["node_only"]["query"], emb["node_only"]["gallery"]
    reid = evaluate_orders(distance_order(q_base, g_base), *pids)
    add("node_only", reid, propagated["node_only"])
    add("node_only_kmeans_true_k", reid, _kmeans(emb["node_only"]["test"].numpy(), num_classes, seed))
    cmc["node-only (distance)"] = reid["cmc"]
    embeddings_2d["node-only"] = emb["node_only"]["test"].numpy()

    # Raw pixels (the 8x8 digits as 64 values): distance ranking, k-means with the true K.
    pixels = torch.from_numpy(load_digits_features().features)
    q_pix, g_pix = pixels[query.indices], pixels[gallery.indices]
    reid = evaluate_orders(distance_order(q_pix, g_pix), *pids)
    test_pix = torch.cat([q_pix, g_pix]).numpy()
    add("kmeans_pixels", reid, _kmeans(test_pix, num_classes, seed))
    cmc["raw pixels (distance)"] = reid["cmc"]
    embeddings_2d["raw pixels"] = test_pix

    total = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    propagation_text = (
        f"pseudo-label propagation over the kNN edges (k {cluster_k}) at a threshold chosen on the "
        f"validation split (max_size {cluster_cfg.max_size}, step {cluster_cfg.step})"
    )
    info = {
        "seconds": {"total": total, "train_hdml": hdml_seconds, "train_node_only": base_seconds},
        "num_images": {
            "train": len(splits.train), "fit": len(fit), "validation": len(val),
            "query": len(query), "gallery": len(gallery),
        },
        "clustering": {
            "hdml": f"{propagation_text}, edges scored by the link head",
            "hdml_embeddings_no_graph": f"{propagation_text}, edges scored by cosine similarity",
            "node_only": f"{propagation_text}, edges scored by cosine similarity",
            "*_kmeans_true_k, kmeans_pixels": f"k-means told the true number of classes ({num_classes})",
        },
        "thresholds": chosen,
        "link_edge_diagnostics": diagnostics,
        "held_out_clustering": clustering_detail,
        "note": CLOSED_SET_NOTE,
    }
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(results, info, settings), encoding="utf-8")
    _plot(out, {"HDML": hdml_history, "node-only": base_history}, cmc, embeddings_2d, test_labels)
    log("")
    log(format_table(results))
    log("")
    log(
        "Re-ID: query vs gallery (Market-1501 protocol). Clustering: all held-out images; hdml, "
        "hdml_embeddings_no_graph and node_only by propagation (link scores vs cosine similarity, "
        "thresholds chosen on the validation split); *_kmeans_true_k and kmeans_pixels by k-means "
        f"told the true number of classes ({num_classes}), an oracle the propagation rows do not get."
    )
    log(CLOSED_SET_NOTE)
    log(f"wrote {out / 'results.json'} and plots in {out}/ ({total:.0f} s in all)")
    return results


def _readme(results: dict, info: dict, settings: dict) -> str:
    model, train = settings["model"], settings["train"]
    return (
        "# hdml demo: scikit-learn's digits\n\n"
        f"HDML ({model['backbone']} HA-Net at {settings['data']['height']}x{settings['data']['width']}, "
        f"RE-GCN {model['gcn_dims']}, k = {model['k']}) trained for {train['epochs']} epochs on "
        f"{info['num_images']['fit']} images; evaluated on {info['num_images']['query']} queries and "
        f"{info['num_images']['gallery']} gallery images ({info['seconds']['total']:.0f} s in all).\n\n"
        "```\n" + format_table(results) + "\n```\n\n"
        "- Re-ID: query vs gallery, Market-1501 protocol (random camera ids; same-camera matches of the "
        "query's identity are ignored). HDML ranks each query's k graph neighbours by link score, then the "
        "rest by distance; the baselines rank by distance.\n"
        f"- Training: both models fit {info['num_images']['fit']} of the {info['num_images']['train']} "
        f"training images; the other {info['num_images']['validation']} (a validation split) choose each "
        "propagation threshold. The held-out images choose nothing.\n"
        "- Clustering of all held-out images: "
        + "; ".join(f"{name}: {text}" for name, text in info["clustering"].items())
        + ". k-means gets the true number of classes, an oracle the propagation rows do not get.\n"
        "- node_only: the same backbone trained with the node loss alone (link_weight = 0, same batches and "
        "schedule). hdml_embeddings_*: HDML's own embeddings clustered without the graph.\n"
        f"- {CLOSED_SET_NOTE}\n"
        "- How well the link head tells same-class kNN edges apart (run_info.json, "
        f"link_edge_diagnostics): {_diagnostics_text(info['link_edge_diagnostics'])}.\n\n"
        "Plots: loss_curves.png, cmc.png, embedding_2d.png. Settings: settings.yaml.\n"
    )


def format_table(results: dict) -> str:
    """results.json as a fixed-width table."""
    headers = ("method", *METRIC_KEYS)
    rows = [("hdml", *(results["hdml"][key] for key in METRIC_KEYS))]
    rows += [(name, *(values[key] for key in METRIC_KEYS)) for name, values in results["baselines"].items()]
    width = max(len(str(row[0])) for row in [headers, *rows])
    lines = ["  ".join([headers[0].ljust(width), *(h.rjust(10) for h in headers[1:])])]
    lines += ["  ".join([str(row[0]).ljust(width), *(f"{v:10.4f}" for v in row[1:])]) for row in rows]
    return "\n".join(lines)


def _plot(out: Path, histories: dict, cmc: dict, embeddings: dict, labels: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, history in histories.items():
        steps = [r["step"] for r in history]
        ax.plot(steps, [r["node"] for r in history], label=f"{name}: node loss (L1)")
        if any(r["link"] for r in history) and name == "HDML":
            ax.plot(steps, [r["link"] for r in history], label=f"{name}: link loss (L2)")
            ax.plot(steps, [r["loss"] for r in history], label=f"{name}: total", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("training losses")
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in cmc.items():
        ranks = np.arange(1, min(20, len(curve)) + 1)
        ax.plot(ranks, curve[: len(ranks)], marker="o", markersize=3, label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate")
    ax.set_title("CMC on the held-out digits (query vs gallery)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cmc.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(embeddings), figsize=(4 * len(embeddings), 4))
    for ax, (name, values) in zip(np.atleast_1d(axes), embeddings.items()):
        points = PCA(n_components=2, random_state=0).fit_transform(values)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(f"{name} (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=np.atleast_1d(axes).tolist(), label="digit")
    fig.savefig(out / "embedding_2d.png", dpi=120)
    plt.close(fig)
