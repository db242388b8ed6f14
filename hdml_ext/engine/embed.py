"""Features of a data set's rows for use elsewhere (`hdml embed`): a trained model's embeddings
with the rows' ids, and labels and cameras where known, written as .npy files or as a
learn-to-cluster .bin + .meta pair, which `hdml cluster --dataset features|bin` reads back
unchanged.

    from hdml_ext.data import open_dataset
    data = open_dataset("market1501", "/data/Market-1501", settings.data)
    embedded = embed_dataset(model, data.query, batch_size=128, num_workers=4, progress=True)
    write_embeddings(embedded, "out/query", fmt="npy")  # features.npy, labels.npy, camids.npy, ids.txt
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data import DataSplit, source_length
from .inference import embed_rows

__all__ = ["FORMATS", "EmbeddedRows", "embed_dataset", "row_ids", "write_embeddings"]

#: Output formats of `write_embeddings`.
FORMATS = ("npy", "bin")


@dataclass(frozen=True)
class EmbeddedRows:
    """Embedded rows: features [N, D] float32 (CPU), ids [N] (each image's path, or the row
    number for in-memory rows), labels [N] int64 and camids [N] int64 (None when unknown)."""

    features: Tensor
    ids: list[str]
    labels: Tensor | None
    camids: Tensor | None


def row_ids(rows: DataSplit) -> list[str]:
    """Each row's id: the image file of a data set read from disk (it has `.paths`), else the
    row number."""
    paths = getattr(rows.rows, "paths", None)
    if paths is not None:
        return [str(path) for path in paths]
    return [str(i) for i in range(source_length(rows.rows))]


def embed_dataset(
    model: nn.Module,
    rows: DataSplit,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "embedding",
) -> EmbeddedRows:
    """The embeddings of `rows` (one split of `hdml_ext.data.open_dataset`) by `model`
    (`embed_rows`: batches of `batch_size` rows on `device`, images read by `num_workers`
    DataLoader workers, a tqdm bar when `progress`), with the rows' ids, labels and cameras.

    The model must take the rows' kind: images for HDML, features for HDMLOnFeatures (whose
    embeddings are the features themselves).
    """
    features = embed_rows(model, rows.rows, batch_size=batch_size, device=device,
                          num_workers=num_workers, progress=progress, desc=desc)  # fmt: skip
    if features.numel() == 0:
        features = features.reshape(0, model.out_dim)
    return EmbeddedRows(features, row_ids(rows), rows.labels, rows.camids)


def write_embeddings(embedded: EmbeddedRows, out_dir: str | os.PathLike, *, fmt: str = "npy") -> list[Path]:
    """Write `embedded` into `out_dir` (created if needed); returns the files written.

    fmt "npy": features.npy ([N, D] float32). fmt "bin": features.bin (raw row-major float32,
    no header: learn-to-cluster's layout, read with the width D) and, when labels are known,
    features.meta (one label a line). Both write labels.npy (int64, when known), camids.npy
    (int64, when known) and ids.txt (one row id a line). `hdml cluster --dataset features
    --root features.npy --labels labels.npy`, or `--dataset bin --root features.bin --dim D
    --labels features.meta`, reads the very same values back.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt should be one of {', '.join(FORMATS)}, got {fmt!r}")
    count = int(embedded.features.shape[0])
    for name, values in (("ids", embedded.ids), ("labels", embedded.labels), ("camids", embedded.camids)):
        if values is not None and len(values) != count:
            raise ValueError(f"{name} should hold one entry per feature row ({count}), got {len(values)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    features = np.ascontiguousarray(embedded.features.detach().cpu().numpy(), dtype=np.float32)
    written = []
    if fmt == "npy":
        written.append(_save(out / "features.npy", features))
    else:
        features.tofile(out / "features.bin")
        written.append(out / "features.bin")
        if embedded.labels is not None:
            labels = embedded.labels.cpu().numpy().astype(np.int64)
            (out / "features.meta").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
            written.append(out / "features.meta")
    for name, values in (("labels", embedded.labels), ("camids", embedded.camids)):
        if values is not None:
            written.append(_save(out / f"{name}.npy", values.cpu().numpy().astype(np.int64)))
    (out / "ids.txt").write_text("".join(f"{row_id}\n" for row_id in embedded.ids), encoding="utf-8")
    written.append(out / "ids.txt")
    return written


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path
