"""`hdml evaluate`: person Re-ID mAP and CMC of a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..data import DataSplit, ImageReadError, input_pipeline, source_length
from ..engine import Settings, embed_rows
from ..reid import evaluate_reid
from ..reid.visrank import write_visrank
from .options import (
    UsageError,
    add_checkpoint_option,
    add_command,
    add_data_options,
    add_settings_options,
    available_device,
    checkpoint_model,
    dataset_of,
)
from .run_folder import writable_file, writable_folder

KINDS = ("market1501", "dukemtmc", "digit-instances", "digits")


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "evaluate",
        run,
        Settings,
        help="person Re-ID: mAP and CMC of a trained model",
        description="Rank each query's gallery and report mAP, mINP and CMC rank-1/5/10 "
        "(Market-1501 protocol). By default each query is re-ranked with the gallery alone by "
        "the learned edges of every F-Graph (eval.ranking=link_rerank: the Jaccard distance of "
        "the link-score sets of query and gallery item, plus the distance; tuned by eval.link_k2, "
        "eval.link_lambda, eval.link_power, eval.link_normalise, whose defaults were chosen on "
        "validation identities). Other rankings with --set eval.ranking=...: link_rerank_together "
        "(all queries at once), graph (the paper's rule: link scores of the query's F-Graph, "
        "then distance), distance, k_reciprocal (k-reciprocal re-ranking of all queries at once) "
        "or k_reciprocal_per_query (each query with the gallery alone).",
    )
    add_data_options(parser, KINDS)
    add_checkpoint_option(parser)
    parser.add_argument("--out", metavar="FILE", help="also write the metrics to this JSON file")
    parser.add_argument(
        "--visrank", metavar="N", type=int, default=0,
        help="also draw N queries' ranked lists as PNGs: the query, its top 10 by the ranking above "
        "its top 10 by distance, true matches framed green and false ones red",
    )  # fmt: skip
    parser.add_argument(
        "--visrank-dir", metavar="DIR",
        help="folder of the --visrank PNGs (default: visrank/ beside --out, or ./visrank)",
    )  # fmt: skip
    add_settings_options(parser)


def embed(
    model: nn.Module, rows: DataSplit, settings: Settings, device: Any, progress: bool, desc: str
) -> Tensor:
    """The embeddings of `rows` on `device` (settings.eval.embed_batch_size rows per pass); an
    unreadable image is a UsageError naming --root."""
    try:
        return embed_rows(
            model,
            rows.rows,
            batch_size=settings.eval.embed_batch_size,
            device=device,
            num_workers=settings.data.num_workers,
            progress=progress,
            desc=desc,
        ).to(device)
    except ImageReadError as error:
        raise UsageError("--root", str(error)) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml evaluate`."""
    device = available_device("eval.device", settings.eval.device)
    out = writable_file(args.out) if args.out else None
    visrank_dir = visrank_folder(args, out)
    model = checkpoint_model(args, device, settings)
    if model.input_kind != "images":
        raise UsageError(
            "--checkpoint",
            f"Re-ID evaluation needs a model of images, the checkpoint's takes {model.input_kind}",
        )
    k = settings.eval.k if settings.eval.k is not None else model.k
    if k != model.k:
        raise UsageError("--set", f"eval.k = {k} differs from the model's k = {model.k} (its F-Graphs' size)")
    data = dataset_of(args, settings)
    for name, split in (("query", data.query), ("gallery", data.gallery)):
        if source_length(split.rows) == 0:
            raise UsageError("--root", f"the {name} split of {args.root!r} holds no images")
    progress = not args.quiet
    query = embed(model, data.query, settings, device, progress, "embedding queries")
    gallery = embed(model, data.gallery, settings, device, progress, "embedding gallery")
    try:
        result = evaluate_reid(
            model, query, gallery, data.query.labels, data.gallery.labels, data.query.camids,
            data.gallery.camids, k=k, ranking=settings.eval.ranking,
            link_rerank=settings.eval.link_rerank(), batch_size=settings.eval.batch_size,
            max_rank=settings.eval.max_rank, progress=progress,
        )  # fmt: skip
    except ValueError as error:
        raise UsageError("--set", str(error)) from None
    ranks = [key for key in ("rank1", "rank5", "rank10") if key in result]  # those <= eval.max_rank
    summary = {key: result[key] for key in ("mAP", *ranks, "mINP", "num_valid_queries")}
    summary.update(ranking=settings.eval.ranking, k=k)
    shown = "  ".join(f"rank-{key[4:]} {summary[key]:.4f}" for key in ranks)
    print(
        f"mAP {summary['mAP']:.4f}  {shown}  mINP {summary['mINP']:.4f}  "
        f"({summary['num_valid_queries']} queries, {summary['ranking']} ranking)"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report = {**summary, "cmc": result["cmc"].tolist()}
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if visrank_dir is not None:
        pipeline = input_pipeline(settings.data)
        paths = write_visrank(
            visrank_dir, model, query, gallery, data.query.rows, data.gallery.rows, data.query.labels,
            data.gallery.labels, data.query.camids, data.gallery.camids, count=args.visrank,
            ranking=settings.eval.ranking, k=k, link_rerank=settings.eval.link_rerank(),
            batch_size=settings.eval.batch_size, mean=pipeline["mean"], std=pipeline["std"],
        )  # fmt: skip
        print(f"wrote {len(paths)} ranked-list pictures to {visrank_dir}")
    return 0


def visrank_folder(args: argparse.Namespace, out: Path | None) -> Path | None:
    """The folder of the --visrank pictures (None without --visrank): --visrank-dir, else
    visrank/ beside --out, else ./visrank; checked writable before any work."""
    if args.visrank < 0:
        raise UsageError("--visrank", f"should be a number of queries >= 0, got {args.visrank}")
    if args.visrank == 0:
        return None
    default = out.parent / "visrank" if out is not None else Path("visrank")
    return writable_folder(args.visrank_dir or str(default), "--visrank-dir")
