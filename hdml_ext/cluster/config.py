"""The settings of clustering (`hdml_ext.cluster.cluster`, `cluster_by`, `calibrate`): one
dataclass that declares each clustering setting once. Settings schemas extend it with fields of
their own and never re-declare its fields:

    ClusterConfig                      this module: the clustering and its F-Graphs
      ClusterSettings                  hdml_ext.engine.settings: + method, device (`cluster` section)
        DemoClusterSettings            hdml_ext.demo.config: + similarity_threshold,
                                       max_size_candidates (the demo's `cluster` section)

`cluster_config()` gives the `ClusterConfig` part of any of them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..graph import DEFAULT_TARGET_RECALL, KNN_BACKENDS
from . import propagation


@dataclass
class ClusterConfig:
    """Settings of `cluster` (subclasses add fields only: module docstring).

    k: neighbours per F-Graph (None: the model's k; another value is refused).
    threshold: first link-score threshold in [0, 1] for keeping an edge (Infomap: the edge
        floor). None means "not fixed": only the demo's settings take it (chosen there on
        validation identities); the clustering functions refuse it.
    max_size: components above this many nodes are split again at a higher threshold (None:
        no cap, plain connected components; the demo reads None as "chosen among its
        max_size_candidates").
    step: how much the threshold rises per round.
    max_iter: rounds of splitting.
    batch_size: F-Graphs scored per batch (bounds memory), or None to size it for the device
        (`scoring.scoring_batch_size`: 2048 on the CPU, from the free memory on a GPU).
    backend: the kNN backend of the F-Graphs when they are built here (`hdml_ext.graph.KNN_BACKENDS`;
        "auto" picks exact or an approximate index from the sizes and device).
    target_recall: the recall@k approximate indexes aim for (`build_fgraphs`'s target_recall).
    """

    k: int | None = None
    threshold: float | None = propagation.THRESHOLD
    max_size: int | None = propagation.MAX_SIZE
    step: float = propagation.STEP
    max_iter: int = propagation.MAX_ITER
    batch_size: int | None = None
    backend: Literal[KNN_BACKENDS] = "auto"  # type: ignore[valid-type]
    target_recall: float = DEFAULT_TARGET_RECALL

    def cluster_config(self) -> ClusterConfig:
        """The `ClusterConfig` fields of these settings (of a subclass too), as a `ClusterConfig`."""
        return ClusterConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ClusterConfig)})

    def fgraph_settings(self) -> dict:
        """The keyword arguments of `hdml_ext.graph.build_fgraphs` besides k: backend, target_recall."""
        return {"backend": self.backend, "target_recall": self.target_recall}

    def propagation_settings(self) -> dict:
        """The keyword arguments of `propagation.propagate_edges`: threshold, max_size, step,
        max_iter (ValueError when threshold is None: it was never fixed)."""
        return {"threshold": self.fixed_threshold(), "max_size": self.max_size, "step": self.step,
                "max_iter": self.max_iter}

    def fixed_threshold(self) -> float:
        """threshold, or ValueError when it is None (settings that leave it to be chosen)."""
        if self.threshold is None:
            raise ValueError("cluster.threshold should be a number in [0, 1] to cluster with, got None "
                             "(None leaves it to be chosen, which only the demo does)")
        return self.threshold
