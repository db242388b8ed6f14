"""`hdml cluster`: cluster labels of features or images (and metrics when labels are known)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from ..cluster import clustering_metrics
from ..cluster.choice import resolve_choice, run_clustering, stored_choice
from ..engine import Settings
from ..engine.checkpoint import read_checkpoint
from .assign import ASSIGN_HELP, assign_to_run, save_for_assignment
from .evaluate import embed
from .options import (
    UsageError,
    add_checkpoint_option,
    add_command,
    add_data_options,
    add_settings_options,
    available_device,
    checkpoint_model,
    dataset_of,
    given_settings,
    require,
)
from .run_folder import writable_folder

KINDS = ("image-folder", "digit-instances", "digits", "features", "bin")


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "cluster",
        run,
        Settings,
        help="face clustering: labels (and metrics when labels are known)",
        description="Cluster features or images: link scores on every node's "
        "F-Graph, then pseudo-label propagation. Writes labels.npy, run_info.json (the "
        "clustering method and its info, e.g. whether propagation converged, and the kNN "
        "backend, its parameters and sampled recall), and metrics.json (NMI, pairwise F, "
        "BCubed F, and run_info under \"clustering\") when the true labels are known.",
    )
    add_data_options(parser, KINDS)
    add_checkpoint_option(parser)
    parser.add_argument(
        "--out", metavar="DIR",
        help="folder for labels.npy, metrics.json, and embeddings.npy + knn.npy (for a later --assign-to)",
    )  # fmt: skip
    parser.add_argument("--assign-to", metavar="RUN", help=ASSIGN_HELP)
    add_settings_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml cluster`."""
    require(args, "dataset")
    out = writable_folder(require(args, "out"))
    device = available_device("cluster.device", settings.cluster.device)
    model = checkpoint_model(args, device, settings)
    stored = stored_choice(read_checkpoint(args.checkpoint))
    method, config, used = resolve_choice(stored, settings.cluster, given_settings(args))
    print(used)
    k = config.k if config.k is not None else model.k
    if k != model.k:
        raise UsageError("--set", f"cluster.k = {k} differs from the model's k = {model.k}")
    progress = not args.quiet
    data = dataset_of(args, settings)
    rows = data.held_out
    if data.input_kind == "features":
        if rows.rows.shape[1] != model.out_dim:
            raise UsageError(
                "--root", f"the features have D = {rows.rows.shape[1]}, the model expects {model.out_dim}"
            )
        embeddings = rows.rows.to(device)
    elif model.input_kind != "images":
        raise UsageError(
            "--checkpoint",
            f"clustering images needs a model of images, the checkpoint's takes {model.input_kind} "
            "(give --dataset features)",
        )
    else:
        embeddings = embed(model, rows, settings, device, progress, "embedding images")
    try:
        if args.assign_to is not None:
            knn_table = None
            labels = assign_to_run(args.assign_to, model, embeddings, config, progress)
            info = {"method": "assign", "assigned_to": str(args.assign_to)}
        else:
            clustered = run_clustering(method, model, embeddings, config, progress=progress)
            labels, info, knn_table = clustered.labels, clustered.info, clustered.fgraphs.knn_idx
    except ValueError as error:
        raise UsageError("--set", str(error)) from None
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "labels.npy", labels)
    save_for_assignment(out, embeddings, knn_table)
    num_clusters = len(np.unique(labels))
    print(f"{num_clusters} clusters of {labels.size} rows; wrote {out / 'labels.npy'}")
    run_info = {"rows": int(labels.size), "k": k, "true_labels": rows.labels is not None, **info}
    (out / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'run_info.json'}")
    if rows.labels is None:
        print("no true labels were given (--labels), so no metrics were computed")
    if rows.labels is None and (out / "metrics.json").exists():
        (out / "metrics.json").unlink()  # an earlier run's, about other labels
        print(f"removed the earlier {out / 'metrics.json'} (no true labels to score these against)")
    if rows.labels is not None:
        metrics = clustering_metrics(rows.labels.numpy(), labels)
        report = {**metrics, "clustering": run_info}
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(
            f"NMI {metrics['nmi']:.4f}  pairwise F {metrics['pairwise_f']:.4f}  "
            f"BCubed F {metrics['bcubed_f']:.4f}; wrote {out / 'metrics.json'}"
        )
    return 0
