"""torch Datasets yielding (image [3, H, W], label, index) for training and feature extraction.

    from hdml_ext.data import ImageDataset, read_market1501
    splits = read_market1501(root)
    dataset = ImageDataset.from_records(splits.train)
    image, label, index = dataset[0]     # [3, 256, 128] float32, int, int
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms

from .digits import IMAGENET_MEAN, IMAGENET_STD
from .records import TensorSplit

__all__ = ["ImageDataset", "ImageReadError", "TensorImageDataset"]


class ImageReadError(OSError):
    """An image file that is missing, truncated or not an image; the message names the path."""


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        raise ValueError(f"size should be a pair of positive ints (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class ImageDataset(Dataset):
    """Images on disk, loaded with PIL as RGB, resized to size = (H, W), ImageNet-normalised.

    Args:
        paths: [N] image files.
        labels: [N] integer labels.
        size: (height, width) after resizing; (256, 128) as in the paper.

    Training augmentation (the random horizontal flip) is the trainer's, seeded per batch.
    __getitem__(i) returns (image [3, H, W] float32, labels[i], i). An unreadable or missing
    file raises ImageReadError (an OSError) naming the path.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int],
        *,
        size: tuple[int, int] = (256, 128),
    ) -> None:
        if len(paths) != len(labels):
            raise ValueError(
                f"paths and labels should have the same length, got {len(paths)} and {len(labels)}"
            )
        self.paths = [str(path) for path in paths]
        self.labels = [int(label) for label in labels]
        self.size = _check_size(size)
        self.transform = transforms.Compose(
            [
                transforms.Resize(self.size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    @classmethod
    def from_records(cls, records: Sequence, **kwargs) -> ImageDataset:
        """Build from reader records (anything with .path and .label, e.g. ReIDRecord, ImageRecord)."""
        return cls([record.path for record in records], [record.label for record in records], **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        """The image at `index` as an RGB PIL image, before any transform."""
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise ImageReadError(f"could not read the image {path}: {error}") from error

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.transform(self.load(index)), self.labels[index], index


class TensorImageDataset(Dataset):
    """In-memory images (e.g. a `load_digits_reid` split) with the same item layout.

    Args:
        images: [N, 3, H, W] float. labels: [N] integer.

    __getitem__(i) returns (image [3, H, W], int label, i).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = f"{images.dim()}-D" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images should be a 4-D [N, C, H, W] tensor, got {got}")
        labels = torch.as_tensor(labels)
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels should be 1-D with one entry per image ({images.shape[0]}), "
                f"got shape {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels

    @classmethod
    def from_split(cls, split: TensorSplit, **kwargs) -> TensorImageDataset:
        return cls(split.images, split.labels, **kwargs)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.images[index], int(self.labels[index]), index
