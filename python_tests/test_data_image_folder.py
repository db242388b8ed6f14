"""hdml_ext.data.image_folder: identity-per-folder trees built in tmp_path."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from hdml_ext.data import read_image_folder


def _write_png(path) -> None:
    Image.new("RGB", (3, 3)).save(path, format="PNG")


def test_labels_follow_sorted_folders(tmp_path):
    tree = {"bob": ["b.png", "a.PNG"], "alice": ["x.png"], "empty": [], "carol": ["c.png"]}
    for identity, names in tree.items():
        os.makedirs(tmp_path / identity)
        for name in names:
            _write_png(tmp_path / identity / name)
    (tmp_path / "bob" / "notes.txt").write_text("ignored")
    (tmp_path / "stray.png").write_bytes(b"")  # files at the root are not identities
    records, identities = read_image_folder(tmp_path, camid=3)
    assert identities == ["alice", "bob", "carol"]  # "empty" holds no image: no label
    assert [(os.path.basename(r.path), r.label, r.identity) for r in records] == [
        ("x.png", 0, "alice"),
        ("a.PNG", 1, "bob"),
        ("b.png", 1, "bob"),
        ("c.png", 2, "carol"),
    ]
    assert all(r.camid == 3 for r in records)


def test_camid_defaults_to_zero(tmp_path):
    os.makedirs(tmp_path / "a")
    _write_png(tmp_path / "a" / "1.png")
    records, _ = read_image_folder(tmp_path)
    assert records[0].camid == 0


def test_rejects_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="image tree root"):
        read_image_folder(tmp_path / "missing")


def test_rejects_tree_without_images(tmp_path):
    os.makedirs(tmp_path / "a")
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no identity folder"):
        read_image_folder(tmp_path)


def test_rejects_non_int_camid(tmp_path):
    with pytest.raises(TypeError, match="camid should be an int"):
        read_image_folder(tmp_path, camid=1.5)
