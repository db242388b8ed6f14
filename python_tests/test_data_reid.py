"""hdml_ext.data.reid: Market-1501 / DukeMTMC-reID folders built in tmp_path."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from hdml_ext.data import parse_reid_name, read_dukemtmc, read_market1501, read_reid_folders


def _write_jpeg(path) -> None:
    Image.new("RGB", (4, 8), color=(10, 20, 30)).save(path, format="JPEG")


def _make_tree(root, names_by_folder: dict[str, list[str]]) -> None:
    for folder, names in names_by_folder.items():
        os.makedirs(root / folder, exist_ok=True)
        for name in names:
            _write_jpeg(root / folder / name)


MARKET = {
    "bounding_box_train": [
        "0007_c2s1_000451_01.jpg",
        "0002_c1s1_000451_03.jpg",
        "0002_c3s1_000551_01.jpg",
        "-1_c1s1_000401_03.jpg",  # junk: skipped in train
        "0000_c4s1_000401_03.jpg",  # distractor: skipped in train
    ],
    "query": ["0003_c1s1_001051_00.jpg", "0005_c6s2_010101_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000301_01.jpg", "-1_c1s1_000401_03.jpg", "0000_c6s1_000001_01.jpg"],
}


def test_market_splits(tmp_path):
    _make_tree(tmp_path, MARKET)
    (tmp_path / "query" / "Thumbs.db").write_bytes(b"not an image")  # ignored
    splits = read_market1501(tmp_path)
    train = splits.train
    assert [(r.pid, r.label, r.camid) for r in train] == [(2, 0, 0), (2, 0, 2), (7, 1, 1)]
    assert splits.num_train_pids == 2
    assert all(os.path.isfile(r.path) for r in train)
    assert os.path.basename(train[0].path) == "0002_c1s1_000451_03.jpg"
    assert [(r.pid, r.label, r.camid) for r in splits.query] == [(3, 3, 0), (5, 5, 5)]
    # The gallery keeps junk (-1) and distractors (0) for the metric; sorted by file name.
    assert [(r.pid, r.camid) for r in splits.gallery] == [(-1, 0), (0, 5), (3, 1)]


def test_duke_splits(tmp_path):
    _make_tree(
        tmp_path,
        {
            "bounding_box_train": ["0005_c2_f0046182.jpg", "0001_c8_f0000001.jpg"],
            "query": ["0010_c1_f0000100.jpg"],
            "bounding_box_test": ["0010_c3_f0000200.jpg"],
        },
    )
    splits = read_dukemtmc(tmp_path)
    assert [(r.pid, r.label, r.camid) for r in splits.train] == [(1, 0, 7), (5, 1, 1)]
    assert splits.query[0].camid == 0
    assert splits.gallery[0].pid == 10


def test_auto_style_reads_both_patterns(tmp_path):
    _make_tree(
        tmp_path,
        {
            "bounding_box_train": ["0005_c2_f0046182.jpg", "0001_c1s1_000451_03.jpg"],
            "query": [],
            "bounding_box_test": [],
        },
    )
    splits = read_reid_folders(tmp_path)
    assert [(r.pid, r.camid) for r in splits.train] == [(1, 0), (5, 1)]
    assert splits.query == [] and splits.gallery == []


def test_parse_reid_name():
    assert parse_reid_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_reid_name("-1_c6s2_000451_03.jpg", "market") == (-1, 5)
    assert parse_reid_name("0001_c8_f0046182.jpg", "duke") == (1, 7)


def test_market_style_rejects_duke_name():
    with pytest.raises(ValueError, match=r"'0001_c8_f0046182.jpg' does not match .*PPPP_cCsS_FFFFFF_NN.jpg"):
        parse_reid_name("0001_c8_f0046182.jpg", "market")


def test_rejects_unparsable_file_name(tmp_path):
    _make_tree(tmp_path, {**MARKET, "query": ["0003_c1s1_001051_00.jpg", "person3.jpg"]})
    with pytest.raises(ValueError, match=r"'person3.jpg' does not match the expected pattern .*PPPP_cCsS"):
        read_market1501(tmp_path)


def test_rejects_camera_zero(tmp_path):
    with pytest.raises(ValueError, match="cameras are numbered from 1"):
        parse_reid_name("0003_c0s1_001051_00.jpg")


def test_rejects_unknown_style():
    with pytest.raises(ValueError, match="style should be"):
        parse_reid_name("0003_c1s1_001051_00.jpg", "cuhk")


def test_rejects_missing_split_folder(tmp_path):
    _make_tree(tmp_path, {"bounding_box_train": MARKET["bounding_box_train"], "query": MARKET["query"]})
    with pytest.raises(FileNotFoundError, match="'bounding_box_test'"):
        read_market1501(tmp_path)


def test_rejects_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset root"):
        read_market1501(tmp_path / "nowhere")
