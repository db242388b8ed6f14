"""The `hdml` command: train, evaluate (person Re-ID), cluster, demo.

    hdml train --dataset market1501 --root /data/Market-1501 --out runs/market
    torchrun --standalone --nproc_per_node=2 -m hdml_ext.cli train --dataset market1501 \\
        --root /data/Market-1501 --out runs/market     # one process per GPU (or CPU share)
    hdml evaluate --checkpoint runs/market/model.pt --dataset market1501 --root /data/Market-1501
    hdml cluster --checkpoint runs/faces/model.pt --dataset features --root feats.npy \\
        --labels labels.npy --out out/
    hdml demo --out results/demo

Parsing and dispatch only: one module per sub-command, each calling the engine.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
