"""Rows: the one way to read training or inference rows (images or features) by id, from an
[N, ...] tensor or a map-style data set, in this process or through DataLoader workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

#: Where rows (images or features) come from: an [N, ...] tensor, or a map-style data set whose
#: items are a tensor or a tuple/list/dict holding one (first element, or key "image").
RowSource = Union[Tensor, Dataset]


def item_tensor(item: object, index: int) -> Tensor:
    """The row tensor of data set item `item` (read at `index`, named in the error)."""
    if isinstance(item, Tensor):
        return item
    if isinstance(item, dict) and isinstance(item.get("image"), Tensor):
        return item["image"]
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise TypeError(
        f"source[{index}] should be a tensor, a tuple/list whose first element is one, or a "
        f"dict with an 'image' tensor; got {type(item).__name__}"
    )


def source_length(source: RowSource) -> int:
    """Number of rows of a tensor or map-style data set."""
    if isinstance(source, Tensor):
        return int(source.shape[0])
    return len(source)  # type: ignore[arg-type]


def read_rows(source: RowSource, ids: Tensor) -> Tensor:
    """source rows `ids` stacked: [len(ids), ...]. A tensor is indexed directly (on its device)."""
    if isinstance(source, Tensor):
        return source[ids.to(source.device)]
    return torch.stack([item_tensor(source[int(i)], int(i)) for i in ids.tolist()])


class RowDataset(Dataset):
    """A data set whose items are reduced to their row tensor (what DataLoader workers return)."""

    def __init__(self, source: Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Tensor:
        return item_tensor(self.source[index], index)


def _stack(rows: list[Tensor]) -> Tensor:
    return torch.stack(rows)


def iter_rows(source: RowSource, id_batches: Sequence[Tensor], num_workers: int = 0) -> Iterator[Tensor]:
    """The rows of each int64 id batch of `id_batches`, in order: `read_rows(source, ids)` for
    each. A data set is read by `num_workers` DataLoader workers (0, or a tensor source: in this
    process)."""
    if num_workers == 0 or isinstance(source, Tensor):
        for ids in id_batches:
            yield read_rows(source, ids)
        return
    yield from DataLoader(
        RowDataset(source),
        batch_sampler=[ids.tolist() for ids in id_batches],
        num_workers=num_workers,
        collate_fn=_stack,
    )
