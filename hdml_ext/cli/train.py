"""`hdml train`: train a model on a data set's training rows."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..data import OpenedDataset
from ..engine import (
    Settings,
    Trainer,
    distributed,
    dump_settings,
    new_model,
    read_checkpoint,
    seed_everything,
)
from ..engine.checkpoint import build_model
from .options import (
    UsageError,
    add_command,
    add_data_options,
    add_settings_options,
    dataset_of,
    require,
)

KINDS = ("market1501", "dukemtmc", "image-folder", "digit-instances", "digits", "features", "bin")

DESCRIPTION = """\
Train HDML on a data set's training split (images), or HDMLOnFeatures on pre-extracted features.

several processes:
  torchrun --standalone --nproc_per_node=N -m hdml_ext.cli train ... runs N processes under
  DistributedDataParallel (one GPU each with CUDA, else CPU processes over gloo); each global
  step is one PK batch per process, the gradient averaged over them. Rank 0 logs and writes
  the run folder. Settings: train.backend (auto|gloo|nccl), train.sync_bn (SyncBatchNorm,
  CUDA only), train.accumulate (PK batches per step and process).
speed:
  --set train.amp=bf16 (CPU or CUDA) or train.amp=fp16 (CUDA, with a GradScaler) for mixed
  precision; --set train.channels_last=true for channels_last convolutions.
"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "train",
        run,
        Settings,
        help="train HDML on images (or its graph half on features)",
        description=DESCRIPTION,
    )
    add_data_options(parser, KINDS)
    parser.add_argument(
        "--out", metavar="DIR", help="run folder: checkpoint.pt, model.pt, log.jsonl, settings.yaml"
    )
    parser.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a training checkpoint (its model; the train settings given now)",
    )
    add_settings_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml train` (under torchrun: one process of a DistributedDataParallel run)."""
    require(args, "dataset")
    require(args, "out")
    try:
        distributed.init_distributed(settings.train.backend, settings.train.device)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", str(error)) from None
    try:
        return _train(args, settings)
    finally:
        distributed.cleanup()


def _model(args: argparse.Namespace, settings: Settings, data: OpenedDataset) -> nn.Module:
    """The checkpoint's model with --resume, else a new one for the data."""
    if args.resume is not None:
        if not os.path.isfile(args.resume):
            raise UsageError("--resume", f"checkpoint {args.resume!r} does not exist")
        try:
            return build_model(read_checkpoint(args.resume))
        except (OSError, ValueError, TypeError, RuntimeError, KeyError) as error:
            raise UsageError("--resume", str(error)) from None
    feature_dim = int(data.train.rows.shape[1]) if data.input_kind == "features" else None
    try:
        return new_model(settings.model, num_classes=data.num_classes, feature_dim=feature_dim)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", f"bad model settings: {error}") from None


def _train(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml train` once the settings are read (and, under torchrun, the process group joined)."""
    data = dataset_of(args, settings)
    if data.train.labels is None:
        raise UsageError("--labels", f"is required to train on --dataset {args.dataset}")
    seed_everything(settings.train.seed)
    model = _model(args, settings, data)
    out = Path(args.out)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.yaml").write_text(dump_settings(settings), encoding="utf-8")
    try:
        trainer = Trainer(model, data.train.rows, data.train.labels, settings.train, out_dir=out)
    except ValueError as error:
        raise UsageError("--set", str(error)) from None
    try:
        history = trainer.fit(resume=args.resume)
    except ValueError as error:
        if args.resume is not None and "resume" in str(error):
            raise UsageError("--resume", str(error)) from None
        raise
    if not distributed.is_main():
        return 0
    if history:
        last = history[-1]
        print(
            f"trained {trainer.epoch} epochs, {trainer.step} steps; last step: loss {last['loss']:.4f} "
            f"(node {last['node']:.4f}, link {last['link']:.4f})"
        )
    else:
        print(f"nothing to do: the checkpoint already has {trainer.epoch} of {settings.train.epochs} epochs")
    print(f"wrote {out / 'model.pt'}, {out / 'checkpoint.pt'} and {out / 'log.jsonl'}")
    return 0
