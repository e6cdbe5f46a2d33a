"""Magnification-aware tiling: every tile covers the same tissue area, whatever the scanner.

A tile is ``tile_px`` pixels at ``target_mpp``; on a slide of ``mpp`` that is
``tile_px * target_mpp / mpp`` level-0 pixels. It is read from the coarsest pyramid level that
still has at least that many pixels, and resized once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from histoseek.errors import MissingMppError, UnsupportedImageError
from histoseek.slides.reader import Slide
from histoseek.slides.tissue import box_fractions, tissue_mask

log = logging.getLogger(__name__)

THUMBNAIL_MAX_PX = 2048
MASK_PX_PER_TILE = 32  # tissue-mask resolution: enough to measure each tile's tissue fraction
# A plain image with no mpp is taken as one tile if it is at most this many tiles across.
MAX_UNSCALED_TILES_ACROSS = 4
# Smaller images hold too little tissue to search by (32 px at 0.5 mpp is about two nuclei);
# they are refused rather than blown up into a tile of interpolation.
MIN_IMAGE_SIDE_PX = 32
# A tile read from fewer level-0 pixels than tile_px / this is mostly interpolation: the
# slide's scale is wrong (or the scan far too coarse for the library's target mpp).
MAX_UPSAMPLING = 16


@dataclass(frozen=True)
class TilingConfig:
    """The user's tiling choices; stored with the library so every source is cut alike."""

    target_mpp: float = 0.5
    tile_px: int = 224
    min_tissue: float = 0.5
    overlap: float = 0.0


@dataclass(frozen=True)
class TileGrid:
    """Tiles of one slide: level-0 boxes ``[n, 4]`` (x, y, w, h) plus how to read them.

    ``mpp`` is the scale of the tile *pixels* handed to encoders (``None`` when the source has
    no physical scale and was taken whole).
    """

    boxes_l0: np.ndarray
    tissue_fraction: np.ndarray
    tile_px: int
    mpp: float | None
    level: int
    read_px: tuple[int, int]
    whole_image: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.boxes_l0)


def best_level(slide: Slide, downsample_wanted: float) -> int:
    """Coarsest level whose downsample does not exceed the one wanted (no upsampling)."""
    level = 0
    for i, ds in enumerate(slide.level_downsamples):
        if ds <= downsample_wanted * 1.01:
            level = i
    return level


def tile_slide(slide: Slide, config: TilingConfig = TilingConfig()) -> TileGrid:
    """Lay a grid over the tissue of ``slide`` at ``config.target_mpp``.

    A plain image without mpp is taken whole as a single tile (a pre-cut tile), or, if larger
    than a few tiles across, refused with ``MissingMppError``; a pyramid without mpp is always
    refused. Tissue detection runs on a thumbnail; tiles under ``min_tissue`` are dropped.
    """
    width, height = slide.dimensions
    check_min_side(slide)
    if slide.mpp is None:
        if needs_mpp(slide, width, height, config.tile_px):
            slide.require_mpp()
        return _whole_image_grid(slide, config, "no mpp in file: taken whole as one tile")
    size_l0 = config.tile_px * config.target_mpp / slide.mpp
    if size_l0 * MAX_UPSAMPLING < config.tile_px:
        raise UnsupportedImageError(
            f"{slide.path}: at {slide.mpp:g} mpp a {config.tile_px} px tile at "
            f"{config.target_mpp:g} mpp covers only {size_l0:.2g} px of the image (magnified "
            f"{config.tile_px / size_l0:.0f}x); the scale is wrong or the scan too coarse: "
            "give the right one with --mpp")
    if size_l0 > min(width, height):
        return _whole_image_grid(
            slide, config, f"smaller than one {config.tile_px}px tile at {config.target_mpp} mpp"
        )
    stride_l0 = size_l0 * (1.0 - config.overlap)
    cols = int((width - size_l0) // stride_l0) + 1
    rows = int((height - size_l0) // stride_l0) + 1
    xs = np.round(np.arange(cols) * stride_l0).astype(np.int64)
    ys = np.round(np.arange(rows) * stride_l0).astype(np.int64)
    grid_x, grid_y = np.meshgrid(xs, ys)
    side = round(size_l0)
    boxes = np.stack(
        [grid_x.ravel(), grid_y.ravel(), np.full(grid_x.size, side), np.full(grid_x.size, side)],
        axis=1,
    )
    thumb_px = int(np.clip(max(width, height) / size_l0 * MASK_PX_PER_TILE, 256, THUMBNAIL_MAX_PX))
    thumb = slide.thumbnail(thumb_px)
    mask = tissue_mask(thumb)
    fractions = box_fractions(mask, boxes, thumb.shape[1] / width)
    keep = fractions >= config.min_tissue
    level = best_level(slide, size_l0 / config.tile_px)
    read_side = max(1, math.ceil(size_l0 / slide.level_downsamples[level]))
    return TileGrid(
        boxes_l0=boxes[keep],
        tissue_fraction=fractions[keep],
        tile_px=config.tile_px,
        mpp=config.target_mpp,
        level=level,
        read_px=(read_side, read_side),
    )


def check_min_side(slide: Slide) -> None:
    width, height = slide.dimensions
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise UnsupportedImageError(
            f"{slide.path}: image is {width}x{height} px; histoseek needs at least "
            f"{MIN_IMAGE_SIDE_PX} px on each side to make a tile")


def needs_mpp(slide: Slide, width_l0: int, height_l0: int, tile_px: int) -> bool:
    """True where a box can only be tiled with a physical scale (the rule of ``tile_slide``)."""
    return slide.mpp is None and (
        slide.is_pyramid or max(width_l0, height_l0) > MAX_UNSCALED_TILES_ACROSS * tile_px)


def _whole_image_grid(slide: Slide, config: TilingConfig, note: str) -> TileGrid:
    width, height = slide.dimensions
    mpp = None if slide.mpp is None else slide.mpp * max(width, height) / config.tile_px
    return TileGrid(
        boxes_l0=np.array([[0, 0, width, height]], np.int64),
        tissue_fraction=np.ones(1, np.float32),
        tile_px=config.tile_px,
        mpp=mpp,
        level=0,
        read_px=(width, height),
        whole_image=True,
        notes=(note,),
    )


def read_tile(slide: Slide, grid: TileGrid, index: int) -> np.ndarray:
    """Read tile ``index`` of ``grid`` as uint8 RGB ``[tile_px, tile_px, 3]``."""
    x, y, _, _ = (int(v) for v in grid.boxes_l0[index])
    pixels = slide.read_region(x, y, grid.level, grid.read_px)
    return resize_tile(pixels, grid.tile_px)


def resize_tile(pixels: np.ndarray, tile_px: int) -> np.ndarray:
    """Resize once to a square ``tile_px`` (area-averaging when shrinking)."""
    if pixels.shape[0] == tile_px and pixels.shape[1] == tile_px:
        return pixels
    image = Image.fromarray(pixels)
    shrinking = image.width > tile_px or image.height > tile_px
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(image.resize((tile_px, tile_px), method))


def read_region_tile(
    slide: Slide, x_l0: int, y_l0: int, w_l0: int, h_l0: int, tile_px: int
) -> np.ndarray:
    """Read an arbitrary level-0 box as one ``tile_px`` tile (for region queries)."""
    level = best_level(slide, max(w_l0, h_l0) / tile_px)
    ds = slide.level_downsamples[level]
    size = (max(1, math.ceil(w_l0 / ds)), max(1, math.ceil(h_l0 / ds)))
    return resize_tile(slide.read_region(x_l0, y_l0, level, size), tile_px)


def iter_tile_batches(
    slide: Slide, grid: TileGrid, batch_size: int = 64, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(indices, tiles)`` batches; memory is one batch, whatever the slide's size."""
    for begin in range(start, len(grid), batch_size):
        idx = np.arange(begin, min(begin + batch_size, len(grid)))
        yield idx, np.stack([read_tile(slide, grid, int(i)) for i in idx])


__all__ = [
    "MissingMppError",
    "TileGrid",
    "TilingConfig",
    "best_level",
    "iter_tile_batches",
    "read_region_tile",
    "read_tile",
    "resize_tile",
    "tile_slide",
]
