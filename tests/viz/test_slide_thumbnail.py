"""A slide hit in a retrieval grid: the slide's thumbnail with its matched boxes drawn
(``viz.slide_thumbnail.boxed_thumbnail``, ``Library.hit_picture``), and ``search --grid``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from histoseek.library import Library
from histoseek.viz.slide_thumbnail import BOX_RGB, boxed_thumbnail
from slide_library import (
    COLOURS,
    Built,
    built_fixture,  # noqa: F401 (a fixture)
    lib_fixture,  # noqa: F401 (a fixture)
    use_fake_encoder,
)


def box_coloured(pixels: np.ndarray, tol: int = 40) -> np.ndarray:
    """Where the pixels are (about) the box colour: ``[n, 2]`` as (row, col)."""
    near = (np.abs(pixels[..., :3].astype(int) - np.array(BOX_RGB)) <= tol).all(axis=-1)
    return np.argwhere(near)


def placement(slide_size: tuple[int, int], px: int) -> tuple[float, float, float]:
    """Scale and offsets of a slide's thumbnail centred on a ``px`` square."""
    width, height = slide_size
    scale = px / max(width, height)
    return scale, (px - round(width * scale)) / 2, (px - round(height * scale)) / 2


@pytest.mark.parametrize("px", [160, 256])
def test_the_box_is_drawn_where_it_lies_on_the_slide(built: Built, px: int) -> None:
    slide = built.slides[0]
    region = max(slide.regions, key=lambda r: r.area)
    picture = boxed_thumbnail(slide.path, [region.box], px)
    assert picture.shape == (px, px, 3) and picture.dtype == np.uint8
    scale, dx, dy = placement((slide.width, slide.height), px)
    x, y, w, h = region.box
    x0, y0, x1, y1 = dx + x * scale, dy + y * scale, dx + (x + w) * scale, dy + (y + h) * scale
    found = box_coloured(picture)
    assert len(found) > 2 * (x1 - x0 + y1 - y0)  # the outline, two pixels wide, all round
    rows, cols = found[:, 0], found[:, 1]
    slack = 3
    assert rows.min() >= y0 - slack and rows.max() <= y1 + slack, (rows.min(), rows.max())
    assert cols.min() >= x0 - slack and cols.max() <= x1 + slack, (cols.min(), cols.max())
    # all four sides are there: the outline's extremes are the box's edges
    assert abs(rows.min() - y0) <= slack and abs(rows.max() - y1) <= slack
    assert abs(cols.min() - x0) <= slack and abs(cols.max() - x1) <= slack
    # inside the box, away from its edge and its number, is the region's own colour
    middle = picture[int((y0 + y1) / 2), int((x0 + x1) / 2)]
    assert np.abs(middle.astype(int) - COLOURS[region.label]).max() < 30


def test_the_thumbnail_is_centred_on_white(built: Built) -> None:
    slide = built.slides[2]  # wider than tall
    assert slide.width > slide.height
    px = 200
    picture = boxed_thumbnail(slide.path, [], px)
    assert len(box_coloured(picture)) == 0  # no boxes, no box colour
    _, _, dy = placement((slide.width, slide.height), px)
    assert dy >= 5
    assert (picture[: int(dy) - 1] == 255).all() and (picture[px - int(dy) + 1:] == 255).all()
    # the slide fills the width: its stroma shows at the middle of each side
    assert (picture[px // 2, [3, px - 4]] != 255).any()


def test_each_box_is_drawn(built: Built) -> None:
    slide = built.slides[1]
    px = 256
    scale, dx, dy = placement((slide.width, slide.height), px)
    boxes = [r.box for r in slide.regions]
    picture = boxed_thumbnail(slide.path, boxes, px)
    found = box_coloured(picture)
    for x, y, w, h in boxes:  # the top-left corner of every box is outlined
        cx, cy = dx + x * scale, dy + y * scale
        near = np.hypot(found[:, 1] - cx, found[:, 0] - cy) <= 3
        assert near.any(), (x, y, w, h)
    one = boxed_thumbnail(slide.path, boxes[:1], px)
    assert len(box_coloured(one)) < len(found)


def test_hit_picture_shows_a_slide_hit_as_its_boxed_thumbnail(lib: Library, built: Built) -> None:
    hits = lib.search(slide=built.slides[0].path, k=2)
    assert hits and hits[0].kind == "slide" and hits[0].regions
    hit = hits[0]
    picture = lib.hit_picture(hit, 160)
    assert picture.shape == (160, 160, 3)
    assert np.array_equal(picture, boxed_thumbnail(
        hit.path, [(r.x, r.y, r.w, r.h) for r in hit.regions], 160))
    target = next(s for s in built.slides if s.path == Path(hit.path))
    scale, dx, dy = placement((target.width, target.height), 160)
    found = box_coloured(picture)
    for region in hit.regions:  # every matched box is outlined at its place
        cx, cy = dx + region.x * scale, dy + region.y * scale
        assert (np.hypot(found[:, 1] - cx, found[:, 0] - cy) <= 3).any()
    # the slide's best tile alone is what hit_pixels shows
    tile = lib.hit_pixels(hit, 64)
    assert tile.shape == (64, 64, 3) and len(box_coloured(tile)) == 0


def test_hit_picture_shows_a_region_hit_as_its_whole_box(lib: Library, built: Built) -> None:
    slide = built.slides[0]
    region = max(slide.regions, key=lambda r: r.area)
    hits = lib.search(region=(slide.path, *region.box), level="region", k=3,
                      include_query_region=True)
    hit = next(h for h in hits if h.kind == "region" and Path(h.path) == slide.path)
    assert hit.w > 224 and hit.h > 224  # merged from several tiles
    picture = lib.hit_picture(hit, 96)
    assert picture.shape == (96, 96, 3) and len(box_coloured(picture)) == 0
    with_box = boxed_thumbnail(slide.path, [(hit.x, hit.y, hit.w, hit.h)], 96)
    assert not np.array_equal(picture, with_box)
    # the region's own colour fills the picture (its box is one class's tiles)
    assert np.abs(np.median(picture.reshape(-1, 3), axis=0) - COLOURS[region.label]).max() < 20


def test_a_tile_hit_without_regions_shows_its_pixels(lib: Library, built: Built) -> None:
    tile = built.tiles / "normal" / "src1_00.png"
    hit = lib.search(image=tile, k=1)[0]
    assert hit.kind == "tile" and hit.label  # a tile of a slide labelled by its class
    picture = lib.hit_picture(hit, 48)
    assert picture.shape == (48, 48, 3)
    assert np.abs(picture.reshape(-1, 3).mean(axis=0) - COLOURS["normal"]).max() < 20


def test_cli_search_grid_for_a_slide_query(built: Built, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    from histoseek.cli import app

    use_fake_encoder(monkeypatch)
    out = tmp_path / "grid" / "slides.png"
    result = CliRunner().invoke(app, ["search", str(built.lib), "--slide",
                                      str(built.slides[0].path), "-k", "2", "--grid", str(out)])
    assert result.exit_code == 0, result.output
    assert f"retrieval grid: {out}" in result.stderr
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size[0] > 300 and image.size[1] > 150  # query and two hits in a row
        pixels = np.asarray(image.convert("RGB"))
    # the hits are shown as thumbnails with their boxes, so the box colour is in the grid
    assert len(box_coloured(pixels, tol=45)) > 20
    # an image query's grid shows tiles: no boxes drawn
    tile_grid = tmp_path / "tiles.png"
    tiles = CliRunner().invoke(app, ["search", str(built.lib), "--image",
                                     str(built.tiles / "polyp" / "src0_01.png"), "-k", "2",
                                     "--grid", str(tile_grid)])
    assert tiles.exit_code == 0, tiles.output
    with Image.open(tile_grid) as image:
        assert len(box_coloured(np.asarray(image.convert("RGB")), tol=45)) == 0
