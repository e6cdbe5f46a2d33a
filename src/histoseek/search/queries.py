"""Turning a query (image, region, slide) into pixels, and tile hits into slide hits."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from histoseek.errors import InputError
from histoseek.search.hits import Hit
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import (
    MIN_IMAGE_SIDE_PX,
    TilingConfig,
    iter_tile_batches,
    needs_mpp,
    read_region_tile,
    resize_tile,
    tile_slide,
)

ImageQuery = str | Path | np.ndarray | Image.Image


def query_tile(image: ImageQuery, tile_px: int) -> np.ndarray:
    """A query image as one uint8 ``[1, tile_px, tile_px, 3]`` tile (taken whole, resized)."""
    if isinstance(image, str | Path):
        with open_slide(image, backend="pillow") as slide:
            w, h = slide.dimensions
            pixels = slide.read_region(0, 0, 0, (w, h))
    elif isinstance(image, Image.Image):
        pixels = np.asarray(image.convert("RGB"))
    else:
        pixels = np.asarray(image)
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or pixels.dtype != np.uint8:
            raise InputError(
                f"query image must be uint8 [h, w, 3], got {pixels.dtype} {pixels.shape}")
        pixels = pixels[..., :3]
    if min(pixels.shape[:2]) < MIN_IMAGE_SIDE_PX:
        name = image if isinstance(image, str | Path) else "query image"
        raise InputError(f"{name}: image is {pixels.shape[1]}x{pixels.shape[0]} px; histoseek "
                         f"needs at least {MIN_IMAGE_SIDE_PX} px on each side")
    return resize_tile(np.ascontiguousarray(pixels), tile_px)[None]


def region_tiles(path: str | Path, box_l0: tuple[int, int, int, int], tiling: TilingConfig,
                 mpp: float | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """A level-0 box of a slide as tiles ``[n, tile_px, tile_px, 3]`` at the library's scale,
    with how many (rows, cols) of library tiles it spans.

    The box is cut on the same grid as indexed slides (``target_mpp``, ``tile_px``), so a
    region matches tiles of the same physical size; a box smaller than one tile is taken
    whole. Without an mpp the rule of indexing applies: a small plain image's box is taken
    whole (one tile), a slide (or a large box) needs ``mpp``.
    """
    x, y, w, h = box_l0
    with open_slide(path, mpp=mpp) as slide:
        width, height = slide.dimensions
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise InputError(
                f"{path}: region {x},{y},{w},{h} lies outside the slide ({width}x{height} px)")
        if needs_mpp(slide, w, h, tiling.tile_px):
            slide.require_mpp()
        side_l0 = None if slide.mpp is None else tiling.tile_px * tiling.target_mpp / slide.mpp
        if side_l0 is None or w < side_l0 or h < side_l0:
            shape = (1, 1) if side_l0 is None else (
                tiles_across(h, side_l0), tiles_across(w, side_l0))
            return read_region_tile(slide, x, y, w, h, tiling.tile_px)[None], shape
        side = round(side_l0)
        xs = x + np.arange(tiles_across(w, side_l0)) * side_l0
        ys = y + np.arange(tiles_across(h, side_l0)) * side_l0
        return np.stack([read_region_tile(slide, round(tx), round(ty), side, side,
                                          tiling.tile_px) for ty in ys for tx in xs]), (
            len(ys), len(xs))


def tiles_across(length: float, side: float) -> int:
    """Whole tiles of ``side`` in ``length``, forgiving 5% of a tile: a 448 px box at 0.499
    mpp is two 0.5-mpp tiles of 224.45 px, not one."""
    return max(1, int(length / side + 0.05))


def slide_tiles(path: str | Path, tiling: TilingConfig, mpp: float | None,
                max_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue tiles of a query slide, evenly subsampled to ``max_tiles``; (boxes, pixels)."""
    with open_slide(path, mpp=mpp) as slide:
        grid = tile_slide(slide, tiling)
        if len(grid) == 0:
            raise InputError(f"{path}: no tissue found to query with")
        keep = np.unique(np.linspace(0, len(grid) - 1, min(max_tiles, len(grid))).astype(int))
        sub = type(grid)(
            boxes_l0=grid.boxes_l0[keep], tissue_fraction=grid.tissue_fraction[keep],
            tile_px=grid.tile_px, mpp=grid.mpp, level=grid.level, read_px=grid.read_px,
            whole_image=grid.whole_image,
        )
        pixels = np.concatenate([t for _, t in iter_tile_batches(slide, sub, 64)])
    return sub.boxes_l0, pixels


def aggregate_slides(per_query: list[list[Hit]], k: int, regions_per_slide: int = 5) -> list[Hit]:
    """Rank sources by the mean, over query tiles, of each one's best tile score.

    A query tile that found nothing in a source contributes its own weakest retrieved score,
    so a source matched by few query tiles is not rewarded by absence (Yottixel-style
    median-of-minimum distances, with the mean for stability on small queries).
    """
    best: dict[str, dict[int, float]] = defaultdict(dict)
    tiles_of: dict[str, dict[int, Hit]] = defaultdict(dict)
    floors = []
    for qi, hits in enumerate(per_query):
        floors.append(min((h.score for h in hits), default=0.0))
        for hit in hits:
            key = hit.path or str(hit.id)
            if hit.score > best[key].get(qi, -np.inf):
                best[key][qi] = hit.score
            seen = tiles_of[key].get(hit.id)
            if seen is None or hit.score > seen.score:
                tiles_of[key][hit.id] = hit
    results = []
    for key, scores in best.items():
        total = sum(scores.get(qi, floors[qi]) for qi in range(len(per_query)))
        regions = sorted(tiles_of[key].values(), key=lambda h: -h.score)[:regions_per_slide]
        results.append(source_hit(float(total / max(len(per_query), 1)), regions))
    results.sort(key=lambda h: -h.score)
    return results[:k]


def pool_top_k(tiles: list[Hit], k: int, top: int = 5) -> list[Hit]:
    """Sources ranked by the mean of their ``top`` best tile scores (MI-Zero's top-K pooling).

    One strong tile can be a stain artefact; a slide whose several best tiles match is the
    better answer. A source with fewer than ``top`` retrieved tiles counts the weakest
    retrieved score for each missing one.
    """
    if not tiles:
        return []
    floor = min(h.score for h in tiles)
    by_source: dict[str, list[Hit]] = defaultdict(list)
    for hit in tiles:
        by_source[hit.path or str(hit.id)].append(hit)
    results = []
    for hits in by_source.values():
        hits.sort(key=lambda h: -h.score)
        scores = [h.score for h in hits[:top]] + [floor] * max(0, top - len(hits))
        results.append(source_hit(float(np.mean(scores)), hits[:top]))
    results.sort(key=lambda h: -h.score)
    return results[:k]


def source_hit(score: float, regions: list[Hit]) -> Hit:
    """A slide (or image) hit standing for the source of ``regions``, best tile first."""
    top = regions[0]
    return Hit(score=score, kind="image" if top.source_kind == "image" else "slide",
               id=top.id, path=top.path, source_id=top.source_id, slide=top.slide,
               mpp=top.mpp, label=top.label, source_kind=top.source_kind,
               metadata=top.metadata, regions=tuple(regions))


def group_by_slide(hits: list[Hit]) -> list[Hit]:
    """Tile hits grouped per source, ranked by each source's best tile."""
    return aggregate_slides([hits], k=len(hits), regions_per_slide=len(hits))
