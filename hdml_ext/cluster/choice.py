"""The validated clustering choice a model carries: which method clusters its link scores
(propagation or Infomap) with which parameters, chosen on labelled held-out rows and stored in
model.pt under "clustering" (`hdml calibrate`); `hdml cluster` uses it unless settings override.

    choice = calibrate(model, embeddings, labels, ClusterConfig())   # a dict, stored as it is
    store_choice("run/model.pt", choice)
    method, config, used = resolve_choice(stored_choice(record), settings.cluster, given)
    labels = cluster_by(method, model, embeddings, config)
    run = run_clustering(method, model, embeddings, config)   # labels, info and the F-Graphs

A choice holds the best parameters of every method, so that `--set cluster.method=...` picks a
method and still gets that method's validated parameters:

    {"method": the best method, "chosen_on": {"rows", "identities"},
     "methods": {"propagation": {"threshold", "max_size", "step", "max_iter", "validation"},
                 "infomap": {"threshold" (the edge floor), "validation"}}}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
from torch import Tensor, nn

from .._checks import require_model_k
from ..graph import FGraphs
from .config import ClusterConfig
from .infomap import infomap_edges
from .propagation import propagate_edges
from .run import clustering_fgraphs, clustering_info, warn_unless_converged
from .scoring import link_edges
from .selection import choose_clustering, choose_infomap, selection_score

__all__ = [
    "CHECKPOINT_KEY",
    "MAX_SIZE_CANDIDATES",
    "METHODS",
    "ClusteringRun",
    "calibrate",
    "cluster_by",
    "cluster_edges",
    "resolve_choice",
    "run_clustering",
    "store_choice",
    "stored_choice",
]

#: The clustering methods over link scores; the `cluster.method` setting names one.
METHODS = ("propagation", "infomap")
#: The entry of a checkpoint that holds the choice.
CHECKPOINT_KEY = "clustering"
#: propagation's size caps searched by `calibrate` (None: no cap).
MAX_SIZE_CANDIDATES = (10, 20, 40, 80, 160, 320, None)
#: The settings a choice fixes, per method (others come from the settings).
CHOICE_KEYS = {"propagation": ("threshold", "max_size", "step", "max_iter"), "infomap": ("threshold",)}


def cluster_edges(num_nodes: int, edges: tuple, method: str, config: ClusterConfig, *,
                  return_info: bool = False) -> np.ndarray | tuple[np.ndarray, dict]:
    """Cluster labels [num_nodes] of scored `edges` (src, dst, score), each [E]: "propagation"
    (`propagate_edges` with the config's settings) or "infomap" (`infomap_edges`, links of
    score >= config.threshold). return_info: (labels, the method's info) instead."""
    src, dst, score = edges
    if method == "propagation":
        labels, info = propagate_edges(num_nodes, src, dst, score, **config.propagation_settings())
    elif method == "infomap":
        labels, info = infomap_edges(num_nodes, src, dst, score, min_score=config.fixed_threshold())
    else:
        raise ValueError(f"method should be one of {', '.join(METHODS)}, got {method!r}")
    return (labels, info) if return_info else labels


@dataclass
class ClusteringRun:
    """What `run_clustering` gives: labels [N] int64; info (JSON-ready): the method's info,
    "method", and the kNN tables' backend, reason and params under "knn" (`clustering_info`);
    fgraphs: the F-Graphs that were scored (their knn_idx [N, k] is what `hdml cluster` saves
    for a later --assign-to)."""

    labels: np.ndarray
    info: dict
    fgraphs: FGraphs


def run_clustering(
    method: str,
    model: nn.Module,
    embeddings: Tensor,
    config: ClusterConfig,
    *,
    knn: Tensor | FGraphs | None = None,
    progress: bool = False,
) -> ClusteringRun:
    """`hdml_ext.cluster.cluster` with a choice of method: the F-Graphs of every row
    (`clustering_fgraphs`: `knn`, an `FGraphs` or an int64 [N, >= k] kNN table, both accepted,
    or None: built with config.backend and config.target_recall), their link scores
    (`link_edges`; embeddings [N, D] on the model's device), clustered by `cluster_edges`.
    config.k must be None or the model's k, and config.threshold a number (ValueError before
    any work). Propagation that leaves components above max_size logs a warning."""
    k = require_model_k("config.k", config.k, int(model.to_config()["k"]))
    config.fixed_threshold()
    if method not in METHODS:
        raise ValueError(f"method should be one of {', '.join(METHODS)}, got {method!r}")
    graphs = clustering_fgraphs(embeddings, k, config, knn, progress=progress)
    edges = link_edges(model, embeddings, k, batch_size=config.batch_size, knn_idx=graphs, progress=progress)
    labels, info = cluster_edges(embeddings.shape[0], edges, method, config, return_info=True)
    if method == "propagation":
        warn_unless_converged(info, config.max_size)
    return ClusteringRun(labels, {"method": method, **clustering_info(info, graphs)}, graphs)


def cluster_by(
    method: str,
    model: nn.Module,
    embeddings: Tensor,
    config: ClusterConfig,
    *,
    knn: Tensor | FGraphs | None = None,
    progress: bool = False,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """The labels [N] int64 of `run_clustering` (same arguments); with return_info, (labels,
    info)."""
    run = run_clustering(method, model, embeddings, config, knn=knn, progress=progress)
    return (run.labels, run.info) if return_info else run.labels


def calibrate(
    model: nn.Module,
    embeddings: Tensor,
    labels: np.ndarray,
    config: ClusterConfig,
    *,
    knn: Tensor | FGraphs | None = None,
    max_sizes: tuple | None = None,
    progress: bool = False,
) -> dict:
    """The clustering choice (module docstring) made on labelled rows: `embeddings` [N, D] (on
    the model's device) of rows with true `labels` [N] (identities the model did not train on,
    as the rows it will cluster); knn: their F-Graphs as in `run_clustering` (None: built with
    config.backend and config.target_recall). Propagation's threshold and max_size come from
    `choose_clustering` (thresholds among quantiles of the link scores, max_size among
    `max_sizes`, None: MAX_SIZE_CANDIDATES; config's step and max_iter), Infomap's floor from
    `choose_infomap`; the method is the one with the higher `selection_score` (propagation on
    a tie)."""
    labels = np.asarray(labels)
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(f"labels should be [N] = [{embeddings.shape[0]}], got shape {labels.shape}")
    k = require_model_k("config.k", config.k, int(model.to_config()["k"]))
    graphs = clustering_fgraphs(embeddings, k, config, knn, progress=progress)
    edges = link_edges(model, embeddings, k, batch_size=config.batch_size, knn_idx=graphs, progress=progress)
    sizes = list(MAX_SIZE_CANDIDATES if max_sizes is None else max_sizes)
    threshold, max_size, propagation_metrics = choose_clustering(edges, labels, config, sizes)
    floor, infomap_metrics = choose_infomap(edges, labels)
    methods = {
        "propagation": {"threshold": threshold, "max_size": max_size, "step": config.step,
                        "max_iter": config.max_iter, "validation": propagation_metrics},
        "infomap": {"threshold": floor, "validation": infomap_metrics},
    }  # fmt: skip
    best = max(METHODS, key=lambda name: selection_score(methods[name]["validation"]))
    chosen_on = {"rows": int(labels.size), "identities": int(np.unique(labels).size)}
    return {"method": best, "chosen_on": chosen_on, "methods": methods}


def store_choice(path: str | os.PathLike, choice: dict) -> None:
    """Write `choice` into the checkpoint at `path` (atomically; the rest is kept)."""
    from ..engine.checkpoint import update_checkpoint

    update_checkpoint(path, **{CHECKPOINT_KEY: choice})


def stored_choice(record: dict) -> dict | None:
    """The clustering choice of a checkpoint record (`read_checkpoint`), or None."""
    return record.get(CHECKPOINT_KEY)


def resolve_choice(
    stored: dict | None, settings: ClusterConfig, given: set[str]
) -> tuple[str, ClusterConfig, str]:
    """The method and ClusterConfig `hdml cluster` runs, and a line saying which it used.

    stored: the model's choice (or None). settings: the cluster settings (`ClusterSettings`: a
    ClusterConfig with `method`). given: the "cluster.KEY" names set explicitly (--set,
    --config); each of them overrides the stored choice, the rest of the method's CHOICE_KEYS
    come from the choice.
    """
    config = settings.cluster_config()
    method = settings.method  # type: ignore[attr-defined]
    if stored is None:
        return method, config, f"clustering with the settings ({_describe(method, config)}): the model " \
                               "stores no validated choice (`hdml calibrate` makes one)"
    if "cluster.method" not in given:
        method = stored["method"]
    chosen = stored["methods"][method]
    taken = {key: chosen[key] for key in CHOICE_KEYS[method] if f"cluster.{key}" not in given}
    config = replace(config, **taken)
    where = stored["chosen_on"]
    line = (f"clustering with the model's stored choice ({_describe(method, config)}; chosen on "
            f"{where['rows']} labelled rows of {where['identities']} identities)")
    overridden = sorted(name for name in given if name.startswith("cluster.")
                        and name.partition(".")[2] in (*CHOICE_KEYS[method], "method"))
    if overridden:
        line += f"; overridden by the settings: {', '.join(overridden)}"
    return method, config, line


def _describe(method: str, config: ClusterConfig) -> str:
    if method == "infomap":
        return f"infomap, edge floor {config.threshold:.6g}"
    return f"propagation, threshold {config.threshold:.6g}, max_size {config.max_size}, step {config.step:g}"
