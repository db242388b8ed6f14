"""Inference: the embeddings of a model's rows (images or features), batch by batch, for kNN
tables, Re-ID ranking and clustering."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.rows import RowSource, iter_rows, source_length


@torch.no_grad()
def embed_rows(
    model: nn.Module,
    source: RowSource,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "embed",
    rows: Tensor | None = None,
) -> Tensor:
    """Embeddings [R, out_dim] float32 on the CPU of the rows `rows` (int64 [R]; None: all N
    rows) of `source`: `model.embed` of each batch of `batch_size` rows on `device`, in eval mode.

    A data set is read by `num_workers` DataLoader workers (0: in this process). For
    HDMLOnFeatures the embeddings are the features themselves (checked, as float32).
    """
    ids = torch.arange(source_length(source)) if rows is None else rows.reshape(-1).cpu()
    n = int(ids.numel())
    was_training = model.training
    model.eval()
    device = torch.device(device)
    batches = iter_rows(source, list(ids.split(batch_size)), num_workers)
    parts = []
    try:
        for batch in tqdm(batches, total=-(-n // batch_size), desc=desc, disable=not progress, leave=False):
            parts.append(model.embed(batch.to(device)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0)
