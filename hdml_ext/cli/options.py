"""What every sub-command shares: the settings and data options, and turning the engine's
errors about them into one-line usage errors."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import torch
from omegaconf import OmegaConf
from torch import nn

from ..data import DATASET_KINDS, DatasetError, OpenedDataset, input_pipeline, open_dataset
from ..engine import SettingsError, dump_settings, load_settings
from ..engine.checkpoint import read_checkpoint
from ..engine.distributed import local_device
from ..engine.models import build_model

SETTINGS_HELP = """\
settings:
  Hyper-parameters are settings, not flags. Each command starts from built-in defaults (the
  paper's; `--print-config` shows them), applies --config FILE (YAML or JSON with the sections
  data, model, train, eval, cluster), then each --set SECTION.KEY=VALUE in order. VALUE is read
  as YAML: --set train.epochs=2 --set train.milestones=[1] --set model.weights=null.
  Flags name what to run on (data set, paths, output); settings say how.
"""

FORMATTER = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """A bad command-line argument: reported as `argument OPTION: message`, exit code 2."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def add_command(
    commands: Any,
    name: str,
    run: Callable[[argparse.Namespace, Any], int],
    schema: type,
    base: Callable[[argparse.Namespace], dict | None] = lambda args: None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A sub-command parser with the settings options; its parsed arguments carry the parser
    and what `run_command` needs: `run(args, settings)`, the settings `schema` and `base`
    (the overrides applied over the schema's defaults before --config and --set)."""
    parser = commands.add_parser(name, formatter_class=FORMATTER, epilog=SETTINGS_HELP, **kwargs)
    parser.set_defaults(run=run, settings_schema=schema, settings_base=base, command_parser=parser)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Load the command's settings; print them for --print-config, else run the command."""
    settings = settings_of(args, args.settings_schema, args.settings_base(args))
    if args.print_config:
        return print_settings(settings)
    return args.run(args, settings)


def add_settings_options(parser: argparse.ArgumentParser) -> None:
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


def add_data_options(parser: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    group = parser.add_argument_group("data")
    listing = "; ".join(f"{kind}: {DATASET_KINDS[kind]}" for kind in kinds)
    group.add_argument(
        "--dataset",
        metavar="KIND",
        choices=kinds,
        help=f"data set kind, one of {', '.join(kinds)} ({listing})",
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


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="FILE", help="model.pt or checkpoint.pt of `hdml train`")


def settings_of(args: argparse.Namespace, schema: type, base: dict | None = None) -> Any:
    """The settings of this run: `schema`'s defaults, `base`, --config, then each --set (and
    --quiet: no training progress bars)."""
    try:
        settings = load_settings(schema, args.config, args.overrides, base)
    except SettingsError as error:
        raise UsageError(error.option, str(error)) from None
    if args.quiet:
        settings.train.progress = False
    return settings


def print_settings(settings: Any) -> int:
    """--print-config: the settings as YAML on stdout; the exit code 0."""
    sys.stdout.write(dump_settings(settings))
    return 0


def require(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    if value is None:
        raise UsageError(f"--{name}", "is required")
    return value


def dataset_of(args: argparse.Namespace, settings: Any) -> OpenedDataset:
    """The data set that --dataset, --root (and --labels, --dim) name."""
    try:
        return open_dataset(
            require(args, "dataset"),
            args.root,
            settings.data,
            labels=getattr(args, "labels", None),
            dim=getattr(args, "dim", None),
        )
    except DatasetError as error:
        raise UsageError(f"--{error.argument}", str(error)) from None


def given_settings(args: argparse.Namespace) -> set[str]:
    """The "section.key" names that --config or --set give explicitly."""
    names = {item.partition("=")[0].strip() for item in args.overrides}
    if args.config is not None:
        for section, values in OmegaConf.to_container(OmegaConf.load(args.config)).items():
            if isinstance(values, dict):
                names.update(f"{section}.{key}" for key in values)
    return names


def available_device(key: str, name: str) -> torch.device:
    """The device the setting `key` names (see `local_device`); UsageError when this machine
    has no such device (checked before any work)."""
    device = local_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            message = f"{key}={name!r} needs CUDA device {device.index or 0}, but torch sees {count} GPUs"
            raise UsageError("--set", f"{message}; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        message = f"{key}={name!r} needs Apple's MPS, which this machine lacks"
        raise UsageError("--set", f"{message}; use cpu or auto")
    return device


def use_input_pipeline(args: argparse.Namespace, settings: Any, record: dict) -> None:
    """Read images the way the checkpoint's model was trained: the recorded size replaces the
    default data.height / data.width; a different size given explicitly is kept, with a warning."""
    recorded = record.get("input")
    if recorded is None:
        return
    current = input_pipeline(settings.data)
    if [recorded["mean"], recorded["std"]] != [current["mean"], current["std"]]:
        raise UsageError(
            "--checkpoint",
            f"the model was trained on images normalised with mean {recorded['mean']}, std "
            f"{recorded['std']}; this version reads them with mean {current['mean']}, std {current['std']}",
        )
    given = given_settings(args)
    for key in ("height", "width"):
        if f"data.{key}" not in given:
            setattr(settings.data, key, int(recorded[key]))
    size = (settings.data.height, settings.data.width)
    if size != (recorded["height"], recorded["width"]):
        print(
            f"hdml {args.command}: warning: data.height x data.width = {size[0]}x{size[1]} differs from the "
            f"{recorded['height']}x{recorded['width']} the model was trained on; reading images at "
            f"{size[0]}x{size[1]} as given",
            file=sys.stderr,
        )


def checkpoint_model(args: argparse.Namespace, device: Any, settings: Any) -> nn.Module:
    """The model of --checkpoint, in eval mode on `device`; settings.data takes the input
    pipeline the checkpoint records (`use_input_pipeline`)."""
    try:
        record = read_checkpoint(require(args, "checkpoint"))
        model = build_model(record)
    except (OSError, ValueError, TypeError, RuntimeError, KeyError) as error:
        raise UsageError("--checkpoint", str(error)) from None
    use_input_pipeline(args, settings, record)
    return model.to(device).eval()
