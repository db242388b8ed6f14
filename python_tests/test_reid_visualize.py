"""Ranked-list pictures: the Market-1501 protocol's skips, the picture's size, and frames green
for true matches and red for false ones where the layout puts them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hdml_ext.data.digits import IMAGENET_MEAN, IMAGENET_STD
from hdml_ext.reid.visualize import (
    EMPTY_CELL,
    GREEN,
    QUERY_FRAME,
    RED,
    display_images,
    layout_for,
    save_ranked_lists,
    shown_gallery,
)

# Gallery of 14: ids 0..13. The query is pid 7, camera 0.
G_PIDS = np.array([7, 7, 3, -1, 7, 5, 3, 7, 2, 2, 4, 6, 8, 9])
G_CAMS = np.array([0, 1, 1, 1, 2, 0, 0, 0, 1, 2, 0, 1, 1, 1])
Q_PID, Q_CAM = 7, 0


def _normalised(colours: np.ndarray, height: int = 16, width: int = 8) -> torch.Tensor:
    """[N, 3, H, W] images of one flat RGB colour each (uint8 [N, 3]), normalised as data sets give them."""
    pixels = torch.tensor(colours, dtype=torch.float32).view(-1, 3, 1, 1).expand(-1, 3, height, width) / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def test_shown_gallery_skips_same_camera_matches_and_junk():
    order = np.arange(14)
    ids, matches = shown_gallery(order, Q_PID, Q_CAM, G_PIDS, G_CAMS, top=10)
    # 0 and 7 (pid 7, camera 0) and 3 (junk) are skipped.
    assert ids.tolist() == [1, 2, 4, 5, 6, 8, 9, 10, 11, 12]
    assert matches.tolist() == [True, False, True, False, False, False, False, False, False, False]


def test_shown_gallery_rejects_ids_outside_the_gallery():
    with pytest.raises(ValueError, match="order should hold gallery ids"):
        shown_gallery([0, 14], Q_PID, Q_CAM, G_PIDS, G_CAMS)


def test_display_images_undo_the_normalisation():
    colours = np.array([[10, 200, 30], [255, 0, 128]])
    pixels = display_images(_normalised(colours))
    assert pixels.shape == (2, 16, 8, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[:, 5, 3], colours)


def test_picture_has_the_layout_size_and_coloured_frames(tmp_path):
    rng = np.random.default_rng(0)
    colours = rng.integers(20, 236, size=(15, 3))
    gallery, query = _normalised(colours[:14]), _normalised(colours[14:])[0]
    by_graph = np.array([4, 0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    by_distance = np.arange(14)[::-1].copy()
    orders = [("graph", by_graph), ("distance", by_distance)]
    path = save_ranked_lists(tmp_path / "pics" / "q.png", query, gallery, orders, Q_PID, Q_CAM, G_PIDS,
                             G_CAMS, top=10, display_height=32)

    image = np.asarray(Image.open(path).convert("RGB"))
    # 16 x 8 images shown 32 x 16, framed by 4: cells 24 wide, 40 high. Width: margins 2 x 6,
    # the query cell 24, the query gap 16, ten cells 240 and nine gaps 36; height: margins
    # 2 x 6, two rows of caption 18 + cell 40, one gap 4.
    assert image.shape == (132, 328, 3)
    layout = layout_for((16, 8), top=10, display_height=32)
    assert layout.size(2) == (328, 132)

    def frame(row: int, column: int) -> tuple[int, ...]:
        left, upper, _, _ = layout.cell_box(row, column)
        return tuple(image[upper + 1, left + 1])

    def inside(row: int, column: int) -> tuple[int, ...]:
        left, upper, right, lower = layout.cell_box(row, column)
        return tuple(image[(upper + lower) // 2, (left + right) // 2])

    assert frame(0, 0) == QUERY_FRAME and frame(1, 0) == QUERY_FRAME
    assert inside(0, 0) == tuple(colours[14])
    # graph row: 4 (pid 7, camera 2: match), 1 (match), 2 (pid 3) ... (0 skipped).
    assert frame(0, 1) == GREEN and inside(0, 1) == tuple(colours[4])
    assert frame(0, 2) == GREEN and inside(0, 2) == tuple(colours[1])
    assert frame(0, 3) == RED and inside(0, 3) == tuple(colours[2])
    # distance row: 13, 12, 11, 10, 9, 8 (no matches), 7 skipped, 6 (pid 3), 5, 4 (match), 3 skipped, 2.
    assert [frame(1, c) for c in range(1, 11)] == [RED] * 8 + [GREEN, RED]
    assert inside(1, 9) == tuple(colours[4])


def test_rows_with_few_counted_entries_end_in_empty_cells(tmp_path):
    gallery = _normalised(np.full((14, 3), 100))
    query = _normalised(np.full((1, 3), 50))[0]
    path = save_ranked_lists(tmp_path / "q.png", query, gallery, [("distance", [0, 1, 2, 3])], Q_PID, Q_CAM,
                             G_PIDS, G_CAMS, top=5, display_height=16)
    image = np.asarray(Image.open(path).convert("RGB"))
    layout = layout_for((16, 8), top=5, display_height=16)
    assert image.shape == (layout.size(1)[1], layout.size(1)[0], 3)
    frames = [tuple(image[layout.cell_box(0, c)[1] + 1, layout.cell_box(0, c)[0] + 1]) for c in range(1, 6)]
    # 0 (same camera) and 3 (junk) skipped: 1 (match), 2 (not), then three empty cells.
    assert frames == [GREEN, RED, EMPTY_CELL, EMPTY_CELL, EMPTY_CELL]


def test_errors_name_the_argument():
    gallery = _normalised(np.full((14, 3), 100))
    query = _normalised(np.full((1, 3), 50))[0]
    with pytest.raises(ValueError, match="orders"):
        save_ranked_lists("unused.png", query, gallery, [], Q_PID, Q_CAM, G_PIDS, G_CAMS)
    with pytest.raises(ValueError, match="g_pids"):
        save_ranked_lists("unused.png", query, gallery, [("d", [0])], Q_PID, Q_CAM, G_PIDS[:5], G_CAMS[:5])
    with pytest.raises(ValueError, match="query_image"):
        save_ranked_lists("unused.png", query[0], gallery, [("d", [0])], Q_PID, Q_CAM, G_PIDS, G_CAMS)
