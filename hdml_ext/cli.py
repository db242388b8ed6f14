"""The `hdml` command: train, evaluate (person Re-ID), cluster, demo.

    hdml train --dataset market1501 --root /data/Market-1501 --out runs/market
    torchrun --standalone --nproc_per_node=2 -m hdml_ext.cli train --dataset market1501 \
        --root /data/Market-1501 --out runs/market     # one process per GPU (or CPU share)
    hdml evaluate --checkpoint runs/market/model.pt --dataset market1501 --root /data/Market-1501
    hdml cluster --checkpoint runs/faces/model.pt --dataset features --root feats.npy \
        --labels labels.npy --out out/
    hdml demo --out results/demo

Run `hdml <command> --help` for each command's options and `hdml <command> --print-config`
for its settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .engine import TrainConfig

SETTINGS_HELP = """\
settings:
  Hyper-parameters are settings, not flags. Each command starts from built-in defaults (the
  paper's; `--print-config` shows them), applies --config FILE (YAML or JSON with the sections
  data, model, train, eval, cluster), then each --set SECTION.KEY=VALUE in order. VALUE is read
  as YAML: --set train.epochs=2 --set train.milestones=[1] --set model.weights=null.
  Flags name what to run on (data set, paths, output); settings say how.
"""

DATASET_KINDS = {
    "market1501": "Market-1501 folder (bounding_box_train/, query/, bounding_box_test/)",
    "dukemtmc": "DukeMTMC-reID folder (same layout)",
    "image-folder": "one sub-folder of images per identity",
    "digits": "scikit-learn's digits, embedded (no --root)",
    "features": ".npy feature matrix [N, D] (--root), labels from --labels",
    "bin": "raw float32 .bin features [N, --dim] (--root), labels from a .meta file (--labels)",
}
TRAIN_KINDS = ("market1501", "dukemtmc", "image-folder", "digits", "features", "bin")
EVAL_KINDS = ("market1501", "dukemtmc", "digits")
CLUSTER_KINDS = ("image-folder", "digits", "features", "bin")


TRAIN_DESCRIPTION = """\
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


class UsageError(Exception):
    """A bad command-line argument: reported as `argument OPTION: message`, exit code 2."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


# ----------------------------------------------------------------------------- parser
def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (see `settings:` below)")
    group.add_argument(
        "--config", metavar="FILE", help="YAML or JSON settings file applied over the defaults"
    )
    group.add_argument(
        "--set",
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. --set train.epochs=2 (repeatable, applied in order)",
    )
    group.add_argument(
        "--print-config", action="store_true", help="print the merged settings as YAML and exit"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_data_options(parser: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    group = parser.add_argument_group("data")
    listing = "; ".join(f"{kind}: {DATASET_KINDS[kind]}" for kind in kinds)
    group.add_argument(
        "--dataset", metavar="KIND", help=f"data set kind, one of {', '.join(kinds)} ({listing})"
    )
    group.add_argument(
        "--root", metavar="PATH", help="the data set folder, or the features file for features/bin"
    )
    if "features" in kinds or "bin" in kinds:
        group.add_argument(
            "--labels",
            metavar="PATH",
            help="labels of features (.npy or text) or bin (.meta); optional for cluster",
        )
        group.add_argument("--dim", metavar="D", type=int, help="feature width of a .bin file (bin only)")


def build_parser() -> argparse.ArgumentParser:
    """The `hdml` argument parser."""
    from ._version import __version__

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hdml",
        formatter_class=formatter,
        epilog=SETTINGS_HELP,
        description="Hierarchical deep multi-task learning (HDML) for person Re-ID and face clustering.",
    )
    parser.add_argument(
        "--version", action="version", version=f"hdml_ext {__version__}", help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        formatter_class=formatter,
        epilog=SETTINGS_HELP,
        help="train HDML on images (or its graph half on features)",
        description=TRAIN_DESCRIPTION,
    )
    _add_data_options(train, TRAIN_KINDS)
    train.add_argument(
        "--out", metavar="DIR", help="run folder: checkpoint.pt, model.pt, log.jsonl, settings.yaml"
    )
    train.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue from a training checkpoint (its model; the train settings given now)",
    )
    _add_settings_options(train)

    evaluate = commands.add_parser(
        "evaluate",
        formatter_class=formatter,
        epilog=SETTINGS_HELP,
        help="person Re-ID: mAP and CMC of a trained model",
        description="Rank each query's gallery (link scores of its F-Graph, then "
        "distance; or distance alone with --set eval.ranking=distance) "
        "and report mAP and CMC rank-1/5/10 (Market-1501 protocol).",
    )
    _add_data_options(evaluate, EVAL_KINDS)
    evaluate.add_argument("--checkpoint", metavar="FILE", help="model.pt or checkpoint.pt of `hdml train`")
    evaluate.add_argument("--out", metavar="FILE", help="also write the metrics to this JSON file")
    _add_settings_options(evaluate)

    cluster = commands.add_parser(
        "cluster",
        formatter_class=formatter,
        epilog=SETTINGS_HELP,
        help="face clustering: labels (and metrics when labels are known)",
        description="Cluster features or images: link scores on every node's "
        "F-Graph, then pseudo-label propagation. Writes labels.npy, and "
        "metrics.json (NMI, pairwise F, BCubed F) when the true labels "
        "are known.",
    )
    _add_data_options(cluster, CLUSTER_KINDS)
    cluster.add_argument("--checkpoint", metavar="FILE", help="model.pt or checkpoint.pt of `hdml train`")
    cluster.add_argument("--out", metavar="DIR", help="folder for labels.npy and metrics.json")
    _add_settings_options(cluster)

    demo = commands.add_parser(
        "demo",
        formatter_class=formatter,
        epilog=SETTINGS_HELP,
        help="train and evaluate on scikit-learn's digits (CPU, minutes)",
        description="Train HDML and a node-loss-only baseline on scikit-learn's digits, "
        "evaluate Re-ID and clustering on the held-out images against "
        "baselines, write results.json and plots.",
    )
    demo.add_argument(
        "--out", metavar="DIR", default="results/demo", help="output folder (default results/demo)"
    )
    demo.add_argument("--quick", action="store_true", help="a seconds-long smoke run with tiny settings")
    _add_settings_options(demo)
    return parser


# ----------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace, defaults: dict) -> dict:
    from .settings import SettingsError, merge_settings

    try:
        return merge_settings(defaults, args.config, args.overrides)
    except SettingsError as error:
        raise UsageError(error.option, str(error)) from error


def _require(args: argparse.Namespace, name: str, why: str = "") -> str:
    value = getattr(args, name)
    if value is None:
        raise UsageError(f"--{name}", f"is required{why}")
    return value


def _existing(args: argparse.Namespace, name: str, *, folder: bool = False) -> str:
    path = _require(args, name)
    ok = os.path.isdir(path) if folder else os.path.exists(path)
    if not ok:
        raise UsageError(f"--{name}", f"{'folder' if folder else 'path'} {path!r} does not exist")
    return path


def _check_kind(args: argparse.Namespace, kinds: tuple[str, ...]) -> str:
    kind = _require(args, "dataset")
    if kind not in kinds:
        raise UsageError(
            "--dataset",
            f"unknown dataset kind {kind!r} for `hdml {args.command}`; choose one of {', '.join(kinds)}",
        )
    return kind


def _device(name: str) -> torch.device:
    from .engine.distributed import local_device

    return local_device(name)


def _image_dataset(records: list, settings: dict):
    from .data import ImageDataset

    data = settings["data"]
    return ImageDataset.from_records(records, size=(data["height"], data["width"]))


def _digits(settings: dict):
    from .data import load_digits_reid

    data = settings["data"]
    return load_digits_reid(
        height=data["height"],
        width=data["width"],
        seed=data["seed"],
        train_fraction=data["train_fraction"],
        query_fraction=data["query_fraction"],
        num_cameras=data["num_cameras"],
    )


def _read_reid(kind: str, root: str):
    from .data import read_dukemtmc, read_market1501

    reader = read_market1501 if kind == "market1501" else read_dukemtmc
    try:
        return reader(root)
    except (OSError, ValueError) as error:
        raise UsageError("--root", str(error)) from error


def _features(args: argparse.Namespace, kind: str, *, labels_required: bool):
    from .data import read_bin_meta, read_features

    root = _existing(args, "root")
    if labels_required:
        _require(args, "labels", f" with --dataset {kind}")
    if args.labels is not None and not os.path.exists(args.labels):
        raise UsageError("--labels", f"path {args.labels!r} does not exist")
    try:
        if kind == "features":
            found = read_features(root, args.labels)
        else:
            dim = args.dim
            if dim is None or dim < 1:
                raise UsageError("--dim", f"should be the positive feature width of the .bin file, got {dim}")
            found = read_bin_meta(root, args.labels, dim)
    except (OSError, ValueError) as error:
        raise UsageError("--root", str(error)) from error
    features = torch.from_numpy(np.ascontiguousarray(found.features, dtype=np.float32))
    labels = None if found.labels is None else torch.from_numpy(np.asarray(found.labels, dtype=np.int64))
    return features, labels


def _relabel(labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    classes, dense = torch.unique(labels, return_inverse=True)
    return dense, int(classes.numel())


def _check_k(k: object, num_rows: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError("--set", f"model.k should be a positive integer, got {k!r}")
    if k >= num_rows:
        raise UsageError(
            "--set",
            f"model.k = {k} should be smaller than the number of {what} ({num_rows}): "
            f"each F-Graph holds k other nodes",
        )


def _load_checkpoint_model(args: argparse.Namespace, device: torch.device):
    from .engine.checkpoint import load_model

    path = _existing(args, "checkpoint")
    try:
        return load_model(path, device)
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as error:
        raise UsageError("--checkpoint", str(error)) from error


def _print_settings(settings: dict) -> None:
    from .settings import dump_settings

    sys.stdout.write(dump_settings(settings))


# ----------------------------------------------------------------------------- commands
def run_train(args: argparse.Namespace) -> int:
    """`hdml train` (under torchrun: one process of a DistributedDataParallel run)."""
    from .engine import TrainConfig, distributed
    from .settings import default_settings

    settings = _settings(args, default_settings())
    if args.print_config:
        _print_settings(settings)
        return 0
    kind = _check_kind(args, TRAIN_KINDS)
    out = _require(args, "out")
    if args.quiet:
        settings["train"]["progress"] = False
    try:
        config = TrainConfig.from_dict(settings["train"])
        distributed.init_distributed(config.backend, config.device)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", str(error)) from error
    try:
        return _train(args, settings, config, kind, out)
    finally:
        distributed.cleanup()


def _train(args: argparse.Namespace, settings: dict, config: TrainConfig, kind: str, out: str) -> int:
    """`hdml train` once the settings are read (and, under torchrun, the process group joined)."""
    from .engine import Trainer, distributed, read_checkpoint, seed_everything
    from .engine.checkpoint import build_model
    from .settings import dump_settings

    main_rank = distributed.is_main()
    if kind in ("features", "bin"):
        source, labels = _features(args, kind, labels_required=True)
        what = "feature rows"
    elif kind == "digits":
        split = _digits(settings).train
        source, labels = split.images, split.labels
        what = "training images"
    elif kind == "image-folder":
        from .data import read_image_folder

        root = _existing(args, "root", folder=True)
        try:
            records, _ = read_image_folder(root)
        except (OSError, ValueError) as error:
            raise UsageError("--root", str(error)) from error
        source, labels = _image_dataset(records, settings), torch.tensor([r.label for r in records])
        what = "training images"
    else:
        splits = _read_reid(kind, _existing(args, "root", folder=True))
        source = _image_dataset(splits.train, settings)
        labels = torch.tensor([r.label for r in splits.train])
        what = "training images"
    labels, num_classes = _relabel(labels)

    seed_everything(config.seed)
    if args.resume is not None:
        if not os.path.isfile(args.resume):
            raise UsageError("--resume", f"checkpoint {args.resume!r} does not exist")
        try:
            model = build_model(read_checkpoint(args.resume))
        except (OSError, ValueError, TypeError, RuntimeError, KeyError) as error:
            raise UsageError("--resume", str(error)) from error
    else:
        model = _new_model(kind, settings["model"], source, num_classes)
    _check_k(int(model.to_config()["k"]), int(labels.shape[0]), what)

    if main_rank:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "settings.yaml").write_text(dump_settings(settings), encoding="utf-8")
    try:
        trainer = Trainer(model, source, labels, config, out_dir=out)
    except ValueError as error:
        raise UsageError("--set", str(error)) from error
    try:
        history = trainer.fit(resume=args.resume)
    except ValueError as error:
        if args.resume is not None and "resume" in str(error):
            raise UsageError("--resume", str(error)) from error
        raise
    if not main_rank:
        return 0
    if history:
        last = history[-1]
        print(
            f"trained {trainer.epoch} epochs, {trainer.step} steps; last step: loss {last['loss']:.4f} "
            f"(node {last['node']:.4f}, link {last['link']:.4f})"
        )
    else:
        print(f"nothing to do: the checkpoint already has {trainer.epoch} of {config.epochs} epochs")
    print(f"wrote {Path(out) / 'model.pt'}, {Path(out) / 'checkpoint.pt'} and {Path(out) / 'log.jsonl'}")
    return 0


def _new_model(kind: str, model_settings: dict, source, num_classes: int):
    from .nn import HDML, HDMLOnFeatures

    options = dict(model_settings)
    try:
        if kind in ("features", "bin"):
            return HDMLOnFeatures(
                int(source.shape[1]),
                k=options["k"],
                gcn_dims=options["gcn_dims"],
                attention=options["attention"],
            )
        return HDML(num_classes, **options)
    except (TypeError, ValueError) as error:
        raise UsageError("--set", f"bad model settings: {error}") from error


def _embed(model, source, settings: dict, device: torch.device, progress: bool, desc: str) -> torch.Tensor:
    from .engine import embed_rows

    return embed_rows(
        model,
        source,
        batch_size=settings["eval"]["embed_batch_size"],
        device=device,
        num_workers=settings["data"]["num_workers"],
        progress=progress,
        desc=desc,
    ).to(device)


def run_evaluate(args: argparse.Namespace) -> int:
    """`hdml evaluate`."""
    from .engine import evaluate_reid
    from .settings import default_settings

    settings = _settings(args, default_settings())
    if args.print_config:
        _print_settings(settings)
        return 0
    kind = _check_kind(args, EVAL_KINDS)
    device = _device(settings["eval"]["device"])
    model = _load_checkpoint_model(args, device)
    if type(model).__name__ != "HDML":
        raise UsageError(
            "--checkpoint",
            f"Re-ID evaluation needs an HDML image model, the checkpoint holds a {type(model).__name__}",
        )
    if settings["eval"]["ranking"] not in ("graph", "distance"):
        raise UsageError(
            "--set", f"eval.ranking should be 'graph' or 'distance', got {settings['eval']['ranking']!r}"
        )
    if kind == "digits":
        splits = _digits(settings)
        query, gallery = splits.query.images, splits.gallery.images
        q_ids = (splits.query.labels, splits.query.camids)
        g_ids = (splits.gallery.labels, splits.gallery.camids)
    else:
        splits = _read_reid(kind, _existing(args, "root", folder=True))
        query, gallery = _image_dataset(splits.query, settings), _image_dataset(splits.gallery, settings)
        q_ids = (torch.tensor([r.pid for r in splits.query]), torch.tensor([r.camid for r in splits.query]))
        g_ids = (
            torch.tensor([r.pid for r in splits.gallery]),
            torch.tensor([r.camid for r in splits.gallery]),
        )
    progress = not args.quiet
    q_emb = _embed(model, query, settings, device, progress, "embedding queries")
    g_emb = _embed(model, gallery, settings, device, progress, "embedding gallery")
    k = settings["eval"]["k"] if settings["eval"]["k"] is not None else int(model.to_config()["k"])
    if settings["eval"]["ranking"] == "graph" and k >= g_emb.shape[0]:
        raise UsageError(
            "--set", f"the F-Graph k = {k} should be smaller than the gallery ({g_emb.shape[0]} images)"
        )
    result = evaluate_reid(
        model,
        q_emb,
        g_emb,
        q_ids[0],
        g_ids[0],
        q_ids[1],
        g_ids[1],
        k=k,
        ranking=settings["eval"]["ranking"],
        batch_size=settings["eval"]["batch_size"],
        max_rank=settings["eval"]["max_rank"],
        progress=progress,
    )
    summary = {
        "mAP": result["mAP"],
        "rank1": result["rank1"],
        "rank5": result["rank5"],
        "rank10": result["rank10"],
        "num_valid_queries": result["num_valid_queries"],
        "ranking": settings["eval"]["ranking"],
        "k": k,
    }
    print(
        f"mAP {summary['mAP']:.4f}  rank-1 {summary['rank1']:.4f}  rank-5 {summary['rank5']:.4f}  "
        f"rank-10 {summary['rank10']:.4f}  "
        f"({summary['num_valid_queries']} queries, {summary['ranking']} ranking)"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps({**summary, "cmc": result["cmc"].tolist()}, indent=2) + "\n", encoding="utf-8"
        )
        print(f"wrote {args.out}")
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    """`hdml cluster`."""
    from .engine import ClusterConfig, cluster, clustering_metrics
    from .settings import default_settings

    settings = _settings(args, default_settings())
    if args.print_config:
        _print_settings(settings)
        return 0
    kind = _check_kind(args, CLUSTER_KINDS)
    out = Path(_require(args, "out"))
    device = _device(settings["cluster"]["device"])
    model = _load_checkpoint_model(args, device)
    is_image_model = type(model).__name__ == "HDML"
    progress = not args.quiet
    if kind in ("features", "bin"):
        embeddings, truth = _features(args, kind, labels_required=False)
        width = int(model.to_config()["in_dim"]) if not is_image_model else int(model.out_dim)
        if embeddings.shape[1] != width:
            raise UsageError(
                "--root", f"the features have D = {embeddings.shape[1]}, the model expects {width}"
            )
        embeddings = embeddings.to(device)
    else:
        if not is_image_model:
            raise UsageError(
                "--checkpoint",
                "clustering images needs an HDML image model, the checkpoint holds "
                "an HDMLOnFeatures (give --dataset features)",
            )
        if kind == "digits":
            splits = _digits(settings)
            source = torch.cat([splits.query.images, splits.gallery.images])
            truth = torch.cat([splits.query.labels, splits.gallery.labels])
        else:
            from .data import read_image_folder

            try:
                records, _ = read_image_folder(_existing(args, "root", folder=True))
            except (OSError, ValueError) as error:
                raise UsageError("--root", str(error)) from error
            source, truth = _image_dataset(records, settings), torch.tensor([r.label for r in records])
        embeddings = _embed(model, source, settings, device, progress, "embedding images")
    config_values = {key: value for key, value in settings["cluster"].items() if key != "device"}
    try:
        config = ClusterConfig(**config_values)
    except TypeError as error:
        raise UsageError("--set", f"bad cluster settings: {error}") from error
    k = config.k if config.k is not None else int(model.to_config()["k"])
    if k != int(model.to_config()["k"]):
        raise UsageError("--set", f"cluster.k = {k} differs from the model's k = {model.to_config()['k']}")
    if k >= embeddings.shape[0]:
        raise UsageError(
            "--set", f"the F-Graph k = {k} should be smaller than the number of rows ({embeddings.shape[0]})"
        )
    try:
        labels = cluster(model, embeddings, config, progress=progress)
    except ValueError as error:
        raise UsageError("--set", str(error)) from error
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "labels.npy", labels)
    num_clusters = int(labels.max()) + 1 if labels.size else 0
    print(f"{num_clusters} clusters of {labels.size} rows; wrote {out / 'labels.npy'}")
    if truth is not None:
        metrics = clustering_metrics(truth.numpy(), labels)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(
            f"NMI {metrics['nmi']:.4f}  pairwise F {metrics['pairwise_f']:.4f}  "
            f"BCubed F {metrics['bcubed_f']:.4f}; wrote {out / 'metrics.json'}"
        )
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    """`hdml demo`."""
    from .demo import demo_settings, run_demo

    settings = _settings(args, demo_settings(quick=args.quick))
    if args.print_config:
        _print_settings(settings)
        return 0
    if args.quiet:
        settings["train"]["progress"] = False
    run_demo(args.out, settings)
    return 0


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "cluster": run_cluster, "demo": run_demo_command}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hdml` command; returns the exit code (2 for bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    subparser = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        subparser.error(f"argument {error.option}: {error}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
