"""`hdml embed`: a trained model's features of a data set's rows, written for use elsewhere."""

from __future__ import annotations

import argparse
from typing import Any

from ..data import ImageReadError, source_length
from ..engine import Settings
from ..engine.embed import FORMATS, embed_dataset, write_embeddings
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
from .run_folder import writable_folder

KINDS = ("market1501", "dukemtmc", "image-folder", "digit-instances", "digits", "features", "bin")
SPLITS = ("held-out", "train", "query", "gallery")

DESCRIPTION = """\
Embed a data set's rows with a trained model (HA-Net embeddings of images; the features
themselves for a model trained on features) and write them for other tools:
  --format npy  features.npy [N, D] float32
  --format bin  features.bin (raw float32 rows, learn-to-cluster's layout) + features.meta (labels)
and, where known, labels.npy, camids.npy (Re-ID splits), and ids.txt (each row's image file,
or its row number). Read them back with
  hdml cluster --dataset features --root OUT/features.npy --labels OUT/labels.npy ...
  hdml cluster --dataset bin --root OUT/features.bin --dim D --labels OUT/features.meta ...
Settings: eval.device, eval.embed_batch_size, data.num_workers (DataLoader workers).
"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "embed",
        run,
        Settings,
        help="write a trained model's features of a data set (.npy, or .bin + .meta)",
        description=DESCRIPTION,
    )
    add_data_options(parser, KINDS)
    add_checkpoint_option(parser)
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="held-out",
        help="which rows: held-out (default: what `hdml cluster` clusters: query + gallery of Re-ID "
        "data, else every row), train, query or gallery (Re-ID data only)",
    )
    parser.add_argument("--format", choices=FORMATS, default="npy", help="npy (default) or bin + meta")
    parser.add_argument("--out", metavar="DIR", help="folder for the features and their side files")
    add_settings_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml embed`."""
    require(args, "dataset")
    out = writable_folder(require(args, "out"))
    device = available_device("eval.device", settings.eval.device)
    model = checkpoint_model(args, device, settings)
    data = dataset_of(args, settings)
    if model.input_kind != data.input_kind:
        raise UsageError(
            "--checkpoint",
            f"the checkpoint's model takes {model.input_kind}, --dataset {args.dataset} gives "
            f"{data.input_kind}",
        )
    splits = {"held-out": data.held_out, "train": data.train, "query": data.query, "gallery": data.gallery}
    rows = splits[args.split]
    if rows is None:
        message = f"--dataset {args.dataset} has no {args.split} split (only held-out, train)"
        raise UsageError("--split", message)
    if data.input_kind == "features" and rows.rows.shape[1] != model.out_dim:
        raise UsageError(
            "--root", f"the features have D = {rows.rows.shape[1]}, the model expects {model.out_dim}"
        )
    if source_length(rows.rows) == 0:
        raise UsageError("--root", f"the {args.split} split of {args.root!r} holds no rows")
    try:
        embedded = embed_dataset(
            model, rows, batch_size=settings.eval.embed_batch_size, device=device,
            num_workers=settings.data.num_workers, progress=not args.quiet, desc=f"embedding {args.split}",
        )  # fmt: skip
    except ImageReadError as error:
        raise UsageError("--root", str(error)) from None
    written = write_embeddings(embedded, out, fmt=args.format)
    count, dim = embedded.features.shape
    print(f"embedded {count} rows ({args.split}) into {dim} features; wrote {', '.join(map(str, written))}")
    return 0
