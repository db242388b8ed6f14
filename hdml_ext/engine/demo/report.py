"""The demo's report: the results table, the output folder's README.md, and the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import DemoSettings
from .thresholds import diagnostics_text

CLOSED_SET_NOTE = (
    "Note: the digits have only 10 classes, so the held-out (query/gallery) images show the same "
    "10 identities as the training images (closed-set), unlike Market-1501 where test identities "
    "are unseen in training."
)

METRIC_KEYS = ("mAP", "rank1", "rank5", "rank10", "nmi", "pairwise_f", "bcubed_f")


def format_table(results: dict) -> str:
    """results.json as a fixed-width table."""
    headers = ("method", *METRIC_KEYS)
    rows = [("hdml", *(results["hdml"][key] for key in METRIC_KEYS))]
    rows += [(name, *(values[key] for key in METRIC_KEYS)) for name, values in results["baselines"].items()]
    width = max(len(str(row[0])) for row in [headers, *rows])
    lines = ["  ".join([headers[0].ljust(width), *(h.rjust(10) for h in headers[1:])])]
    lines += ["  ".join([str(row[0]).ljust(width), *(f"{v:10.4f}" for v in row[1:])]) for row in rows]
    return "\n".join(lines)


def readme(results: dict, info: dict, settings: DemoSettings) -> str:
    """The output folder's README.md: the table and what each row means."""
    model, train = settings.model, settings.train
    return (
        "# hdml demo: scikit-learn's digits\n\n"
        f"HDML ({model.backbone} HA-Net at {settings.data.height}x{settings.data.width}, "
        f"RE-GCN {model.gcn_dims}, k = {model.k}) trained for {train.epochs} epochs on "
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
        f"link_edge_diagnostics): {diagnostics_text(info['link_edge_diagnostics'])}.\n\n"
        "Plots: loss_curves.png, cmc.png, embedding_2d.png. Settings: settings.yaml.\n"
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
