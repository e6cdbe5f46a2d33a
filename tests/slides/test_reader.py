"""Opening slides and tiles: backends, levels, mpp, pixel content, alpha, real SVS files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.errors import MissingMppError, SlideReadError, UnsupportedImageError
from histoseek.slides.reader import (
    ImageSlide,
    OpenSlideSlide,
    TiffSlideSlide,
    _rgba_to_rgb,
    open_slide,
)
from histoseek.slides.tiling import TilingConfig, tile_slide
from reliability.bad_corpus import sparse_tiff, write_aperio_svs
from synthetic_images import he_like_pixels

BACKENDS = {"auto": OpenSlideSlide, "openslide": OpenSlideSlide, "tiffslide": TiffSlideSlide}
# The pyramid fixture's pixels (seed 0), what its three levels were written from.
PIXELS = he_like_pixels(1536, 2048)


def block_means(pixels: np.ndarray, block: int = 8) -> np.ndarray:
    """Mean colour of each ``block`` x ``block`` cell: compares through JPEG's 8x8 error."""
    h, w = (s // block * block for s in pixels.shape[:2])
    cells = pixels[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block, 3)
    return cells.mean(axis=(1, 3))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(block_means(a) - block_means(b)).mean())


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_pyramid_opens_with_levels_and_file_mpp(pyramid_tiff: Path, backend: str) -> None:
    with open_slide(pyramid_tiff, backend=backend) as slide:  # type: ignore[arg-type]
        assert type(slide) is BACKENDS[backend]
        assert slide.dimensions == (2048, 1536)
        assert slide.level_count == 3
        assert slide.level_dimensions == ((2048, 1536), (1024, 768), (512, 384))
        assert slide.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert slide.is_pyramid
        assert slide.mpp == pytest.approx(0.25, rel=1e-3)
        assert slide.mpp_source == "file"
        assert slide.require_mpp() == pytest.approx(0.25, rel=1e-3)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_mpp_override_wins_over_the_file(pyramid_tiff: Path, backend: str) -> None:
    with open_slide(pyramid_tiff, mpp=0.5, backend=backend) as slide:  # type: ignore[arg-type]
        assert slide.mpp == 0.5
        assert slide.mpp_source == "override"


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_missing_mpp_is_none_and_require_mpp_names_the_file(
    pyramid_tiff_no_mpp: Path, backend: str
) -> None:
    with open_slide(pyramid_tiff_no_mpp, backend=backend) as slide:  # type: ignore[arg-type]
        assert slide.mpp is None
        assert slide.mpp_source == "unknown"
        with pytest.raises(MissingMppError) as info:
            slide.require_mpp()
    message = str(info.value)
    assert str(pyramid_tiff_no_mpp) in message
    assert "--mpp" in message


def test_missing_mpp_supplied_by_override(pyramid_tiff_no_mpp: Path) -> None:
    with open_slide(pyramid_tiff_no_mpp, mpp=0.25) as slide:
        assert (slide.mpp, slide.mpp_source) == (0.25, "override")


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_read_region_content_level0_and_level1(pyramid_tiff: Path, backend: str) -> None:
    # Straddles the glass/tissue corner (tissue starts at x=341, y=256 in level-0 pixels).
    x, y, w, h = 280, 200, 128, 128
    truth0 = PIXELS[y : y + h, x : x + w]
    truth1 = PIXELS[::2, ::2][y // 2 : (y + h) // 2, x // 2 : (x + w) // 2]
    with open_slide(pyramid_tiff, backend=backend) as slide:  # type: ignore[arg-type]
        level0 = slide.read_region(x, y, 0, (w, h))
        level1 = slide.read_region(x, y, 1, (w // 2, h // 2))
    for region, shape in ((level0, (h, w, 3)), (level1, (h // 2, w // 2, 3))):
        assert region.dtype == np.uint8
        assert region.shape == shape
    assert mean_abs_diff(level0, truth0) < 2.0
    assert mean_abs_diff(level1, truth1) < 2.0
    # the two levels really differ: level-1 pixels are not level-0 pixels (wrong-level check)
    assert mean_abs_diff(level1, truth0[: h // 2, : w // 2]) > 10.0
    # glass is white-ish at the top-left, tissue pink at the bottom-right
    assert level0[:40, :40].mean() > 235
    assert level0[-40:, -40:, 1].mean() < 175


def test_thumbnail_is_rgb_and_bounded(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as slide:
        thumb = slide.thumbnail(256)
    assert thumb.dtype == np.uint8
    assert thumb.shape == (192, 256, 3)


@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_plain_tile_opens_as_one_level_image(tmp_path: Path, fmt: str, suffix: str) -> None:
    pixels = he_like_pixels(160, 200, seed=3)
    path = tmp_path / f"tile{suffix}"
    Image.fromarray(pixels).save(path, format=fmt, quality=95)
    with open_slide(path) as slide:
        assert isinstance(slide, ImageSlide)
        assert not slide.is_pyramid
        assert slide.dimensions == (200, 160)
        assert slide.level_count == 1
        assert slide.level_downsamples == (1.0,)
        assert slide.mpp is None and slide.mpp_source == "unknown"
        region = slide.read_region(0, 0, 0, (200, 160))
        # reading past the edge pads with white
        edge = slide.read_region(150, 100, 0, (100, 100))
    assert region.dtype == np.uint8 and region.shape == (160, 200, 3)
    if fmt == "PNG":
        np.testing.assert_array_equal(region, pixels)
    else:
        assert mean_abs_diff(region, pixels) < 2.0
    assert edge.shape == (100, 100, 3)
    assert (edge[60:, :] == 255).all() and (edge[:, 50:] == 255).all()


def test_flat_tiff_with_resolution_gives_file_mpp(tmp_path: Path) -> None:
    path = tmp_path / "flat.tif"
    Image.fromarray(he_like_pixels(128, 128)).save(
        path, format="TIFF", dpi=(25400 / 0.5, 25400 / 0.5))
    with open_slide(path) as slide:
        assert isinstance(slide, ImageSlide)
        assert slide.mpp == pytest.approx(0.5, rel=1e-3)
        assert slide.mpp_source == "file"


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :4, 3] = 255  # opaque left half
    rgba[:, 4:6, 3] = 128  # half-transparent
    # right-most columns fully transparent
    direct = _rgba_to_rgb(rgba)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    with open_slide(path) as slide:
        via_file = slide.read_region(0, 0, 0, (8, 8))
    for out in (direct, via_file):
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[0, 0], (200, 0, 0))
        np.testing.assert_array_equal(out[0, 7], (255, 255, 255))
        np.testing.assert_allclose(out[0, 4], (228, 127, 127), atol=1)


# -- which backend failures fall through, and which surface ----------------------------------

class _CorruptForOpenSlide:
    """Stands in for ``openslide.OpenSlide`` on a file it recognises but cannot read."""

    @classmethod
    def detect_format(cls, filename: str) -> str:
        return "generic-tiff"

    def __init__(self, filename: str) -> None:
        import openslide

        raise openslide.OpenSlideError("TIFFReadDirectory failed reading directory 1")


def _tiffslide_must_not_run(filename: str) -> None:
    raise AssertionError("a second backend must not paper over a read error")


def test_codec_openslide_lacks_falls_back_to_tiffslide(tmp_path: Path) -> None:
    """OpenSlide raises a plain OpenSlideError("Unsupported TIFF compression") for WebP tiles:
    that is "not my format", so tiffslide still gets the file."""
    pytest.importorskip("imagecodecs")
    import tifffile

    pixels = he_like_pixels(512, 512)
    path = tmp_path / "webp_tiles.tif"
    tifffile.imwrite(path, pixels, tile=(256, 256), photometric="rgb", compression="webp",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert type(slide) is TiffSlideSlide
        region = slide.read_region(0, 0, 0, (512, 512))
    assert mean_abs_diff(region, pixels) < 3.0


def test_openslide_read_error_is_not_swallowed_by_tiffslide(
        pyramid_tiff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openslide
    import tiffslide

    monkeypatch.setattr(openslide, "OpenSlide", _CorruptForOpenSlide)
    monkeypatch.setattr(tiffslide, "TiffSlide", _tiffslide_must_not_run)
    with pytest.raises(SlideReadError, match=re.escape(str(pyramid_tiff)) + r".*corrupt or "
                       r"truncated \(TIFFReadDirectory failed"):
        open_slide(pyramid_tiff)


@pytest.mark.parametrize("error,message", [
    (ValueError("offset beyond end of file"), r"corrupt or truncated \(ValueError: offset"),
    (NotImplementedError("series with axes='ZYX' not supported yet"),
     r"corrupt or unsupported \(tiffslide: series with axes"),
])
def test_tiffslide_failure_names_the_file(pyramid_tiff: Path, monkeypatch: pytest.MonkeyPatch,
                                          error: Exception, message: str) -> None:
    import tiffslide

    def failing(filename: str) -> None:
        raise error

    monkeypatch.setattr(tiffslide, "TiffSlide", failing)
    with pytest.raises(SlideReadError, match=re.escape(str(pyramid_tiff)) + ".*" + message):
        open_slide(pyramid_tiff, backend="tiffslide")


def test_a_bug_in_a_backend_is_not_dressed_up_as_a_bad_file(
        pyramid_tiff: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiffslide

    def buggy(filename: str) -> None:
        raise TypeError("unexpected keyword argument")

    monkeypatch.setattr(tiffslide, "TiffSlide", buggy)
    with pytest.raises(TypeError):
        open_slide(pyramid_tiff, backend="tiffslide")


# -- real Aperio slides from ../shared ---------------------------------------------------------

@pytest.mark.shared
def test_real_cmu_slide_opens_with_file_mpp(shared_data: Path) -> None:
    path = shared_data / "tiny-wsi" / "cmu-1-small-region.svs"
    with open_slide(path) as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499, abs=0.002)
        assert slide.mpp_source == "file"
        region = slide.read_region(1000, 1000, 0, (64, 64))
        assert region.shape == (64, 64, 3) and region.dtype == np.uint8
        assert region.std() > 5  # real tissue, not a blank read


@pytest.mark.shared
def test_real_tcga_slide_has_no_mpp(shared_data: Path) -> None:
    path = shared_data / "tiny-wsi" / "tcga-cr-7395-01a-01-ts1.svs"
    config = TilingConfig(target_mpp=0.5, tile_px=224)
    with open_slide(path) as slide:
        assert slide.dimensions == (4443, 3567)
        assert slide.level_count >= 2
        assert slide.mpp is None
        with pytest.raises(MissingMppError, match=r"tcga-cr-7395-01a-01-ts1\.svs"):
            tile_slide(slide, config)
    with open_slide(path, mpp=0.25) as slide:
        assert slide.mpp_source == "override"
        grid = tile_slide(slide, config)
    assert len(grid) > 0
    assert set(grid.boxes_l0[:, 2]) == {448}


# -- bad scales, truncated chains, slides too large to draw, special files ---------------------

def _aperio(path: Path, mpp: str) -> Path:
    return write_aperio_svs(path, he_like_pixels(512, 512), mpp, levels=2)


@pytest.mark.parametrize("recorded", ["0", "-0.25", "inf", "1e-9", "1e6"])
def test_an_implausible_file_mpp_counts_as_missing_and_is_named(tmp_path: Path,
                                                                recorded: str) -> None:
    path = _aperio(tmp_path / "odd_scale.svs", recorded)
    with open_slide(path) as slide:
        assert (slide.mpp, slide.mpp_source) == (None, "unknown")
        shown = re.escape(f"({float(recorded):g};")
        with pytest.raises(MissingMppError, match=re.escape(str(path)) + r": the file records "
                           rf"an implausible microns-per-pixel {shown}.*--mpp"):
            tile_slide(slide, TilingConfig())
    with open_slide(path, mpp=0.5) as slide:  # --mpp mends it
        assert (slide.mpp, slide.mpp_source, slide.mpp_rejected) == (0.5, "override",
                                                                     float(recorded))
        assert len(tile_slide(slide, TilingConfig(min_tissue=0.0))) == 4  # 2 x 2 tiles


@pytest.mark.parametrize("given,problem", [(-1.0, "must be positive"),
                                           (float("nan"), "must be positive"),
                                           (1e6, r"1e\+06 is not a plausible scale"),
                                           (float("inf"), "inf is not a plausible scale")])
def test_an_implausible_mpp_override_is_refused(pyramid_tiff: Path, given: float,
                                                problem: str) -> None:
    with pytest.raises(SlideReadError, match=re.escape(str(pyramid_tiff)) + ": --mpp " + problem):
        open_slide(pyramid_tiff, mpp=given)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_a_truncated_tiff_is_refused_not_read_in_part(pyramid_tiff: Path, tmp_path: Path,
                                                       fraction: float) -> None:
    """OpenSlide declines an Aperio file cut before its last page; tifffile would read the
    pages left and log the break: the file is refused instead."""
    full = _aperio(tmp_path / "full.svs", "0.25").read_bytes()
    for source, name in ((full, "cut.svs"), (pyramid_tiff.read_bytes(), "cut.tif")):
        cut = tmp_path / name
        cut.write_bytes(source[: int(len(source) * fraction)])
        with (pytest.raises(SlideReadError, match=re.escape(str(cut)) + ".*corrupt or truncated"),
              open_slide(cut) as slide):
            tile_slide(slide, TilingConfig())


def test_a_slide_with_no_level_small_enough_to_draw_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    path.write_bytes(sparse_tiff(side=100_000))  # 1.2 MB declaring 30 GB of pixels
    with pytest.raises(UnsupportedImageError, match=re.escape(str(path)) + r": 100000x100000 px "
                       r"slide whose smallest level is 100000x100000 px, too large"):
        open_slide(path)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    with pytest.raises(SlideReadError, match=re.escape(str(path)) + ": not a regular file"):
        open_slide(path)
