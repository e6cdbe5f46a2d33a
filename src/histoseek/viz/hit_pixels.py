"""The pixels a hit points at, for retrieval grids and the demo."""

from __future__ import annotations

import numpy as np

from histoseek.errors import InputError
from histoseek.search.hits import Hit
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import read_region_tile


def hit_pixels(hit: Hit, px: int) -> np.ndarray:
    """A tile, region or slide hit as uint8 ``[px, px, 3]``: a region's whole box, a slide's
    best tile."""
    target = hit if hit.kind == "region" or not hit.regions else hit.regions[0]
    if target.path is None or target.x is None:
        raise InputError(f"hit {hit.id} ({hit.kind}) has no pixels to show")
    with open_slide(target.path) as slide:
        return read_region_tile(slide, target.x, target.y, target.w or 1, target.h or 1, px)


def hit_picture(hit: Hit, px: int) -> np.ndarray:
    """What a retrieval grid shows: a slide hit as its thumbnail with its matched boxes
    numbered; a tile or region hit as its pixels."""
    if hit.kind == "slide" and hit.path is not None and hit.regions:
        from histoseek.viz.slide_thumbnail import boxed_thumbnail

        boxes = [(r.x, r.y, r.w or 1, r.h or 1) for r in hit.regions
                 if r.x is not None and r.y is not None]
        return boxed_thumbnail(hit.path, boxes, px)
    return hit_pixels(hit, px)
