"""The demo's report: the results table, the output folder's README.md, and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import DemoSettings
from .evaluate import METRIC_KEYS
from .splits import DemoSplits

OPEN_SET_NOTE = (
    "digit-instances is open-set: every scikit-learn digit image is an identity seen in a few to 30 "
    "augmented views through 6 camera styles, and the held-out (query/gallery) identities are never "
    "seen in training, as in Market-1501. Clustering settings are chosen on held-out training "
    "identities (the validation split), never on the test identities."
)
CLOSED_SET_NOTE = (
    "Note: the digits have only 10 classes, so the held-out (query/gallery) images show the same "
    "10 identities as the training images (closed-set), unlike Market-1501 where test identities "
    "are unseen in training."
)


def dataset_note(data: DemoSplits) -> str:
    """What kind of evaluation the demo's data set makes (open-set or closed-set)."""
    return OPEN_SET_NOTE if data.open_set else CLOSED_SET_NOTE


def _cell(value: object) -> str:
    return f"{value:8.4f}" if isinstance(value, float) else f"{'-':>8}"


def format_table(results: dict) -> str:
    """results.json as a fixed-width table ("-": the method does not rank, or does not cluster;
    "(oracle)": it was told the true number of identities)."""
    rows = [("hdml", results["hdml"]), *results["baselines"].items()]
    names = [name + (" (oracle)" if values.get("oracle") else "") for name, values in rows]
    width = max(len(name) for name in ["method", *names])
    lines = ["  ".join(["method".ljust(width), *(key.rjust(8) for key in METRIC_KEYS)])]
    lines += ["  ".join([name.ljust(width), *(_cell(values[key]) for key in METRIC_KEYS)])
              for name, (_, values) in zip(names, rows)]
    hdml = results["hdml"]
    if hdml.get("link_auc") is not None:
        lines.append(f"hdml link AUC on the held-out kNN edges {hdml['link_auc']:.4f} "
                     f"(cosine similarity on the same edges {hdml['cosine_auc']:.4f})")
    return "\n".join(lines)


def readme(results: dict, info: dict, settings: DemoSettings, data: DemoSplits) -> str:
    """The output folder's README.md: the table and what each row means."""
    model, train, images = settings.model, settings.train, info["num_images"]
    return (
        f"# hdml demo: {data.dataset}\n\n"
        f"HDML ({model.backbone} HA-Net at {settings.data.height}x{settings.data.width}, "
        f"RE-GCN {model.gcn_dims}, k = {model.k}, edge input {model.edge_input!r}) trained for "
        f"{train.epochs} epochs on {images['fit']} images; evaluated on {images['query']} queries and "
        f"{images['gallery']} gallery images ({info['seconds']['total']:.0f} s in all).\n\n"
        "```\n" + format_table(results) + "\n```\n\n"
        "- Re-ID: query vs gallery, Market-1501 protocol (same-camera matches of the query's identity "
        "are ignored). hdml ranks by its default ranking, the better on the validation identities of "
        "the paper's graph rule (hdml_graph_rule: each query's k graph neighbours by link score, then "
        "the rest by distance) and re-ranking with learned edges of each query with the gallery alone "
        "(hdml_link_rerank: the Jaccard distance of the F-Graph link-score sets of query and gallery "
        "item, plus the distance); hdml_link_rerank_together re-ranks all queries at once. Their "
        "settings were chosen on the validation identities: "
        f"{ranking_text(info['ranking_choices'])}. The baselines rank by distance, or by k-reciprocal "
        "re-ranking of all queries at once (*_k_reciprocal, the reference's way: each query's "
        "neighbourhoods hold the other queries) or of each query with the gallery alone "
        "(*_k_reciprocal_per_query, as hdml sees a query).\n"
        f"- Training: both models fit {images['fit']} of the {images['train']} training images; the other "
        f"{images['validation']} (the validation split) choose each propagation's threshold and max_size. "
        "The held-out images choose nothing.\n"
        "- Clustering of all held-out images by pseudo-label propagation over their kNN edges: hdml's "
        "edges scored by its link head, the baselines' by cosine similarity. *_kmeans_true_k rows are "
        "k-means told the true number of identities, an oracle the propagation rows do not get.\n"
        "- node_only: the same backbone trained with the node loss alone (link_weight = 0, same batches "
        "and schedule). hdml_embeddings_*: HDML's own embeddings without the graph. pixels: the "
        "images' pixels.\n"
        f"- {dataset_note(data)}\n"
        "- How well the link head tells same-identity kNN edges apart (run_info.json, "
        f"link_edge_diagnostics): {diagnostics_text(info['link_edge_diagnostics'])}.\n\n"
        "Plots: loss_curves.png, cmc.png, embedding_2d.png. Held-out embeddings, labels and hdml's "
        "clusters: embeddings.npz. Settings: settings.yaml.\n"
    )


def plot(out: Path, histories: dict, cmc: dict, embeddings: dict, labels: np.ndarray) -> None:
    """loss_curves.png, cmc.png and embedding_2d.png in `out`."""
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
    ax.set_title("CMC on the held-out identities (query vs gallery)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cmc.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(embeddings), figsize=(4 * len(embeddings), 4))
    for ax, (name, values) in zip(np.atleast_1d(axes), embeddings.items()):
        points = PCA(n_components=2, random_state=0).fit_transform(values)
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels % 20, cmap="tab20", s=6)
        ax.set_title(f"{name} (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(scatter, ax=np.atleast_1d(axes).tolist(), label="identity (mod 20)")
    fig.savefig(out / "embedding_2d.png", dpi=120)
    plt.close(fig)


def diagnostics_text(diagnostics: dict) -> str:
    """`edge_diagnostics` of each split in one line."""

    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return "; ".join(
        f"{split}: {d['same_class_share']:.3f} same-class, link AUC {auc(d['link_auc'])} "
        f"(cosine {auc(d['cosine_auc'])}), within a focus {auc(d['link_within_focus_auc'])} "
        f"(cosine {auc(d['cosine_within_focus_auc'])}), "
        f"{d['wrong_edges_link_score_ge_0.9']}/{d['wrong_edges']} wrong edges scored >= 0.9"
        for split, d in diagnostics.items()
    )


def ranking_text(choices: dict) -> str:
    """The rankings chosen on the validation identities (`evaluate.choose_rankings`), in one line."""

    def settings(values: dict) -> str:
        return (f"k2 {values['k2']}, lambda {values['lambda_value']}, power {values['power']}, "
                f"normalise {values['normalise']}")

    validation = choices["validation"]
    return (
        f"default {choices['default']} (validation mAP / rank-1: graph rule "
        f"{validation['graph']['mAP']:.3f} / {validation['graph']['rank1']:.3f}, link_rerank "
        f"{validation['link_rerank']['mAP']:.3f} / {validation['link_rerank']['rank1']:.3f}, "
        f"link_rerank_together {validation['link_rerank_together']['mAP']:.3f} / "
        f"{validation['link_rerank_together']['rank1']:.3f}); link_rerank: "
        f"{settings(choices['link_rerank'])}; link_rerank_together: "
        f"{settings(choices['link_rerank_together'])}"
    )
