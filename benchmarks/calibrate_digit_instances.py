"""Calibrate the digit-instances data set's difficulty with two cheap no-graph baselines.

On the unseen test identities, both rank the gallery by Euclidean distance and score it with
`hdml_ext.metrics.rank_metrics` (Market-1501 rule: same identity and camera are skipped):

1. raw pixels: the normalised images themselves, flattened; and grey pixels standardised per
   image (camera colour and contrast mostly removed);
2. a tiny CNN (3 conv blocks, 128-d embedding) trained with cross-entropy over the train
   identities for a few epochs, then its L2-normalised embeddings.

The issue asks for a no-graph baseline near 70-85% rank-1, not saturated; the pixel figure shows
that the task is not trivial. Optionally writes a contact sheet of identities x views.

    OMP_NUM_THREADS=1 python benchmarks/calibrate_digit_instances.py
    python benchmarks/calibrate_digit_instances.py --contact-sheet docs/digit_instances.png
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hdml_ext.data import TensorSplit, TensorSplits, load_digit_instances_reid
from hdml_ext.metrics import rank_metrics


def tiny_cnn(num_classes: int, height: int, width: int, dim: int = 128) -> tuple[nn.Module, nn.Module]:
    """(embedding network [N, 3, H, W] -> [N, dim], linear classifier [N, dim] -> [N, classes]).

    Three conv blocks (two 2x2 max pools), then a linear layer over the whole [64, H/4, W/4] map, so
    the embedding keeps where the strokes are."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    net = nn.Sequential(
        block(3, 32),
        nn.MaxPool2d(2),
        block(32, 64),
        nn.MaxPool2d(2),
        block(64, 64),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), dim),
    )
    return net, nn.Linear(dim, num_classes)


def ranking(query: TensorSplit, gallery: TensorSplit, q_feat: torch.Tensor, g_feat: torch.Tensor) -> dict:
    """rank-1 / rank-5 / mAP of Euclidean distance ranking of [Q, D] against [G, D] features."""
    dist = torch.cdist(q_feat.double(), g_feat.double()).numpy()
    q_ids, g_ids = query.labels.numpy(), gallery.labels.numpy()
    result = rank_metrics(dist, q_ids, g_ids, query.camids.numpy(), gallery.camids.numpy())
    return {"rank1": float(result["cmc"][0]), "rank5": float(result["cmc"][4]), "mAP": float(result["mAP"])}


def standardised_grey(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] -> [N, H * W]: channel mean, then each image to zero mean and unit norm, which
    undoes most of a camera's colour cast and contrast (not its blur or noise)."""
    grey = images.mean(dim=1).flatten(1)
    return F.normalize(grey - grey.mean(dim=1, keepdim=True), dim=1)


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    net.eval()
    return F.normalize(torch.cat([net(images[i : i + batch]) for i in range(0, len(images), batch)]), dim=1)


def train_cnn(splits: TensorSplits, epochs: int, batch: int, lr: float, seed: int) -> nn.Module:
    """Cross-entropy (label smoothing 0.1) over the train identities, Adam, one-cycle schedule."""
    torch.manual_seed(seed)
    height, width = splits.train.images.shape[2:]
    net, head = tiny_cnn(splits.num_train_classes, height, width)
    params = [*net.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=5e-4)
    steps = epochs * (len(splits.train) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    images, labels = splits.train.images, splits.train.labels
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(labels))
        total = 0.0
        for start in range(0, len(order) - batch + 1, batch):
            rows = order[start : start + batch]
            loss = F.cross_entropy(head(net(images[rows])), labels[rows], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / (len(order) // batch):.3f}", flush=True)
    return net


def contact_sheet(splits: TensorSplits, path: str, identities: int = 10, views: int = 12) -> None:
    """A PNG grid: one train identity per row, its first `views` views (unnormalised images)."""
    from PIL import Image

    train = splits.train
    rows = []
    for label in range(identities):
        images = train.images[train.labels == label][:views]
        pad = torch.ones((views - len(images), *images.shape[1:]))
        rows.append(torch.cat(list(torch.cat([images, pad])), dim=2))
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)
    print(f"contact sheet: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--max-identities", type=int, default=None, help="default: all 1,797")
    parser.add_argument("--augment-strength", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="data set and training seed")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--contact-sheet", default=None, help="also write a PNG of identities x views")
    args = parser.parse_args()

    data = {
        "height": args.height,
        "width": args.width,
        "max_identities": args.max_identities,
        "augment_strength": args.augment_strength,
        "seed": args.seed,
    }
    start = time.perf_counter()
    splits = load_digit_instances_reid(**data)
    print(
        f"data: {time.perf_counter() - start:.1f} s; train {len(splits.train)} views of "
        f"{splits.num_train_classes} identities; query {len(splits.query)}; gallery {len(splits.gallery)}"
    )
    if args.contact_sheet:
        contact_sheet(load_digit_instances_reid(**data, normalize=False), args.contact_sheet)
    query, gallery = splits.query, splits.gallery
    pixels = ranking(query, gallery, query.images.flatten(1), gallery.images.flatten(1))
    print("raw pixels : rank-1 {rank1:.3f}  rank-5 {rank5:.3f}  mAP {mAP:.3f}".format(**pixels))
    grey = ranking(query, gallery, standardised_grey(query.images), standardised_grey(gallery.images))
    print("grey z-pix : rank-1 {rank1:.3f}  rank-5 {rank5:.3f}  mAP {mAP:.3f}".format(**grey))
    start = time.perf_counter()
    net = train_cnn(splits, args.epochs, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    cnn = ranking(query, gallery, embed(net, query.images), embed(net, gallery.images))
    print(
        "tiny CNN   : rank-1 {rank1:.3f}  rank-5 {rank5:.3f}  mAP {mAP:.3f}".format(**cnn)
        + f"  ({args.epochs} epochs, {seconds:.0f} s, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
