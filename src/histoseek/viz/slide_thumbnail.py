"""A whole slide as one square grid cell, with boxes of level-0 pixels drawn on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from histoseek.slides.reader import open_slide

BOX_RGB = (0, 200, 230)


def boxed_thumbnail(path: str | Path, boxes: Sequence[tuple[int, int, int, int]], px: int,
                    mpp: float | None = None) -> np.ndarray:
    """The slide's thumbnail on a white ``px`` square, each box outlined and numbered 1..n
    (in the order given: hit rank or match strength)."""
    with open_slide(path, mpp=mpp) as slide:
        thumb = slide.thumbnail(px)
        width = slide.dimensions[0]
    canvas = Image.new("RGB", (px, px), (255, 255, 255))
    dx, dy = (px - thumb.shape[1]) // 2, (px - thumb.shape[0]) // 2
    canvas.paste(Image.fromarray(thumb), (dx, dy))
    scale = thumb.shape[1] / width
    draw = ImageDraw.Draw(canvas)
    for n, (x, y, w, h) in enumerate(boxes, 1):
        x0, y0 = dx + x * scale, dy + y * scale
        x1, y1 = x0 + max(w * scale, 3), y0 + max(h * scale, 3)
        draw.rectangle((x0, y0, x1, y1), outline=BOX_RGB, width=2)
        draw.text((x0 + 2, y0 + 1), str(n), fill=BOX_RGB)
    return np.asarray(canvas)
