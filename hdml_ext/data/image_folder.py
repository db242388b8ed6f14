"""Reader for an identity-per-folder image tree: root/<identity>/<image files>.

    from hdml_ext.data import read_image_folder
    records, identities = read_image_folder("/data/faces")
    records[0].path, records[0].label, identities[records[0].label]
"""

from __future__ import annotations

import os

from .._checks import require_int
from .records import ImageRecord

__all__ = ["IMAGE_EXTENSIONS", "read_image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_image_folder(
    root: str | os.PathLike,
    *,
    camid: int = 0,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
) -> tuple[list[ImageRecord], list[str]]:
    """List the images of an identity-per-folder tree.

    Args:
        root: folder whose sub-folders are identities; each holds that identity's images
            (files directly under root and files of other extensions are ignored; sub-folders
            of an identity folder are not searched).
        camid: the camera id given to every image.
        extensions: file name endings counted as images (case-insensitive).

    Returns (records, identities): records sorted by identity then file name, with label =
    index into identities, the sorted names of the folders holding at least one image.
    Raises FileNotFoundError when root is missing, ValueError when no folder holds an image.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"expected the image tree root {root}, but it does not exist")
    camid = require_int("camid", camid)
    lowered = tuple(extension.lower() for extension in extensions)
    records: list[ImageRecord] = []
    identities: list[str] = []
    for identity in sorted(os.listdir(root)):
        folder = os.path.join(root, identity)
        if not os.path.isdir(folder):
            continue
        names = sorted(
            name
            for name in os.listdir(folder)
            if name.lower().endswith(lowered) and os.path.isfile(os.path.join(folder, name))
        )
        if not names:
            continue
        label = len(identities)
        identities.append(identity)
        records.extend(
            ImageRecord(path=os.path.join(folder, name), label=label, camid=camid, identity=identity)
            for name in names
        )
    if not identities:
        raise ValueError(
            f"no identity folder under {root} holds an image (expected root/<identity>/<image> "
            f"with an ending in {lowered})"
        )
    return records, identities
