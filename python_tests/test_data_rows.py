"""Reading rows by id (hdml_ext.data.rows) and the seeded training streams (hdml_ext.data.streams)."""

from __future__ import annotations

import pytest
import torch

from hdml_ext.data import iter_rows, read_rows, source_length
from hdml_ext.data.streams import stream_generator


class _TupleDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index]), index


def _images(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 4, 2, generator=gen), torch.arange(n) % 3


def test_gather_rows_from_a_dataset_matches_the_tensor():
    images, labels = _images()
    ids = torch.tensor([5, 1, 9])
    assert torch.equal(read_rows(_TupleDataset(images, labels), ids), images[ids])


def test_gather_rows_reads_dict_items():
    images, _ = _images()

    class Dicts(torch.utils.data.Dataset):
        def __len__(self):
            return images.shape[0]

        def __getitem__(self, index):
            return {"image": images[index]}

    assert torch.equal(read_rows(Dicts(), torch.tensor([2, 0])), images[[2, 0]])


def test_source_length_of_a_tensor_and_a_dataset():
    images, labels = _images(7)
    assert source_length(images) == source_length(_TupleDataset(images, labels)) == 7


@pytest.mark.parametrize("num_workers", [0, 1])
def test_iter_rows_yields_each_batch_in_order(num_workers):
    images, labels = _images()
    batches = [torch.tensor([4, 0]), torch.tensor([9]), torch.tensor([1, 2, 3])]
    got = list(iter_rows(_TupleDataset(images, labels), batches, num_workers))
    assert len(got) == 3
    for ids, rows in zip(batches, got):
        assert torch.equal(rows, images[ids])


def test_iter_rows_reads_a_tensor_in_this_process():
    images, _ = _images()
    got = list(iter_rows(images, [torch.tensor([3, 1])], num_workers=2))
    assert torch.equal(got[0], images[[3, 1]])


def test_error_bad_dataset_item():
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return "not a tensor"

    with pytest.raises(TypeError, match=r"source\[0\]"):
        read_rows(Bad(), torch.tensor([0]))


def test_stream_generator_keeps_its_seeds():
    # The streams the sampler (epoch order) and the trainer (per-batch flips) have always drawn.
    assert stream_generator(3, 2).initial_seed() == 3 * 1_000_003 + 2
    assert stream_generator(3, 2, 5).initial_seed() == 3 * 1_000_003 + 2 * 1_000_033 + 5 + 1
    first = torch.rand(4, generator=stream_generator(1, 0, 0))
    assert torch.equal(first, torch.rand(4, generator=stream_generator(1, 0, 0)))
    assert not torch.equal(first, torch.rand(4, generator=stream_generator(1, 0, 1)))
