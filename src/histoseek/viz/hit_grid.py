"""A retrieval grid for any query: the query beside its hits, as ``search --grid`` writes it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoseek.errors import InputError
from histoseek.search.hits import Hit
from histoseek.viz.grid import GridCell, render_grid
from histoseek.viz.labels import display_label

CELL_PX = 160


@dataclass(frozen=True)
class QueryPicture:
    """What the query looked like: pixels (blank for text), a caption and its scale."""

    pixels: np.ndarray
    caption: str
    mpp: float | None = None  # microns per pixel of ``pixels``' source tile, None if unknown
    label: str | None = None
    has_scale: bool = True  # False for a text query: there is no scale to compare


def text_picture(text: str, searched: str | None = None) -> QueryPicture:
    """A text query's cell; ``searched`` (the query with abbreviations spelled out) is shown
    too when it differs from what was typed, so "HGIN" hits can be read."""
    blank = np.full((CELL_PX, CELL_PX, 3), 255, np.uint8)
    if searched and searched != text:
        lines = textwrap.wrap(text, 24)[:3] + textwrap.wrap("= " + searched, 24)[:3]
    else:
        lines = textwrap.wrap(text, 24)[:6]
    return QueryPicture(blank, "text:\n" + "\n".join(lines), has_scale=False)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2):]


def hit_caption(hit: Hit) -> str:
    """Case (or file) id, the label as people write it, the score."""
    ident = hit.source_id or hit.slide or Path(hit.path or "").name
    label = display_label(hit.label) or "(no label)"
    return f"{_short(ident)}\n{label}\n{hit.score:.3f}"


def scale_note(query: QueryPicture, hits: Sequence[Hit]) -> str | None:
    """Said when the query's scale differs from the hits' (or either is unknown)."""
    if not query.has_scale or not hits:
        return None
    hit_mpps = {round(h.mpp, 3) if h.mpp else None
                for h in (hit.regions[0] if hit.regions else hit for hit in hits)}
    query_mpp = round(query.mpp, 3) if query.mpp else None
    if hit_mpps == {query_mpp}:
        return None
    shown = ", ".join(sorted("unknown" if m is None else f"{m:g}" for m in hit_mpps))
    return (f"query at {'unknown' if query_mpp is None else f'{query_mpp:g}'} mpp, "
            f"hits at {shown} mpp")


def write_hits_grid(query: QueryPicture, hits: Sequence[Hit],
                    pixels_of: Callable[[Hit, int], np.ndarray], out: Path, title: str) -> Path:
    """One row: the query, then each hit (green/red frame when both carry a class label)."""
    if hits and all(h.kind == "report" for h in hits):
        raise InputError("--grid draws tiles and slides; report hits have no pixels "
                         "(use --target tiles, or leave out --grid)")
    cells = []
    for hit in hits:
        good = None if query.label is None or hit.label is None else hit.label == query.label
        cells.append(GridCell(pixels_of(hit, CELL_PX), hit_caption(hit), good))
    note = scale_note(query, hits)
    caption = query.caption + (f"\n{note}" if note else "")
    return render_grid([(GridCell(query.pixels, caption), cells)], out,
                       title=title + (f" ({note})" if note else ""))


def query_picture(*, image: Path | None = None, region: str | None = None,
                  slide: Path | None = None, text: str | None = None, tile_px: int,
                  target_mpp: float, mpp: float | None = None,
                  label: str | None = None, searched: str | None = None) -> QueryPicture:
    """The query as the grid shows it, with the scale its tiles were encoded at."""
    from histoseek.search.arguments import parse_region
    from histoseek.search.queries import query_tile
    from histoseek.slides.reader import open_slide
    from histoseek.slides.tiling import read_region_tile

    if text is not None:
        return text_picture(text, searched)
    if image is not None:
        with open_slide(image, backend="pillow") as src:
            w, h = src.dimensions
            source_mpp = mpp or src.mpp
        scale = None if source_mpp is None else source_mpp * max(w, h) / tile_px
        return QueryPicture(query_tile(image, CELL_PX)[0], f"image\n{_short(Path(image).name)}",
                            scale, label)
    if region is not None:
        path, x, y, w, h = parse_region(region)
        with open_slide(path, mpp=mpp) as src:
            pixels = read_region_tile(src, x, y, w, h, CELL_PX)
            scale = target_mpp if src.mpp else None
        return QueryPicture(pixels, f"region {_short(path.name)}\n{x},{y},{w},{h}", scale, label)
    assert slide is not None
    with open_slide(slide, mpp=mpp) as src:
        thumb = src.thumbnail(CELL_PX)
    return QueryPicture(thumb, f"slide\n{_short(Path(slide).name)}", target_mpp, label)
