"""One rank of the multi-process training tests (test_engine_distributed.py), run by torchrun:

    torchrun --standalone --nproc_per_node=2 python_tests/dist_worker.py RESULTS_DIR

Each rank trains the scenarios below and saves what the tests compare to RESULTS_DIR/rank<r>.pt;
the runs' folders (logs, checkpoints) go under RESULTS_DIR too. The data and model builders
are shared with the tests, which train the one-process references in the pytest process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from hdml_ext.engine import TrainConfig, Trainer, distributed, seed_everything
from hdml_ext.nn import HDML, HDMLOnFeatures


def features_data() -> tuple[torch.Tensor, torch.Tensor]:
    """[30, 8] features of 5 identities (6 rows each) and their labels: 10 PK groups of 3,
    5 batches of 2 groups per epoch, an odd count that two processes must top up to 6."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat_interleave(6)
    return torch.randn(30, 8, generator=gen) + 2.0 * labels[:, None], labels


def features_model() -> HDMLOnFeatures:
    """RE-GCN with attention (so BatchNorm layers) on 8-d features, k = 3."""
    seed_everything(0)
    return HDMLOnFeatures(8, k=3, gcn_dims=(16, 8))


def images_data(height: int = 32, width: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """[18, 3, height, width] images of 3 identities (6 each) and their labels."""
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(6)
    return torch.randn(18, 3, height, width, generator=gen) + labels[:, None, None, None].float(), labels


def images_model() -> HDML:
    """A small HDML: resnet18 up to layer2 (NFE on stage 2 only), one RE-GCN layer, k = 3."""
    seed_everything(0)
    return HDML(3, backbone="resnet18", k=3, nfe_stages=(2,), gcn_dims=(8,))


def config(**changes: object) -> TrainConfig:
    """Small, fast settings: P = 2 identities x K = 3 focus nodes per batch, lr 0.05, CPU."""
    values: dict = {
        "epochs": 2,
        "lr": 0.05,
        "milestones": (1,),
        "gamma": 0.5,
        "identities_per_batch": 2,
        "focus_per_identity": 3,
        "embed_batch_size": 8,
        "device": "cpu",
        "progress": False,
    }
    values.update(changes)
    return TrainConfig(**values)


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters (not its buffers), detached CPU copies."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


def main(results: Path) -> None:
    info = distributed.init_distributed("gloo", "cpu")
    out: dict = {"rank": info.rank, "world_size": info.world_size}

    # 1. Features, two epochs, one run folder written by rank 0.
    features, labels = features_data()
    trainer = Trainer(features_model(), features, labels, config(), out_dir=results / "features")
    out["features_history"] = trainer.fit()
    out["features_params"] = parameters(trainer.model)
    out["features_knn"] = trainer.sampler.fgraphs.knn_idx

    # 2. The same, interrupted after epoch 1 and resumed by fresh trainers on every rank.
    Trainer(features_model(), features, labels, config(epochs=1), out_dir=results / "resumed").fit()
    resumed = Trainer(features_model(), features, labels, config(), out_dir=results / "resumed")
    out["resumed_history"] = resumed.fit(resume=results / "resumed" / "checkpoint.pt")
    out["resumed_params"] = parameters(resumed.model)

    # 3. Images through the whole HDML, one epoch, random flips on.
    images, image_labels = images_data()
    trainer = Trainer(images_model(), images, image_labels, config(epochs=1))
    out["images_history"] = trainer.fit()
    out["images_params"] = parameters(trainer.model)
    out["images_knn"] = trainer.sampler.fgraphs.knn_idx

    # 4. bf16 autocast and channels_last, on images large enough for oneDNN's bf16 convolutions.
    images, image_labels = images_data(128, 64)
    trainer = Trainer(images_model(), images, image_labels, config(epochs=1, amp="bf16", channels_last=True))
    out["bf16_history"] = trainer.fit()

    # 5. Uneven shares: 7 rows over 2 ranks are 4 + 3, gathered back in order.
    rows = torch.arange(7.0)[:, None].repeat(1, 2)
    out["gathered"] = distributed.all_gather_rows(rows[distributed.shard_rows(7)], 7)

    # 6. SyncBatchNorm has no CPU kernel: the trainer says so before training.
    try:
        Trainer(features_model(), features, labels, config(sync_bn=True))
    except ValueError as error:
        out["sync_bn_error"] = str(error)

    torch.save(out, results / f"rank{info.rank}.pt")
    distributed.cleanup()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
