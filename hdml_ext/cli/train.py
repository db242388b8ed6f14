"""`hdml train`: train a model on a data set's training rows."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from torch import nn

from ..data import ImageReadError, OpenedDataset, input_pipeline, source_length
from ..engine import (
    Settings,
    Trainer,
    distributed,
    dump_settings,
    new_model,
    read_checkpoint,
    seed_everything,
)
from ..engine.models import build_model
from ..nn.hanet import IMAGENET
from .options import (
    UsageError,
    add_command,
    add_data_options,
    add_settings_options,
    available_device,
    dataset_of,
    given_settings,
    require,
    use_input_pipeline,
)
from .run_folder import RunFolder

KINDS = ("market1501", "dukemtmc", "image-folder", "digit-instances", "digits", "features", "bin")
EMBEDDED_KINDS = ("digit-instances", "digits")
RANDOM_START_WARNING = (
    "hdml train: warning: HA-Net's backbone starts from random weights (model.weights=null); the "
    f"paper's numbers assume an ImageNet start: --set model.weights={IMAGENET} (or a local state-dict file)"
)

DESCRIPTION = """\
Train HDML on a data set's training split (images), or HDMLOnFeatures on pre-extracted features.

several processes:
  torchrun --standalone --nproc_per_node=N -m hdml_ext.cli train ... runs N processes under
  DistributedDataParallel (one GPU each with CUDA, else CPU processes over gloo); each global
  step is one PK batch per process, the gradient averaged over them. Rank 0 logs and writes
  the run folder. Settings: train.dist_backend (auto|gloo|nccl), train.sync_bn (SyncBatchNorm,
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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (else it is refused)"
    )
    add_settings_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml train` (under torchrun: one process of a DistributedDataParallel run)."""
    require(args, "dataset")
    folder = RunFolder(require(args, "out"), resume=args.resume, overwrite=args.overwrite)
    available_device("train.device", settings.train.device)
    weights = settings.model.weights
    if args.resume is None and weights not in (None, IMAGENET) and not os.path.isfile(weights):
        message = f"model.weights should be {IMAGENET!r} or a state-dict file's path, no file at {weights!r}"
        raise UsageError("--set", message)
    try:
        distributed.init_distributed(settings.train.dist_backend, settings.train.device)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", str(error)) from None
    try:
        return _train(args, settings, folder)
    finally:
        distributed.cleanup()


def _resume_record(args: argparse.Namespace, settings: Settings) -> dict:
    """The --resume checkpoint; settings.data takes the input pipeline it records."""
    if not os.path.isfile(args.resume):
        raise UsageError("--resume", f"checkpoint {args.resume!r} does not exist")
    try:
        record = read_checkpoint(args.resume)
    except (OSError, ValueError) as error:
        raise UsageError("--resume", str(error)) from None
    use_input_pipeline(args, settings, record)
    return record


def _resumed_model(
    args: argparse.Namespace, settings: Settings, data: OpenedDataset, record: dict
) -> nn.Module:
    """The --resume checkpoint's model, checked against the data; settings.model takes what
    the checkpoint records (a different explicit model setting is refused)."""
    try:
        model = build_model(record)
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        raise UsageError("--resume", str(error)) from None
    if model.input_kind != data.input_kind:
        raise UsageError(
            "--resume",
            f"the checkpoint's model takes {model.input_kind}, --dataset {args.dataset} gives "
            f"{data.input_kind}",
        )
    if data.input_kind == "features" and model.in_dim != data.train.rows.shape[1]:
        raise UsageError(
            "--resume",
            f"the checkpoint's model takes features of width {model.in_dim}, --root holds width "
            f"{data.train.rows.shape[1]}",
        )
    if data.input_kind == "images" and model.num_classes != data.num_classes:
        raise UsageError(
            "--resume",
            f"the checkpoint's model has {model.num_classes} classes, the training data {data.num_classes}",
        )
    given = given_settings(args)
    for key, value in record["model_config"].items():
        if not hasattr(settings.model, key):
            continue
        value = list(value) if isinstance(value, tuple) else value
        if f"model.{key}" in given and getattr(settings.model, key) != value:
            raise UsageError(
                "--set",
                f"model.{key}={getattr(settings.model, key)!r} differs from the checkpoint's {value!r}: a "
                "resumed run keeps its model (drop the setting, or start a new run)",
            )
        setattr(settings.model, key, value)
    return model


def _model(
    args: argparse.Namespace, settings: Settings, data: OpenedDataset, record: dict | None
) -> nn.Module:
    """The checkpoint's model with --resume (its `record`), else a new one for the data."""
    if record is not None:
        return _resumed_model(args, settings, data, record)
    feature_dim = int(data.train.rows.shape[1]) if data.input_kind == "features" else None
    real_images = data.input_kind == "images" and args.dataset not in EMBEDDED_KINDS
    if real_images and settings.model.weights is None and distributed.is_main():
        print(RANDOM_START_WARNING, file=sys.stderr)
    try:
        return new_model(settings.model, num_classes=data.num_classes, feature_dim=feature_dim)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", f"bad model settings: {error}") from None


def _train(args: argparse.Namespace, settings: Settings, folder: RunFolder) -> int:
    """`hdml train` once the settings are read (and, under torchrun, the process group joined)."""
    record = _resume_record(args, settings) if args.resume is not None else None
    data = dataset_of(args, settings)
    if data.train.labels is None:
        raise UsageError("--labels", f"is required to train on --dataset {args.dataset}")
    if source_length(data.train.rows) == 0:
        raise UsageError("--root", f"the training split of {args.root!r} holds no rows")
    seed_everything(settings.train.seed)
    model = _model(args, settings, data, record)
    pipeline = input_pipeline(settings.data) if data.input_kind == "images" else None
    try:
        trainer = Trainer(
            model, data.train.rows, data.train.labels, settings.train, out_dir=folder.path,
            input_pipeline=pipeline,
        )  # fmt: skip
    except ValueError as error:
        raise UsageError("--set", str(error)) from None
    main = distributed.is_main()
    if main:
        folder.start(dump_settings(settings) if args.resume is None else None)
    try:
        history = trainer.fit(resume=args.resume)
    except KeyboardInterrupt:
        return _interrupted(folder) if main else 130
    except ImageReadError as error:
        if main:
            folder.abandon()
        raise UsageError("--root", str(error)) from None
    except ValueError as error:
        if main:
            folder.abandon()
        if args.resume is not None and "resume" in str(error):
            raise UsageError("--resume", str(error)) from None
        raise
    except BaseException:
        if main:
            folder.abandon()
        raise
    if not main:
        return 0
    if history:
        last = history[-1]
        print(
            f"trained {trainer.epoch} epochs, {trainer.step} steps; last step: loss {last['loss']:.4f} "
            f"(node {last['node']:.4f}, link {last['link']:.4f})"
        )
    else:
        print(f"nothing to do: the checkpoint already has {trainer.epoch} of {settings.train.epochs} epochs")
    written = [str(path) for path in trainer.written]
    if args.resume is not None and history:
        written.append(str(folder.write_settings(dump_settings(settings))))
    print(f"wrote {', '.join(written)}" if written else f"{folder.path} is unchanged")
    return 0


def _interrupted(folder: RunFolder) -> int:
    """Ctrl-C: say where the last checkpoint is (a new run without one leaves nothing); 130."""
    folder.abandon()
    if folder.checkpoint.is_file():
        where = f"the last checkpoint is {folder.checkpoint}: continue with --resume {folder.checkpoint}"
    else:
        where = "no epoch had finished, so no checkpoint was written"
    print(f"hdml train: interrupted; {where}", file=sys.stderr)
    return 130
