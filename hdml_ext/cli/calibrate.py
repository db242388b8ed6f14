"""`hdml calibrate`: choose a trained model's clustering method and parameters on labelled
held-out rows and store the choice in its checkpoint, for `hdml cluster` to use."""

from __future__ import annotations

import argparse
from typing import Any

from torch import Tensor, nn

from ..cluster.choice import calibrate, store_choice
from ..data import OpenedDataset
from ..engine import Settings
from .evaluate import embed
from .options import (
    UsageError,
    add_checkpoint_option,
    add_command,
    add_data_options,
    add_settings_options,
    available_device,
    checkpoint_model,
    dataset_of,
    require,
)

KINDS = ("image-folder", "digit-instances", "digits", "features", "bin")

DESCRIPTION = """\
Choose how `hdml cluster` clusters this model's link scores, on labelled rows of identities the
model did not train on (the held-out rows of --dataset: query + gallery where the kind has them,
else every row; labels are required): pseudo-label propagation (threshold among quantiles of
the link scores, max_size among 10, 20, 40, 80, 160, 320 and none; cluster.step and
cluster.max_iter as set) or Infomap over the edges scoring at least a floor (floor among
quantiles). The mean of NMI, pairwise F and BCubed F decides. The choice (every method's best
parameters and its validation metrics) is written into --checkpoint; `hdml cluster` then uses
it unless --set cluster.method / threshold / max_size / step / max_iter say otherwise.
"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands, "calibrate", run, Settings, description=DESCRIPTION,
        help="choose and store a model's clustering method and parameters on labelled held-out rows",
    )  # fmt: skip
    add_data_options(parser, KINDS)
    add_checkpoint_option(parser)
    add_settings_options(parser)


def held_out_embeddings(
    model: nn.Module, data: OpenedDataset, settings: Settings, device: Any, progress: bool
) -> Tensor:
    """The embeddings [N, D] on `device` of the data set's held-out rows (features as they are,
    checked against the model's width; images embedded by the model)."""
    rows = data.held_out
    if data.input_kind == "features":
        if rows.rows.shape[1] != model.out_dim:
            raise UsageError(
                "--root", f"the features have D = {rows.rows.shape[1]}, the model expects {model.out_dim}"
            )
        return rows.rows.to(device)
    if model.input_kind != "images":
        raise UsageError(
            "--checkpoint",
            f"calibrating on images needs a model of images, the checkpoint's takes {model.input_kind} "
            "(give --dataset features)",
        )
    return embed(model, rows, settings, device, progress, "embedding images")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml calibrate`."""
    require(args, "dataset")
    checkpoint = require(args, "checkpoint")
    device = available_device("cluster.device", settings.cluster.device)
    model = checkpoint_model(args, device, settings)
    progress = not args.quiet
    data = dataset_of(args, settings)
    labels = data.held_out.labels
    if labels is None:
        raise UsageError("--labels", "is required: calibrating scores clusterings against the true labels")
    embeddings = held_out_embeddings(model, data, settings, device, progress)
    config = settings.cluster.cluster_config()
    k = config.k if config.k is not None else model.k
    if k != model.k:
        raise UsageError("--set", f"cluster.k = {k} differs from the model's k = {model.k}")
    try:
        choice = calibrate(model, embeddings, labels.numpy(), config, progress=progress)
    except ValueError as error:
        raise UsageError("--set", str(error)) from None
    for method, chosen in choice["methods"].items():
        metrics = chosen["validation"]
        parameters = ", ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}"
                               for key, value in chosen.items() if key != "validation")
        print(f"{method}: {parameters}: NMI {metrics['nmi']:.4f}  pairwise F {metrics['pairwise_f']:.4f}  "
              f"BCubed F {metrics['bcubed_f']:.4f}")
    store_choice(checkpoint, choice)
    print(f"chose {choice['method']} on {labels.numel()} rows; wrote the choice into {checkpoint}")
    return 0
