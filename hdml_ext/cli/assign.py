"""`hdml cluster --assign-to RUN`: the new rows into the clusters of an earlier `hdml cluster`
output folder (what it must hold, and the call to `hdml_ext.cluster.assign`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..cluster import ClusterConfig
from ..cluster.assign import assign_to_clusters
from .options import UsageError

#: What `hdml cluster` saves for a later --assign-to: the rows' embeddings and kNN table.
EMBEDDINGS_NAME = "embeddings.npy"
KNN_NAME = "knn.npy"

ASSIGN_HELP = (
    "an earlier `hdml cluster --out` folder (its labels.npy, embeddings.npy, knn.npy): give each "
    "row of --dataset the cluster most of its linked old neighbours hold (link score >= "
    "cluster.threshold), or a new cluster, without re-clustering the old rows. Cost: the exact k "
    "nearest old rows of each new row (O(new x old x D)) and one F-Graph scored per new row"
)


def save_for_assignment(out: Path, embeddings: Tensor, knn_idx: Tensor | None) -> None:
    """Write embeddings.npy ([N, D] float32) and, when given, knn.npy ([N, k] int64) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / EMBEDDINGS_NAME, embeddings.detach().float().cpu().numpy())
    if knn_idx is not None:
        np.save(out / KNN_NAME, knn_idx.cpu().numpy())
    else:
        (out / KNN_NAME).unlink(missing_ok=True)  # an earlier run's, about other rows


def assign_to_run(
    run: str, model: nn.Module, embeddings: Tensor, config: ClusterConfig, progress: bool
) -> np.ndarray:
    """Cluster labels [Q] of `embeddings` ([Q, D] on the model's device) in the clusters of the
    earlier output folder `run` (`assign_to_clusters` at config.threshold; the old rows' kNN
    table from its knn.npy, or built with config.backend when that is missing or does not fit);
    UsageError naming --assign-to when the folder lacks what is needed or does not fit the model."""
    folder = Path(run)
    missing = [name for name in ("labels.npy", EMBEDDINGS_NAME) if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            "--assign-to",
            f"{run!r} should be an earlier `hdml cluster --out` folder holding labels.npy and "
            f"{EMBEDDINGS_NAME}; it lacks {', '.join(missing)}",
        )
    old = torch.from_numpy(np.load(folder / EMBEDDINGS_NAME)).to(embeddings.device)
    labels = np.load(folder / "labels.npy")
    if old.dim() != 2 or old.shape[1] != embeddings.shape[1]:
        raise UsageError(
            "--assign-to",
            f"{run!r} holds embeddings of shape {tuple(old.shape)}, the new rows are "
            f"[Q, {embeddings.shape[1]}] (cluster both with the same model)",
        )
    knn = np.load(folder / KNN_NAME) if (folder / KNN_NAME).is_file() else None
    fits = knn is not None and knn.shape == (old.shape[0], model.k)
    try:
        assignment = assign_to_clusters(
            model, embeddings, old, labels, threshold=config.fixed_threshold(),
            old_knn=torch.from_numpy(knn).to(old.device) if fits else None,
            backend=config.backend, target_recall=config.target_recall,
            batch_size=config.batch_size, progress=progress,
        )  # fmt: skip
    except ValueError as error:
        raise UsageError("--assign-to", str(error)) from None
    joined = int(assignment.joined.sum())
    print(
        f"{joined} of {assignment.labels.size} new rows joined clusters of {run}; "
        f"{assignment.num_new_clusters} started new ones (link score >= {config.threshold})"
    )
    return assignment.labels
