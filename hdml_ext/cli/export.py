"""`hdml export`: the embedding network of a trained model (HA-Net, images -> embeddings) as ONNX."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

import torch

from ..data import input_pipeline
from ..engine import Settings
from ..engine.onnx_export import compare_with_onnxruntime, embedding_network, export_embedding_onnx
from .options import (
    UsageError,
    add_checkpoint_option,
    add_command,
    add_settings_options,
    checkpoint_model,
    require,
)
from .run_folder import writable_file

#: Images in the ONNX Runtime comparison after the export.
CHECK_IMAGES = 2


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "export",
        run,
        Settings,
        help="ONNX export of the embedding network (images -> embeddings)",
        description="Write the HA-Net of a trained image model (NFA and NFE included; the graph "
        "half stays in PyTorch) as an ONNX file: input `images` float32 [N, 3, H, W] normalised "
        "as in training (N dynamic; H x W the checkpoint's data.height x data.width), output "
        "`embeddings` float32 [N, D]. The NFA gate exports as standard ONNX ops. When "
        "onnxruntime is installed the file is run on random images and compared with PyTorch. "
        "Needs pip install 'hdml_ext[export]'.",
    )
    add_checkpoint_option(parser)
    parser.add_argument("--out", metavar="FILE", help="the ONNX file to write, e.g. model.onnx")
    parser.add_argument(
        "--opset", metavar="N", type=int, help="ONNX opset version (torch's default when not given)"
    )
    add_settings_options(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`hdml export`."""
    out = writable_file(require(args, "out"))
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"hdml export: needs {' and '.join(missing)}: pip install 'hdml_ext[export]'", file=sys.stderr)
        return 1
    model = checkpoint_model(args, torch.device("cpu"), settings)
    try:
        embedding_network(model)
    except ValueError as error:
        raise UsageError("--checkpoint", str(error)) from None
    record = input_pipeline(settings.data)
    path = export_embedding_onnx(
        model, out, height=record["height"], width=record["width"], input_record=record,
        opset_version=args.opset,
    )  # fmt: skip
    print(f"wrote {path} (images [N, 3, {record['height']}, {record['width']}] -> embeddings "
          f"[N, {model.out_dim}])")
    if importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: the file was not run (pip install 'hdml_ext[export]')")
        return 0
    images = torch.randn(CHECK_IMAGES, 3, record["height"], record["width"])
    difference = compare_with_onnxruntime(model, path, images)
    print(f"onnxruntime vs PyTorch on {CHECK_IMAGES} random images: max |difference| {difference:.2e}")
    return 0
