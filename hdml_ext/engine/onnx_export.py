"""ONNX export of the embedding network: HA-Net (with its NFA gates and NFE heads), images ->
embeddings. The graph half (RE-GCN, link head) works on F-Graphs built per query and stays in
PyTorch.

    path = export_embedding_onnx(model, "model.onnx", height=256, width=128)
    max_diff = compare_with_onnxruntime(model, path, torch.randn(4, 3, 256, 128))

The exported graph takes `images` float32 [N, 3, height, width] (normalised as the checkpoint's
"input" record says; N is a dynamic axis) and returns `embeddings` float32 [N, out_dim]. The
custom op `hdml::nfa_gate` goes through its registered ONNX translation
(`hdml_ext.ops.nfa_gate.onnx_translation`), so the file needs nothing but standard ONNX ops.
Needs the `export` extra (onnx, onnxscript; onnxruntime for the comparison).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import require_images, require_int
from .._version import __version__
from ..nn import HANet
from ..ops.nfa_gate import onnx_translation

#: Names of the exported graph's input and output.
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"

#: Key prefix of the metadata the ONNX file carries (`onnx_metadata`).
METADATA_PREFIX = "hdml."


def require_package(name: str) -> Any:
    """The module `name` (onnx, onnxruntime); ImportError saying how to install it when missing."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"ONNX export needs the {name} package: pip install 'hdml_ext[export]'") from error


def embedding_network(model: nn.Module) -> HANet:
    """The HA-Net of `model`: an `HANet` itself, or the `hanet` of an image model (`HDML`);
    ValueError for a model of features (`HDMLOnFeatures` has no image network to export)."""
    if isinstance(model, HANet):
        return model
    hanet = getattr(model, "hanet", None)
    if isinstance(hanet, HANet):
        return hanet
    kind = getattr(model, "input_kind", None)
    raise ValueError(
        f"model should be an image model with an HA-Net (HDML or HANet), got {type(model).__name__}"
        + (f" (a model of {kind})" if kind is not None else "")
    )


def export_embedding_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    height: int,
    width: int,
    input_record: dict | None = None,
    opset_version: int | None = None,
) -> Path:
    """Write the embedding network of `model` to the ONNX file `path` and return the path.

    model: `HDML` or `HANet` (exported in eval mode, on the CPU, in float32; the model itself is
    left as it was). height, width: the image size the graph is traced at (the size the model
    was trained on); the batch axis is dynamic. input_record: the checkpoint's "input" dict
    (height, width, mean, std), stored in the file's metadata with the embedding width and the
    hdml_ext version (see `onnx_metadata`). opset_version: the ONNX opset (torch's default when
    None). The file is written whole (weights inside, no external data) and replaced atomically.
    """
    network = embedding_network(model)
    height = require_int("height", height, minimum=1)
    width = require_int("width", width, minimum=1)
    onnx = require_package("onnx")
    # A private float32 CPU copy in eval mode: the caller's model keeps its device and mode.
    network = _cpu_eval_copy(network)
    # Two images: torch.export specialises a batch of 1, which would fix the batch axis.
    example = torch.zeros(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        network,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        custom_translation_table=onnx_translation(),
        opset_version=opset_version,
        external_data=False,
        verbose=False,
    )
    proto = program.model_proto
    metadata = {"embedding_dim": network.out_dim, "hdml_ext_version": __version__,
                "input": input_record or {"height": height, "width": width}}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, json.dumps(value)
    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        onnx.save_model(proto, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _cpu_eval_copy(network: HANet) -> HANet:
    return copy.deepcopy(network).float().cpu().eval()


def onnx_metadata(path: str | os.PathLike) -> dict:
    """The hdml metadata an exported file carries: {"embedding_dim": int, "hdml_ext_version": str,
    "input": {"height", "width"[, "mean", "std"]}}."""
    onnx = require_package("onnx")
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {entry.key[len(METADATA_PREFIX):]: json.loads(entry.value)
            for entry in proto.metadata_props if entry.key.startswith(METADATA_PREFIX)}


def run_onnxruntime(path: str | os.PathLike, images: Tensor | np.ndarray) -> np.ndarray:
    """Embeddings [N, out_dim] of `images` float32 [N, 3, H, W] by the exported file, on ONNX
    Runtime's CPU provider."""
    onnxruntime = require_package("onnxruntime")

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    if isinstance(images, Tensor):
        images = images.detach().cpu().float().numpy()
    array = np.asarray(images, dtype=np.float32)
    return session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]


@torch.no_grad()
def compare_with_onnxruntime(model: nn.Module, path: str | os.PathLike, images: Tensor) -> float:
    """The largest absolute difference between `model`'s embeddings of `images` [N, 3, H, W] (in
    PyTorch, float32 on the CPU, eval mode) and the exported file's (ONNX Runtime)."""
    require_images(images)
    network = _cpu_eval_copy(embedding_network(model))
    expected = network(images.detach().float().cpu()).numpy()
    got = run_onnxruntime(path, images)
    if got.shape != expected.shape:
        raise ValueError(f"the ONNX file gave embeddings of shape {got.shape}, PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())
