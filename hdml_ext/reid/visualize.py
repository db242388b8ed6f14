"""Ranked-list pictures: a query and its top gallery images under one or more rankings, true
matches framed green and false ones red (torchreid's `visrank`, fast-reid's
`visualize_result.py`).

    image = draw_ranked_lists(query_image, gallery_images, [("graph", order), ("distance", order2)],
                              q_pid, q_camid, g_pids, g_camids)
    image.save("query_0.png")

Each ranking is one row: its caption, then the query, then its first `top` gallery images,
counted under the Market-1501 protocol as evaluation counts them (gallery entries with the
query's identity and camera, and junk identity -1, are skipped). Rows are stacked, so the
same query's rankings can be compared column by column. The geometry is fixed by `Layout`:
`Layout.cell_box` gives where each framed image lies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .._checks import require_int
from ..data.digits import IMAGENET_MEAN, IMAGENET_STD
from ..data.rows import RowSource, read_rows, source_length

#: Frame colours (RGB) of true matches, false matches and the query.
GREEN = (0, 170, 0)
RED = (215, 0, 0)
QUERY_FRAME = (90, 90, 90)
BACKGROUND = (255, 255, 255)
EMPTY_CELL = (235, 235, 235)
CAPTION_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class Layout:
    """The picture's geometry, in pixels.

    image_height x image_width: each image as displayed (resized from the data's size);
    border: the frame around each image; gap: between gallery cells; query_gap: between the
    query and its first gallery cell; caption: the text band above each row; margin: around
    everything; top: gallery images per row.
    """

    image_height: int
    image_width: int
    top: int = 10
    border: int = 4
    gap: int = 4
    query_gap: int = 16
    caption: int = 18
    margin: int = 6

    @property
    def cell_width(self) -> int:
        return self.image_width + 2 * self.border

    @property
    def cell_height(self) -> int:
        return self.image_height + 2 * self.border

    def size(self, rows: int) -> tuple[int, int]:
        """(width, height) of a picture of `rows` rankings."""
        width = 2 * self.margin + self.cell_width + self.query_gap + self.top * self.cell_width
        width += (self.top - 1) * self.gap
        return width, 2 * self.margin + rows * (self.caption + self.cell_height) + (rows - 1) * self.gap

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), right and lower exclusive, of the framed cell of ranking
        `row` at `column` (0: the query; c >= 1: the c-th gallery image)."""
        upper = self.margin + row * (self.caption + self.cell_height + self.gap) + self.caption
        left = self.margin
        if column > 0:
            left += self.cell_width + self.query_gap + (column - 1) * (self.cell_width + self.gap)
        return left, upper, left + self.cell_width, upper + self.cell_height


def layout_for(image_size: tuple[int, int], *, top: int = 10, display_height: int = 128) -> Layout:
    """The layout of images of (height, width) pixels shown `display_height` pixels high (the
    width scaled alike)."""
    height, width = image_size
    require_int("display_height", display_height, minimum=8)
    require_int("top", top, minimum=1)
    shown_width = max(1, round(width * display_height / height))
    return Layout(image_height=display_height, image_width=shown_width, top=top)


def shown_gallery(
    order: Tensor | np.ndarray | Sequence[int],
    q_pid: int,
    q_camid: int,
    g_pids: Tensor | np.ndarray,
    g_camids: Tensor | np.ndarray,
    top: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The first `top` gallery ids of `order` (a ranking of gallery ids, best first) that the
    Market-1501 protocol counts, and whether each is a true match.

    Skipped: entries with the query's pid and camid (the same camera's shots of that person)
    and junk entries (pid -1). Returns (ids int64 [<= top], matches bool [<= top]).
    """
    order = np.asarray(torch.as_tensor(order).cpu(), dtype=np.int64).reshape(-1)
    g_pids = np.asarray(torch.as_tensor(g_pids).cpu()).reshape(-1)
    g_camids = np.asarray(torch.as_tensor(g_camids).cpu()).reshape(-1)
    if g_pids.shape != g_camids.shape:
        raise ValueError(f"g_pids and g_camids should have the same length, got {g_pids.shape[0]} and "
                         f"{g_camids.shape[0]}")
    if order.size and (order.min() < 0 or order.max() >= g_pids.shape[0]):
        raise ValueError(f"order should hold gallery ids in [0, {g_pids.shape[0]}), got ids from "
                         f"{order.min()} to {order.max()}")
    pids, camids = g_pids[order], g_camids[order]
    kept = (pids != -1) & ~((pids == q_pid) & (camids == q_camid))
    ids = order[kept][:top]
    return ids, g_pids[ids] == q_pid


def display_images(images: Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised images [N, 3, H, W] back to displayable uint8 RGB [N, H, W, 3]: x * std + mean,
    clipped to [0, 1]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images should be [N, 3, H, W], got shape {tuple(images.shape)}")
    scale = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    shift = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = (images.detach().float().cpu() * scale + shift).clamp(0, 1)
    return (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _resized(pixels: np.ndarray, layout: Layout) -> Image.Image:
    image = Image.fromarray(pixels)
    size = (layout.image_width, layout.image_height)
    upscale = size[0] >= image.width and size[1] >= image.height
    return image.resize(size, Image.Resampling.NEAREST if upscale else Image.Resampling.BILINEAR)


def _paste_framed(canvas: Image.Image, box: tuple[int, int, int, int], image: Image.Image | None,
                  frame: tuple[int, int, int], layout: Layout) -> None:
    draw = ImageDraw.Draw(canvas)
    if image is None:
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=EMPTY_CELL)
        return
    draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=frame)
    canvas.paste(image, (box[0] + layout.border, box[1] + layout.border))


def draw_ranked_lists(
    query_image: Tensor,
    gallery_images: RowSource,
    orders: Sequence[tuple[str, Tensor | np.ndarray | Sequence[int]]],
    q_pid: int,
    q_camid: int,
    g_pids: Tensor | np.ndarray,
    g_camids: Tensor | np.ndarray,
    *,
    top: int = 10,
    display_height: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Image.Image:
    """One query's ranked lists as an RGB picture, one row per ranking.

    query_image: [3, H, W], normalised with `mean` / `std` (as the data sets give images).
    gallery_images: the gallery's images, an [G, 3, H, W] tensor or a data set of them (only the
    shown ones are read). orders: (name, ranking of gallery ids best first) per row, e.g.
    [("graph", order), ("distance", order)]. q_pid, q_camid: the query's identity and camera;
    g_pids, g_camids: [G]. Each row shows the query, then the first `top` gallery images that
    the Market-1501 protocol counts (`shown_gallery`), framed GREEN (same identity) or RED; a
    row with fewer counted entries ends in empty cells. The picture's size is
    `layout_for((H, W), top=top, display_height=display_height).size(len(orders))`.
    """
    if not orders:
        raise ValueError("orders should hold at least one (name, order) pair, got none")
    if query_image.dim() != 3:
        raise ValueError(f"query_image should be [3, H, W], got shape {tuple(query_image.shape)}")
    num_gallery = source_length(gallery_images)
    if len(g_pids) != num_gallery:
        raise ValueError(f"g_pids should have one entry per gallery image ({num_gallery}), got {len(g_pids)}")
    layout = layout_for(tuple(query_image.shape[1:]), top=top, display_height=display_height)
    shown = [shown_gallery(order, q_pid, q_camid, g_pids, g_camids, top) for _, order in orders]
    ids = np.unique(np.concatenate([row_ids for row_ids, _ in shown]))
    pixels = display_images(read_rows(gallery_images, torch.from_numpy(ids)), mean, std) if ids.size else []
    tile_of = {int(i): _resized(p, layout) for i, p in zip(ids, pixels)}
    query_tile = _resized(display_images(query_image.unsqueeze(0), mean, std)[0], layout)

    canvas = Image.new("RGB", layout.size(len(orders)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for row, ((name, _), (row_ids, matches)) in enumerate(zip(orders, shown)):
        left, upper, _, _ = layout.cell_box(row, 0)
        caption = (f"{name} ranking: {int(matches.sum())} of the top {top} show query id {q_pid} "
                   f"(camera {q_camid})")
        draw.text((left, upper - layout.caption + 2), caption, fill=CAPTION_COLOUR, font=font)
        _paste_framed(canvas, layout.cell_box(row, 0), query_tile, QUERY_FRAME, layout)
        for column in range(1, top + 1):
            if column <= len(row_ids):
                tile, frame = tile_of[int(row_ids[column - 1])], GREEN if matches[column - 1] else RED
            else:
                tile, frame = None, EMPTY_CELL
            _paste_framed(canvas, layout.cell_box(row, column), tile, frame, layout)
    return canvas


def save_ranked_lists(path: str | os.PathLike, *args: object, **kwargs: object) -> Path:
    """`draw_ranked_lists(*args, **kwargs)` saved as the PNG file `path` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_ranked_lists(*args, **kwargs).save(path, format="PNG")
    return path
