"""Deep Zoom (DZI) tiles of indexed slides for a browser viewer (OpenSeadragon).

OpenSlide's ``DeepZoomGenerator`` serves every file OpenSlide opens; any other file the
library reads (a TIFF only tiffslide parses, a plain PNG or JPEG) gets ``SlideDeepZoom``, the
same pyramid arithmetic over ``open_slide``. Open slides are kept in a small LRU cache, each
behind its own lock (a viewer asks for dozens of tiles at once; the readers are not all
thread-safe, and a slide must not be closed while a tile is read from it).
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from histoseek.errors import SlideReadError
from histoseek.service.errors import ApiError
from histoseek.slides.reader import Slide, open_slide

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"),
           "png": ("PNG", "image/png")}


class DeepZoom(Protocol):
    """What both generators offer (OpenSlide's names)."""

    level_count: int
    level_tiles: tuple[tuple[int, int], ...]

    def get_dzi(self, format: str) -> str: ...

    def get_tile(self, level: int, address: tuple[int, int]) -> Image.Image: ...


class SlideDeepZoom:
    """A Deep Zoom pyramid over any ``Slide``: level ``z`` halves level ``z + 1`` (rounding
    up) down to 1 x 1; each tile is read from the finest slide level that is not finer than
    needed, then resized."""

    def __init__(self, slide: Slide, tile_size: int = 254, overlap: int = 1) -> None:
        self.slide, self.tile_size, self.overlap = slide, tile_size, overlap
        size = slide.dimensions
        levels = [size]
        while size != (1, 1):
            size = (max(1, math.ceil(size[0] / 2)), max(1, math.ceil(size[1] / 2)))
            levels.append(size)
        self.level_dimensions = tuple(reversed(levels))
        self.level_count = len(self.level_dimensions)
        self.level_tiles = tuple((math.ceil(w / tile_size), math.ceil(h / tile_size))
                                 for w, h in self.level_dimensions)

    def get_dzi(self, format: str) -> str:
        width, height = self.slide.dimensions
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
                f'Format="{format}" Overlap="{self.overlap}" TileSize="{self.tile_size}">'
                f'<Size Height="{height}" Width="{width}"/></Image>')

    def _span(self, index: int, count: int, extent: int) -> tuple[int, int]:
        """A tile's first pixel and size along one axis of its Deep Zoom level."""
        start = index * self.tile_size - (self.overlap if index > 0 else 0)
        end = min(extent, (index + 1) * self.tile_size + (self.overlap if index < count - 1
                                                          else 0))
        return start, end - start

    def get_tile(self, level: int, address: tuple[int, int]) -> Image.Image:
        col, row = address
        cols, rows = self.level_tiles[level]
        z_w, z_h = self.level_dimensions[level]
        x, w = self._span(col, cols, z_w)
        y, h = self._span(row, rows, z_h)
        scale = 2 ** (self.level_count - 1 - level)  # level-0 px per pixel of this level
        width, height = self.slide.dimensions
        x0, y0 = x * scale, y * scale
        w0, h0 = min(w * scale, width - x0), min(h * scale, height - y0)
        downsamples = self.slide.level_downsamples
        best = max((i for i, d in enumerate(downsamples) if d <= scale * 1.01), default=0,
                   key=lambda i: downsamples[i])
        d = downsamples[best]
        size = (max(1, math.ceil(w0 / d)), max(1, math.ceil(h0 / d)))
        pixels = self.slide.read_region(x0, y0, best, size)
        tile = Image.fromarray(np.ascontiguousarray(pixels))
        return tile if tile.size == (w, h) else tile.resize((w, h), Image.Resampling.LANCZOS)

    def close(self) -> None:
        self.slide.close()


def open_deepzoom(path: str | Path, tile_size: int = 254, overlap: int = 1,
                  use_openslide: bool = True) -> tuple[DeepZoom, Callable[[], None]]:
    """A generator for ``path`` and the function that closes its file."""
    if use_openslide:
        try:
            import openslide
            from openslide.deepzoom import DeepZoomGenerator
        except ImportError:  # the binding or its C library is missing: the fallback serves
            pass
        else:
            try:
                if openslide.OpenSlide.detect_format(str(path)):
                    handle = openslide.OpenSlide(str(path))
                    return DeepZoomGenerator(handle, tile_size, overlap), handle.close
            except openslide.OpenSlideError:
                pass  # a file OpenSlide declines may still open below
    slide = open_slide(path)
    generator = SlideDeepZoom(slide, tile_size, overlap)
    return generator, generator.close


def _read_errors() -> tuple[type[Exception], ...]:
    try:
        import openslide
    except ImportError:
        return (OSError,)
    return (OSError, openslide.OpenSlideError)


@dataclass
class _Entry:
    path: str
    generator: DeepZoom
    close: Callable[[], None]
    lock: threading.Lock
    closed: bool = False


class DeepZoomCache:
    """Open generators by source id, least recently used closed first."""

    def __init__(self, size: int = 8, tile_size: int = 254, overlap: int = 1,
                 use_openslide: bool = True) -> None:
        self.size, self.tile_size, self.overlap = size, tile_size, overlap
        self.use_openslide = use_openslide
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._read_errors = _read_errors()

    def _entry(self, source: int, path: str) -> _Entry:
        """The open generator of ``source`` (opened under the cache lock: opening is quick,
        and two requests must not open, then close, each other's copy)."""
        evicted = []
        with self._lock:
            entry = self._entries.get(source)
            if entry is not None and entry.path == path:
                self._entries.move_to_end(source)
                return entry
            generator, close = open_deepzoom(path, self.tile_size, self.overlap,
                                             self.use_openslide)
            if entry is not None:  # the source's file changed (removed and re-added)
                evicted.append(self._entries.pop(source))
            entry = self._entries[source] = _Entry(path, generator, close, threading.Lock())
            while len(self._entries) > self.size:
                evicted.append(self._entries.popitem(last=False)[1])
        for gone in evicted:
            self._close(gone)
        return entry

    @staticmethod
    def _close(entry: _Entry) -> None:
        with entry.lock:  # never close a slide while a tile is being read from it
            if not entry.closed:
                entry.closed = True
                entry.close()

    def _use(self, source: int, path: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(generator)`` under the entry's lock; reopened if evicted in between."""
        while True:
            entry = self._entry(source, path)
            with entry.lock:
                if not entry.closed:
                    return fn(entry.generator)

    def dzi(self, source: int, path: str, fmt: str = "jpeg") -> str:
        return self._use(source, path, lambda generator: generator.get_dzi(fmt))

    def tile(self, source: int, path: str, level: int, col: int, row: int, fmt: str) -> bytes:
        """One encoded tile; 404 for a level or address outside the pyramid."""
        if fmt not in FORMATS:
            raise ApiError(404, f"tile format '{fmt}' is not served; use jpeg or png")

        def read(generator: Any) -> Image.Image:
            if not 0 <= level < generator.level_count:
                raise ApiError(404, f"slide {source} has Deep Zoom levels 0-"
                                    f"{generator.level_count - 1}, not {level}")
            cols, rows = generator.level_tiles[level]
            if not (0 <= col < cols and 0 <= row < rows):
                raise ApiError(404, f"level {level} of slide {source} has {cols}x{rows} tiles; "
                                    f"({col}, {row}) is outside")
            try:
                return generator.get_tile(level, (col, row))
            except self._read_errors as exc:  # a corrupt region of the file
                raise SlideReadError(f"{path}: cannot read Deep Zoom tile {level}/{col}_{row} "
                                     f"({exc})") from exc

        tile = self._use(source, path, read)
        out = io.BytesIO()
        name = FORMATS[fmt][0]
        tile.convert("RGB").save(out, name, **({"quality": 80} if name == "JPEG" else {}))
        return out.getvalue()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            self._close(entry)
