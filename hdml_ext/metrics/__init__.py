"""Evaluation metrics: mAP, CMC and mINP for person Re-ID; NMI, pairwise and BCubed F-scores for
clustering.

Inputs are numpy arrays, torch tensors (any device) or sequences; outputs are Python floats and
numpy arrays.

    from hdml_ext.metrics import rank_metrics, nmi
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids)
    result["mAP"], result["cmc"][0], result["mINP"]   # mAP, rank-1 and mINP
"""

from .clustering import bcubed_fscore, nmi, pairwise_fscore
from .ranking import rank_metrics, rank_metrics_from_blocks, rank_metrics_from_order

__all__ = [
    "bcubed_fscore",
    "nmi",
    "pairwise_fscore",
    "rank_metrics",
    "rank_metrics_from_blocks",
    "rank_metrics_from_order",
]
