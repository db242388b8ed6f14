"""hdml_ext.data.image_dataset: PIL loading, resizing, flips, normalisation, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from hdml_ext.data import ImageDataset, TensorImageDataset, load_digits_reid, read_image_folder

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _ramp_image(path, fmt: str) -> None:
    """A 16 x 8 (H x W) image whose left half is black and right half white."""
    pixels = np.zeros((16, 8, 3), dtype=np.uint8)
    pixels[:, 4:] = 255
    Image.fromarray(pixels).save(path, format=fmt)


@pytest.fixture
def tree(tmp_path):
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    _ramp_image(tmp_path / "a" / "0.png", "PNG")
    _ramp_image(tmp_path / "b" / "0.jpg", "JPEG")
    Image.new("L", (8, 16), color=128).save(tmp_path / "b" / "1.png")  # grey -> converted to RGB
    return tmp_path


def test_items_are_resized_and_normalised(tree):
    records, _ = read_image_folder(tree)
    dataset = ImageDataset.from_records(records, size=(32, 16))
    assert len(dataset) == 3
    image, label, index = dataset[0]
    assert image.shape == (3, 32, 16) and image.dtype == torch.float32
    assert (label, index) == (0, 0)
    raw = image * STD + MEAN
    assert raw[:, :, :6].max() < 0.05 and raw[:, :, 10:].min() > 0.95  # left black, right white
    grey, label, index = dataset[2]
    assert (label, index) == (1, 2)
    torch.testing.assert_close(grey * STD + MEAN, torch.full((3, 32, 16), 128 / 255), atol=1e-2, rtol=0)


def test_default_size_is_256_by_128(tree):
    records, _ = read_image_folder(tree)
    assert ImageDataset.from_records(records)[0][0].shape == (3, 256, 128)


def test_items_are_never_flipped(tree):
    # The random flip is the trainer's (seeded per batch); the data set returns the image as read.
    records, _ = read_image_folder(tree)
    dataset = ImageDataset.from_records(records[:1], size=(16, 8))
    assert all((dataset[0][0] * STD + MEAN)[:, :, :3].max() < 0.05 for _ in range(5))


def test_works_with_a_dataloader(tree):
    records, _ = read_image_folder(tree)
    loader = torch.utils.data.DataLoader(ImageDataset.from_records(records, size=(8, 4)), batch_size=3)
    images, labels, indices = next(iter(loader))
    assert images.shape == (3, 3, 8, 4)
    assert labels.tolist() == [0, 1, 1] and indices.tolist() == [0, 1, 2]


def test_unreadable_image_names_the_path(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(OSError, match=r"could not read the image .*broken.jpg"):
        ImageDataset([str(bad)], [0])[0]


def test_missing_image_names_the_path(tmp_path):
    with pytest.raises(OSError, match=r"could not read the image .*gone.png"):
        ImageDataset([str(tmp_path / "gone.png")], [0])[0]


def test_rejects_length_mismatch():
    with pytest.raises(ValueError, match="paths and labels should have the same length"):
        ImageDataset(["a.png", "b.png"], [0])


def test_rejects_bad_size():
    with pytest.raises(ValueError, match="size should be a pair of positive ints"):
        ImageDataset(["a.png"], [0], size=(256,))


def test_tensor_dataset_over_digits():
    split = load_digits_reid(height=16, width=8).query
    dataset = TensorImageDataset.from_split(split)
    image, label, index = dataset[4]
    torch.testing.assert_close(image, split.images[4])
    assert label == int(split.labels[4]) and index == 4


def test_tensor_dataset_rejects_label_mismatch():
    with pytest.raises(ValueError, match="labels should be 1-D with one entry per image"):
        TensorImageDataset(torch.zeros(3, 3, 4, 4), torch.zeros(2, dtype=torch.int64))


def test_tensor_dataset_rejects_3d_images():
    with pytest.raises(ValueError, match="images should be a 4-D"):
        TensorImageDataset(torch.zeros(3, 4, 4), torch.zeros(3, dtype=torch.int64))
