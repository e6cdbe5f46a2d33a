"""Magnification-aware tiling: same physical tile whatever the scan, tissue only, bounded."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.errors import MissingMppError, UnsupportedImageError
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import (
    TilingConfig,
    best_level,
    iter_tile_batches,
    read_tile,
    tile_slide,
)
from synthetic_images import he_like_pixels, write_pyramid_tiff

CONFIG = TilingConfig(target_mpp=0.5, tile_px=224, min_tissue=0.5)
PIXELS = he_like_pixels(1536, 2048)  # what the pyramid_tiff fixture holds


def halve(pixels: np.ndarray) -> np.ndarray:
    """2x2 mean: the same tissue as a scanner at half the resolution would see it."""
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    cells = pixels[:h, :w].astype(np.float32).reshape(h // 2, 2, w // 2, 2, 3)
    return cells.mean(axis=(1, 3)).round().astype(np.uint8)


@pytest.fixture
def pyramid_tiff_05(tmp_path: Path) -> Path:
    """The pyramid fixture's tissue scanned at 0.5 mpp (1024x768)."""
    return write_pyramid_tiff(tmp_path / "half.tif", halve(PIXELS), mpp=0.5)


def block_means(pixels: np.ndarray, block: int = 16) -> np.ndarray:
    h, w = (s // block * block for s in pixels.shape[:2])
    cells = pixels[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block, 3)
    return cells.mean(axis=(1, 3))


def test_tile_covers_same_area_whatever_the_scan(pyramid_tiff: Path,
                                                 pyramid_tiff_05: Path) -> None:
    with open_slide(pyramid_tiff) as fine, open_slide(pyramid_tiff_05) as coarse:
        grid_fine, grid_coarse = tile_slide(fine, CONFIG), tile_slide(coarse, CONFIG)
        assert grid_fine.mpp == grid_coarse.mpp == 0.5
        assert set(grid_fine.boxes_l0[:, 2:].ravel()) == {448}
        assert set(grid_coarse.boxes_l0[:, 2:].ravel()) == {224}
        # 448 px x 0.25 um == 224 px x 0.5 um == 112 um
        assert 448 * fine.mpp == pytest.approx(224 * coarse.mpp, rel=1e-3)
        assert len(grid_fine) > 0
        assert abs(len(grid_fine) - len(grid_coarse)) <= 1
        # the 0.25-mpp slide is read from level 1, already at the target scale
        assert (grid_fine.level, grid_fine.read_px) == (1, (224, 224))
        assert (grid_coarse.level, grid_coarse.read_px) == (0, (224, 224))
        # same boxes in physical units, and the same pixels in them
        np.testing.assert_array_equal(grid_fine.boxes_l0 // 2, grid_coarse.boxes_l0)
        for i in range(len(grid_fine)):
            a, b = read_tile(fine, grid_fine, i), read_tile(coarse, grid_coarse, i)
            assert a.shape == b.shape == (224, 224, 3)
            assert float(np.abs(block_means(a) - block_means(b)).mean()) < 3.0


def test_best_level_picks_coarsest_without_upsampling(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as slide:
        wanted = 0.5 / slide.mpp  # target 0.5 mpp on a 0.25-mpp slide
        assert best_level(slide, wanted) == 1
        assert best_level(slide, 1.0) == 0
        assert best_level(slide, 1.9) == 0
        assert best_level(slide, 3.0) == 1
        assert best_level(slide, 4.0) == 2
        assert best_level(slide, 100.0) == 2


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_boxes_inside_slide_and_only_on_tissue(pyramid_tiff: Path, overlap: float) -> None:
    config = TilingConfig(target_mpp=0.5, tile_px=224, min_tissue=0.5, overlap=overlap)
    with open_slide(pyramid_tiff) as slide:
        grid = tile_slide(slide, config)
        width, height = slide.dimensions
    boxes = grid.boxes_l0
    assert len(boxes) > 0
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= width).all()
    assert (boxes[:, 1] + boxes[:, 3] <= height).all()
    assert (grid.tissue_fraction >= 0.5).all()
    # tissue is the rectangle x 341..1707, y 256..1280: each kept box is at least ~half in it
    truth = np.zeros((height, width), bool)
    truth[256:1280, 341:1707] = True
    for x, y, w, h in boxes:
        assert truth[y : y + h, x : x + w].mean() > 0.4
    if overlap:
        assert len(np.unique(boxes[:, 0])) > 4  # a finer stride than without overlap


def test_background_only_slide_gives_no_tiles(tmp_path: Path) -> None:
    glass = np.full((1024, 1024, 3), 245, np.uint8)
    glass += np.random.default_rng(0).integers(0, 4, glass.shape, dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "glass.tif", glass, mpp=0.25, levels=2)
    with open_slide(path) as slide:
        grid = tile_slide(slide, CONFIG)
    assert len(grid) == 0
    assert grid.boxes_l0.shape == (0, 4)


def test_background_half_gives_no_tiles_there(tmp_path: Path) -> None:
    pixels = np.full((1024, 2048, 3), 245, np.uint8)
    pixels[:, :1024] = he_like_pixels(1536, 1536, seed=2)[256:1280, 256:1280]  # tissue left
    path = write_pyramid_tiff(tmp_path / "half_glass.tif", pixels, mpp=0.5, levels=2)
    with open_slide(path) as slide:
        grid = tile_slide(slide, CONFIG)
    assert len(grid) > 0
    assert (grid.boxes_l0[:, 0] + grid.boxes_l0[:, 2] <= 1024 + 112).all()


def test_iter_tile_batches_shapes(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as slide:
        grid = tile_slide(slide, CONFIG)
        assert len(grid) > 5
        batches = list(iter_tile_batches(slide, grid, batch_size=5))
    sizes = [len(idx) for idx, _ in batches]
    assert all(0 < s <= 5 for s in sizes)
    assert sum(sizes) == len(grid)
    assert len(batches) == -(-len(grid) // 5)
    np.testing.assert_array_equal(np.concatenate([idx for idx, _ in batches]),
                                  np.arange(len(grid)))
    for idx, tiles in batches:
        assert tiles.shape == (len(idx), 224, 224, 3)
        assert tiles.dtype == np.uint8
    # resuming part-way starts where asked
    with open_slide(pyramid_tiff) as slide:
        first_idx, _ = next(iter_tile_batches(slide, grid, batch_size=5, start=3))
    np.testing.assert_array_equal(first_idx, np.arange(3, min(8, len(grid))))


def test_small_plain_image_without_mpp_is_one_whole_tile(tmp_path: Path) -> None:
    path = tmp_path / "tile.png"
    Image.fromarray(he_like_pixels(200, 300)).save(path)
    with open_slide(path) as slide:
        grid = tile_slide(slide, CONFIG)
        tile = read_tile(slide, grid, 0)
    assert grid.whole_image
    assert len(grid) == 1
    np.testing.assert_array_equal(grid.boxes_l0, [[0, 0, 300, 200]])
    assert grid.mpp is None
    assert grid.read_px == (300, 200)
    assert any("no mpp" in note for note in grid.notes)
    assert tile.shape == (224, 224, 3)


def test_large_plain_image_without_mpp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big_tile.png"
    Image.fromarray(he_like_pixels(1000, 1000)).save(path)
    with open_slide(path) as slide, pytest.raises(MissingMppError) as info:
        tile_slide(slide, CONFIG)
    assert str(path) in str(info.value)
    with open_slide(path, mpp=0.5) as slide:  # given a scale it tiles like a slide
        grid = tile_slide(slide, CONFIG)
    assert not grid.whole_image and len(grid) > 0


def test_pyramid_without_mpp_is_refused(pyramid_tiff_no_mpp: Path) -> None:
    with open_slide(pyramid_tiff_no_mpp) as slide, pytest.raises(MissingMppError, match="no_mpp"):
        tile_slide(slide, CONFIG)


def test_tiling_memory_is_bounded_by_the_batch(tmp_path: Path) -> None:
    """Tiling an 8192x8192 slide holds a batch and a thumbnail, not the slide."""
    started = time.perf_counter()
    pixels = np.tile(he_like_pixels(1024, 1024, seed=4), (8, 8, 1))
    pixels[:, :1024] = 245  # some glass
    path = write_pyramid_tiff(tmp_path / "large.tif", pixels, mpp=0.25, levels=4)
    slide_bytes = pixels.nbytes  # 192 MiB
    del pixels
    with open_slide(path) as slide:
        tracemalloc.start()
        try:
            grid = tile_slide(slide, CONFIG)  # thumbnail + mask: bounded by THUMBNAIL_MAX_PX
            _, grid_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            n = 0
            for idx, tiles in iter_tile_batches(slide, grid, batch_size=8):
                n += len(idx)
                assert tiles.shape[1:] == (224, 224, 3)
            _, read_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert n == len(grid) > 80
    batch_bytes = 8 * 224 * 224 * 3
    assert read_peak < 10 * batch_bytes, f"reading peaked at {read_peak / 2**20:.0f} MiB"
    assert read_peak < slide_bytes / 20
    assert grid_peak < slide_bytes / 4, f"tile_slide peaked at {grid_peak / 2**20:.0f} MiB"
    if time.perf_counter() - started > 10:
        pytest.skip("memory check took over 10 s on this machine")


@pytest.mark.parametrize("mpp", [20.0, 100.0])
def test_a_scale_that_would_magnify_tiles_past_16x_is_refused(tmp_path: Path, mpp: float) -> None:
    path = tmp_path / "coarse.png"
    Image.fromarray(he_like_pixels(1000, 1000)).save(path)
    with open_slide(path, mpp=mpp) as slide, pytest.raises(
            UnsupportedImageError, match=rf"coarse\.png: at {mpp:g} mpp a 224 px tile at 0\.5 "
                                         r"mpp covers only .* px of the image.*--mpp"):
        tile_slide(slide, CONFIG)
    with open_slide(path, mpp=2.0) as slide:  # 56 px per tile: coarse but still tiled
        assert len(tile_slide(slide, TilingConfig(min_tissue=0.0))) == 17 * 17
