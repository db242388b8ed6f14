"""The settings of `hdml_ext.cluster.cluster`: one dataclass, the `cluster` section of a run's
settings (`hdml_ext.engine.Settings`) extends it with the device and the kNN backend."""

from __future__ import annotations

from dataclasses import dataclass

from . import propagation


@dataclass
class ClusterConfig:
    """Settings of `cluster`.

    k: neighbours per F-Graph (None: the model's k).
    threshold: first link-score threshold in [0, 1] for keeping an edge.
    max_size: components above this many nodes are split again at a higher threshold.
    step: how much the threshold rises per round.
    max_iter: rounds of splitting.
    batch_size: F-Graphs scored per batch (bounds memory), or None to size it for the device
        (`scoring.scoring_batch_size`: 2048 on the CPU, from the free memory on a GPU).
    """

    k: int | None = None
    threshold: float = propagation.THRESHOLD
    max_size: int = propagation.MAX_SIZE
    step: float = propagation.STEP
    max_iter: int = propagation.MAX_ITER
    batch_size: int | None = None

    def propagation_settings(self) -> dict:
        """The keyword arguments of `propagation.propagate_edges`: threshold, max_size, step,
        max_iter."""
        return {"threshold": self.threshold, "max_size": self.max_size, "step": self.step,
                "max_iter": self.max_iter}
