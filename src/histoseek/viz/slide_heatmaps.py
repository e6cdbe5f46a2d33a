"""One heatmap PNG per slide among a search's hits (``histoseek search --heatmaps DIR``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from histoseek.search.hits import Hit
from histoseek.slides.reader import open_slide
from histoseek.viz.heatmap import Box, render_slide_heatmap

SimilarityOf = Callable[[Hit], tuple[np.ndarray, np.ndarray]]
"""A hit → level-0 boxes and query scores of every tile of its slide."""

THUMBNAIL_PX = 1024


def write_hit_heatmaps(hits: Sequence[Hit], folder: Path, similarity_of: SimilarityOf,
                       title: str = "") -> list[Path]:
    """For each slide the hits point into (in rank order): its thumbnail, every tile's score
    as colour, and the hits' boxes numbered by their rank in ``hits``."""
    marked: dict[str, list[tuple[Box, str]]] = {}
    first: dict[str, Hit] = {}
    for rank, hit in enumerate(hits, 1):
        if hit.path is None or hit.kind == "report":
            continue
        first.setdefault(hit.path, hit)
        boxes = [hit] if hit.x is not None else list(hit.regions)
        marked.setdefault(hit.path, []).extend(
            ((b.x, b.y, b.w or 1, b.h or 1), f"{rank}  {b.score:.2f}")
            for b in boxes if b.x is not None and b.y is not None)
    written = []
    for n, (path, hit) in enumerate(first.items(), 1):
        tile_boxes, scores = similarity_of(hit)
        with open_slide(path) as slide:
            thumbnail, dimensions = slide.thumbnail(THUMBNAIL_PX), slide.dimensions
        stem = re.sub(r"[^\w.-]+", "_", Path(path).stem)
        written.append(render_slide_heatmap(
            thumbnail, dimensions, tile_boxes, scores, marked[path],
            folder / f"{n:02d}-{stem}.png",
            title=f"{title}\n{hit.slide or Path(path).name}: boxes numbered by hit rank"))
    return written
