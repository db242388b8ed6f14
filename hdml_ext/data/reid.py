"""Readers for the Market-1501 and DukeMTMC-reID folder layouts.

    root/bounding_box_train/  training images
    root/query/               query images
    root/bounding_box_test/   gallery images

Market-1501 names its files ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera C, sequence S, frame,
box number) and DukeMTMC-reID ``PPPP_cC_fFFFFFFF.jpg``. The pid -1 marks junk boxes and 0000
distractors; camera numbers are 1-based in the names and 0-based in the records.

Every name must carry its camera: the Market-1501 protocol drops same-camera matches, so a
folder whose names lack the camera id (e.g. ``0001_0003.jpg``) is refused with an error that
names the file, its folder and the expected pattern, rather than read with made-up cameras.
Images without cameras can be read as an identity-per-folder tree (`read_image_folder`,
``--dataset image-folder``), or renamed with a camera per image (``0001_c1_0003.jpg``, ...).

    from hdml_ext.data import read_market1501
    splits = read_market1501("/data/Market-1501-v15.09.15")
    splits.train[0].path, splits.train[0].label, splits.num_train_pids
"""

from __future__ import annotations

import os
import re

from .records import ReIDRecord, ReIDSplits

__all__ = ["parse_reid_name", "read_dukemtmc", "read_market1501", "read_reid_folders", "read_reid_split"]

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_PATTERNS = {
    "market": (
        re.compile(r"^(-1|\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE),
        "PPPP_cCsS_FFFFFF_NN.jpg (Market-1501)",
    ),
    "duke": (
        re.compile(r"^(-1|\d+)_c(\d+)_f(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE),
        "PPPP_cC_fFFFFFFF.jpg (DukeMTMC-reID)",
    ),
}


#: A name that starts like a Re-ID name (a pid) but has no camera field.
_PID_WITHOUT_CAMERA = re.compile(r"^(-1|\d+)_(?!c\d)", re.IGNORECASE)


def _expected(style: str) -> str:
    if style == "auto":
        return " or ".join(description for _, description in _PATTERNS.values())
    return _PATTERNS[style][1]


def parse_reid_name(name: str, style: str = "auto") -> tuple[int, int]:
    """Parse a Re-ID file name into (pid, camid) with camid 0-based.

    Args:
        name: the file's base name, e.g. "0002_c1s1_000451_03.jpg" or "0001_c2_f0046182.jpg".
        style: "market", "duke" or "auto" (either pattern).

    Raises ValueError naming the file and the expected pattern when the name does not parse.
    """
    if style not in ("auto", *_PATTERNS):
        raise ValueError(f"style should be 'auto', 'market' or 'duke', got {style!r}")
    styles = list(_PATTERNS) if style == "auto" else [style]
    for candidate in styles:
        match = _PATTERNS[candidate][0].match(name)
        if match is not None:
            pid, camera = int(match.group(1)), int(match.group(2))
            if camera < 1:
                raise ValueError(f"file name {name!r} has camera {camera}; cameras are numbered from 1")
            return pid, camera - 1
    message = f"file name {name!r} does not match the expected pattern {_expected(style)}"
    if _PID_WITHOUT_CAMERA.match(name):
        message += (
            "; it starts with a pid but has no camera id (_cC after the pid), which Re-ID evaluation "
            "needs: rename the files with their cameras, or read images without cameras as "
            "--dataset image-folder (one sub-folder per identity)"
        )
    raise ValueError(message)


def _split_folder(root: str, split: str) -> str:
    folder = os.path.join(root, SPLIT_FOLDERS[split])
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"expected the {split} folder {SPLIT_FOLDERS[split]!r} at {folder}, but it does not exist"
        )
    return folder


def read_reid_split(folder: str, *, style: str = "auto", relabel: bool = False) -> list[ReIDRecord]:
    """Read one folder of Re-ID images, sorted by file name.

    Args:
        folder: a folder of images named as in the module docstring (other files, such as
            Thumbs.db, are ignored).
        style: "market", "duke" or "auto".
        relabel: for training: drop junk (pid -1) and distractors (pid 0, which are not one
            identity) and set label = 0..P-1 in increasing pid order. Otherwise label = pid.
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"expected the image folder {folder}, but it does not exist")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    try:
        parsed = [(name, *parse_reid_name(name, style)) for name in names]
    except ValueError as error:
        raise ValueError(f"in {folder}: {error}") from None
    if relabel:
        parsed = [entry for entry in parsed if entry[1] > 0]
        label_of = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in parsed}))}
    else:
        label_of = None
    return [
        ReIDRecord(
            path=os.path.join(folder, name),
            label=pid if label_of is None else label_of[pid],
            camid=camid,
            pid=pid,
        )
        for name, pid, camid in parsed
    ]


def read_reid_folders(root: str | os.PathLike, *, style: str = "auto") -> ReIDSplits:
    """Read the train, query and gallery splits of a Market-1501-style folder.

    Args:
        root: the folder holding bounding_box_train/, query/ and bounding_box_test/.
        style: "market", "duke" or "auto".

    Returns ReIDSplits: train records relabelled to 0..P-1 (junk and distractors dropped),
    query and gallery records as they are (gallery keeps junk and distractors for the metric).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"expected the dataset root {root}, but it does not exist")
    folders = {split: _split_folder(root, split) for split in SPLIT_FOLDERS}
    train = read_reid_split(folders["train"], style=style, relabel=True)
    query = read_reid_split(folders["query"], style=style)
    gallery = read_reid_split(folders["gallery"], style=style)
    num_train_pids = len({record.label for record in train})
    return ReIDSplits(train=train, query=query, gallery=gallery, num_train_pids=num_train_pids)


def read_market1501(root: str | os.PathLike) -> ReIDSplits:
    """Market-1501 (file names ``PPPP_cCsS_FFFFFF_NN.jpg``); see `read_reid_folders`."""
    return read_reid_folders(root, style="market")


def read_dukemtmc(root: str | os.PathLike) -> ReIDSplits:
    """DukeMTMC-reID (file names ``PPPP_cC_fFFFFFFF.jpg``); see `read_reid_folders`."""
    return read_reid_folders(root, style="duke")
