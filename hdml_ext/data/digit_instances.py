"""scikit-learn's digits as an embedded OPEN-SET Re-ID data set: every digit image is one identity.

Each of the 1,797 8x8 digit images becomes an identity seen in a long-tailed number of views
(min_views..max_views, a clipped discrete Pareto draw) made by a seeded augmentation: rotation,
scale, shear, translation, stroke thickness, pixel noise and random erasing. Each view is taken by
one of 6 cameras, and each camera is a fixed corruption style (paper and ink colour, blur, noise
level; `CAMERA_STYLES`), the same for every image it takes, so the Market-1501 same-camera rule of
`hdml_ext.metrics.rank_metrics` means something. Every identity is seen by 2 to 6 cameras.

Identities split disjointly into train and test (no source image on both sides). The test
identities split Market-style: an identity seen by k cameras gives one query view from each of
min(queries_per_identity, k) of its cameras, and every other view goes to the gallery. When every
camera of an identity would lose its only view (k queries from k cameras, fewer than 2k views),
one camera is left without a query, so every query has a gallery view of its identity taken by
another camera. Nothing is downloaded; the full set generates in a few seconds and is cached.

    from hdml_ext.data import load_digit_instances_reid
    splits = load_digit_instances_reid(seed=0)  # 16 x 16 by default
    splits.query.labels      # identities: source image rows, disjoint from the train identities
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from .._checks import require_fraction, require_int, require_int_in_range
from .digits import IMAGENET_MEAN, IMAGENET_STD
from .records import TensorSplit, TensorSplits

__all__ = ["CAMERA_STYLES", "CameraStyle", "apply_camera_style", "load_digit_instances_reid"]

NUM_SOURCE_IMAGES = 1797
#: The canvas the 8x8 digits are upsampled to before stroke thickness and geometry (pixels).
_CANVAS = 32
#: Pareto shape of the view counts: P(views >= n) = (min_views / n) ** _VIEW_TAIL before clipping.
_VIEW_TAIL = 2.0


@dataclass(frozen=True)
class CameraStyle:
    """A camera's fixed corruption, the same for every image it takes.

    paper, ink: RGB in [0, 1] that the digit's background (0) and stroke (1) are mapped to.
    blur: Gaussian sigma as a fraction of the image height (0 = sharp).
    noise: standard deviation of additive Gaussian pixel noise, in [0, 1] intensity units.
    """

    paper: tuple[float, float, float]
    ink: tuple[float, float, float]
    blur: float
    noise: float


CAMERA_STYLES: tuple[CameraStyle, ...] = (
    CameraStyle(paper=(0.05, 0.05, 0.05), ink=(0.95, 0.95, 0.95), blur=0.0, noise=0.02),
    CameraStyle(paper=(0.15, 0.10, 0.05), ink=(1.00, 0.80, 0.55), blur=0.035, noise=0.03),
    CameraStyle(paper=(0.35, 0.40, 0.50), ink=(0.75, 0.85, 1.00), blur=0.0, noise=0.04),
    CameraStyle(paper=(0.00, 0.00, 0.00), ink=(0.60, 0.60, 0.60), blur=0.015, noise=0.12),
    CameraStyle(paper=(0.10, 0.25, 0.10), ink=(0.85, 1.00, 0.50), blur=0.02, noise=0.05),
    CameraStyle(paper=(0.45, 0.42, 0.40), ink=(1.00, 0.95, 0.90), blur=0.025, noise=0.03),
)


def _gaussian_blur(grey: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, 1, H, W] -> same shape, separable Gaussian of `sigma` pixels, edges replicated."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(grey, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def apply_camera_style(
    grey: torch.Tensor,
    camera: int,
    *,
    gain: torch.Tensor | None = None,
    view_noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Render grey views through camera `camera`'s fixed style.

    Args:
        grey: [N, 1, H, W] float, stroke intensity in [0, 1] (0 = paper).
        camera: index into `CAMERA_STYLES`.
        gain: [N] per-view contrast factors on the ink-paper difference; None means 1.
        view_noise: [N] per-view noise standard deviations added (in quadrature) to the camera's
            own noise level; None means 0.
        generator: draws the Gaussian pixel noise; None renders without noise.

    Returns [N, 3, H, W] float32 in [0, 1]: blur, then paper + grey * (ink - paper) * gain, then
    noise of standard deviation sqrt(camera noise ** 2 + view_noise ** 2), clamped.
    """
    if not 0 <= camera < len(CAMERA_STYLES):
        raise ValueError(f"camera should be in 0..{len(CAMERA_STYLES) - 1}, got {camera}")
    if grey.dim() != 4 or grey.shape[1] != 1:
        raise ValueError(f"grey should have shape [N, 1, H, W], got {tuple(grey.shape)}")
    style = CAMERA_STYLES[camera]
    if style.blur > 0:
        grey = _gaussian_blur(grey, style.blur * grey.shape[2])
    paper = torch.tensor(style.paper, dtype=torch.float32).view(1, 3, 1, 1)
    ink = torch.tensor(style.ink, dtype=torch.float32).view(1, 3, 1, 1)
    contrast = ink - paper if gain is None else (ink - paper) * gain.view(-1, 1, 1, 1)
    rgb = paper + grey * contrast
    if generator is not None:
        std = torch.full((grey.shape[0],), style.noise)
        if view_noise is not None:
            std = torch.sqrt(std**2 + view_noise**2)
        rgb = rgb + std.view(-1, 1, 1, 1) * torch.randn(rgb.shape, generator=generator)
    return rgb.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class _Rendered:
    """The generated views, all identities together, in (identity, view) order.

    images: [V, 3, H, W] uint8. identity, camera: [V] int64. is_train: [V] bool.
    is_query: [V] bool (test identities only).
    """

    images: torch.Tensor
    identity: np.ndarray
    camera: np.ndarray
    is_train: np.ndarray
    is_query: np.ndarray


def _view_index(counts: np.ndarray) -> np.ndarray:
    """[sum(counts)] int: 0..counts[i]-1 for each identity i in turn."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def _view_counts(rng: np.random.Generator, num: int, min_views: int, max_views: int) -> np.ndarray:
    """[num] long-tailed view counts: floor(min_views * U ** (-1 / _VIEW_TAIL)) clipped to max_views."""
    draws = np.floor(min_views * rng.random(num) ** (-1.0 / _VIEW_TAIL))
    return np.minimum(draws, max_views).astype(np.int64)


def _cameras(rng: np.random.Generator, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera of every view ([sum(counts)]) and cameras per identity ([I]).

    Identity i is seen by k_i = min(counts[i], uniform 2..6) distinct cameras in a random order;
    its view j is taken by the (j mod k_i)-th of them, so each of its cameras holds at least
    floor(counts[i] / k_i) >= 1 views.
    """
    num_cameras = len(CAMERA_STYLES)
    order = np.argsort(rng.random((counts.size, num_cameras)), axis=1)
    per_identity = np.minimum(counts, rng.integers(2, num_cameras + 1, size=counts.size))
    identity = np.repeat(np.arange(counts.size), counts)
    return order[identity, _view_index(counts) % per_identity[identity]], per_identity


def _canvases(sources: np.ndarray) -> torch.Tensor:
    """[I, 8, 8] values 0..16 -> [4, I, 1, 32, 32] stroke thickness variants: eroded, as is,
    dilated by 1 and by 2 canvas pixels (min / max pooling of the bicubic upsampling)."""
    grey = torch.from_numpy(sources / 16.0).to(torch.float32).unsqueeze(1)
    grey = F.interpolate(grey, size=(_CANVAS, _CANVAS), mode="bicubic", align_corners=False).clamp(0, 1)
    eroded = -F.max_pool2d(-grey, 3, stride=1, padding=1)
    dilated = F.max_pool2d(grey, 3, stride=1, padding=1)
    dilated2 = F.max_pool2d(grey, 5, stride=1, padding=2)
    return torch.stack([eroded, grey, dilated, dilated2])


def _affine(rng: np.random.Generator, num: int, strength: float) -> torch.Tensor:
    """[num, 2, 3] affine_grid thetas mapping output to source coordinates for random rotations
    (+-8 deg), scales (0.94..1.06), shears (+-0.1) and translations (+-0.05 of the half-size),
    all ranges times `strength` (scale as a log-range)."""
    angle = np.deg2rad(8.0) * strength * rng.uniform(-1, 1, num)
    log_scale = rng.uniform(np.log(0.94), np.log(1.06), num) * strength
    shear = 0.1 * strength * rng.uniform(-1, 1, num)
    shift = 0.05 * strength * rng.uniform(-1, 1, (num, 2))
    cos, sin, scale = np.cos(angle), np.sin(angle), np.exp(log_scale)
    forward = np.empty((num, 2, 2))
    forward[:, 0, 0] = scale * cos
    forward[:, 0, 1] = scale * (cos * shear - sin)
    forward[:, 1, 0] = scale * sin
    forward[:, 1, 1] = scale * (sin * shear + cos)
    inverse = np.linalg.inv(forward)
    theta = np.concatenate([inverse, -inverse @ shift[:, :, None]], axis=2)
    return torch.from_numpy(theta.astype(np.float32))


def _erase_masks(
    rng: np.random.Generator, num: int, height: int, width: int, strength: float
) -> torch.Tensor:
    """[num, 1, H, W] bool rectangles covering 4-15% of the image (aspect 0.5..2), in a share
    0.15 * strength of the views (no rectangle elsewhere)."""
    area = rng.uniform(0.04, 0.15, num) * height * width
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), num))
    box_h = np.clip(np.round(np.sqrt(area * aspect)), 1, height).astype(np.int64)
    box_w = np.clip(np.round(np.sqrt(area / aspect)), 1, width).astype(np.int64)
    top = np.floor(rng.random(num) * (height - box_h + 1)).astype(np.int64)
    left = np.floor(rng.random(num) * (width - box_w + 1)).astype(np.int64)
    active = rng.random(num) < min(1.0, 0.15 * strength)
    rows, cols = np.arange(height), np.arange(width)
    in_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + box_h)[:, None])
    in_cols = (cols[None] >= left[:, None]) & (cols[None] < (left + box_w)[:, None])
    masks = in_rows[:, :, None] & in_cols[:, None, :] & active[:, None, None]
    return torch.from_numpy(masks).unsqueeze(1)


def _query_views(counts: np.ndarray, cams: np.ndarray, queries: int) -> np.ndarray:
    """[sum(counts)] bool: the first q_i views of identity i (from q_i distinct cameras, see `_cameras`) with
    q_i = min(queries, k_i), less one when k_i cameras would each lose their only view."""
    per_identity = np.minimum(queries, cams)
    starved = (per_identity == cams) & (counts < 2 * cams)
    per_identity = per_identity - starved
    return _view_index(counts) < np.repeat(per_identity, counts)


@functools.lru_cache(maxsize=4)
def _generate(
    height: int,
    width: int,
    max_identities: int,
    min_views: int,
    max_views: int,
    queries_per_identity: int,
    train_fraction: float,
    strength: float,
    seed: int,
) -> _Rendered:
    """Render every view of `max_identities` seeded identities (cached: see the module doc)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    chosen = np.sort(rng.permutation(NUM_SOURCE_IMAGES)[:max_identities])
    num_train = min(max(1, round(train_fraction * chosen.size)), chosen.size - 1)
    train_rows = np.zeros(chosen.size, dtype=bool)
    train_rows[rng.permutation(chosen.size)[:num_train]] = True

    counts = _view_counts(rng, chosen.size, min_views, max_views)
    camera, cams = _cameras(rng, counts)
    row = np.repeat(np.arange(chosen.size), counts)
    num_views = row.size

    canvases = _canvases(load_digits().images[chosen])
    thickness = rng.choice(4, size=num_views, p=(0.2, 0.35, 0.3, 0.15))
    theta = _affine(rng, num_views, strength)
    erase = _erase_masks(rng, num_views, height, width, strength)
    view_noise = torch.from_numpy(rng.uniform(0.0, 0.02 * strength, num_views).astype(np.float32))
    gain = torch.from_numpy(rng.uniform(0.8, 1.1, num_views).astype(np.float32))

    source = canvases[torch.from_numpy(thickness), torch.from_numpy(row)]
    grid = F.affine_grid(theta, [num_views, 1, height, width], align_corners=False)
    grey = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    fill = torch.rand(grey.shape, generator=generator)
    grey = torch.where(erase, fill, grey)
    images = torch.empty((num_views, 3, height, width), dtype=torch.uint8)
    for cam in range(len(CAMERA_STYLES)):
        members = torch.from_numpy(np.flatnonzero(camera == cam))
        rgb = apply_camera_style(
            grey[members], cam, gain=gain[members], view_noise=view_noise[members], generator=generator
        )
        images[members] = torch.round(rgb * 255.0).to(torch.uint8)

    return _Rendered(
        images=images,
        identity=chosen[row].astype(np.int64),
        camera=camera.astype(np.int64),
        is_train=train_rows[row],
        is_query=~train_rows[row] & _query_views(counts, cams, queries_per_identity),
    )


def load_digit_instances_reid(
    *,
    height: int = 16,
    width: int = 16,
    max_identities: int | None = None,
    train_fraction: float = 0.5,
    min_views: int = 4,
    max_views: int = 30,
    queries_per_identity: int = 2,
    augment_strength: float = 1.0,
    seed: int = 0,
    normalize: bool = True,
) -> TensorSplits:
    """The open-set digit-instances Re-ID data set (see the module doc) as train / query / gallery.

    Args:
        height, width: image size in pixels; 3 channels.
        max_identities: use this many source images (a seeded subset, 2..1797); None = all 1,797.
        train_fraction: share of the identities whose views all go to train.
        min_views, max_views: bounds of the long-tailed views per identity (2 <= min <= max).
        queries_per_identity: at most this many query views per test identity, one per camera.
        augment_strength: scales the geometric ranges, the erasing rate and the view noise
            (1 = the calibrated default; see docs/digit_instances.md).
        seed: seeds everything; the same arguments give bit-identical tensors.
        normalize: apply the ImageNet mean/std (as `load_digits_reid` does).

    Returns TensorSplits. images [N, 3, H, W] float32 (in [0, 1] before normalisation; 8-bit
    levels). Train labels are 0..P-1 over the train identities in increasing source row; query
    and gallery labels are the identities themselves (source rows 0..1796). indices [N] are the
    source rows too; camids [N] 0..5. Each split is ordered by identity, then view. The rendered
    views are cached in memory (the last 4 argument sets); each call returns new tensors.
    """
    height = require_int("height", height, minimum=1)
    width = require_int("width", width, minimum=1)
    if max_identities is None:
        max_identities = NUM_SOURCE_IMAGES
    max_identities = require_int_in_range("max_identities", max_identities, 2, NUM_SOURCE_IMAGES)
    train_fraction = require_fraction("train_fraction", train_fraction)
    min_views = require_int_in_range("min_views", min_views, 2, 10_000)
    max_views = require_int_in_range("max_views", max_views, min_views, 10_000)
    queries_per_identity = require_int_in_range(
        "queries_per_identity", queries_per_identity, 1, len(CAMERA_STYLES)
    )
    if (
        isinstance(augment_strength, bool)
        or not isinstance(augment_strength, (int, float))
        or not (0.0 <= augment_strength <= 3.0)
    ):
        raise ValueError(f"augment_strength should be a number in [0, 3], got {augment_strength!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed should be a non-negative int, got {seed!r}")
    rendered = _generate(
        height,
        width,
        max_identities,
        min_views,
        max_views,
        queries_per_identity,
        train_fraction,
        float(augment_strength),
        seed,
    )

    def split(mask: np.ndarray, relabel: bool) -> TensorSplit:
        rows = np.flatnonzero(mask)
        images = rendered.images[torch.from_numpy(rows)].to(torch.float32) / 255.0
        if normalize:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            images = (images - mean) / std
        identity = rendered.identity[rows]
        labels = np.searchsorted(np.unique(identity), identity) if relabel else identity
        return TensorSplit(
            images=images,
            labels=torch.from_numpy(labels.astype(np.int64)),
            camids=torch.from_numpy(rendered.camera[rows]),
            indices=torch.from_numpy(identity),
        )

    train = split(rendered.is_train, relabel=True)
    return TensorSplits(
        train=train,
        query=split(rendered.is_query, relabel=False),
        gallery=split(~rendered.is_train & ~rendered.is_query, relabel=False),
        num_train_classes=int(train.labels.max()) + 1,
    )
