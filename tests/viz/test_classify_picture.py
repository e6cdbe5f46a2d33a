"""Showing a zero-shot slide classification (``viz.classify_picture``): the terminal table and
the heatmap PNG with the driving tiles boxed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from histoseek.library import Library
from histoseek.search.classify import SlideClassification
from histoseek.viz.classify_picture import print_classification, write_classification_heatmap
from slide_library import (
    Built,
    FakeHist,
    built_fixture,  # noqa: F401 (a fixture)
)

CLASSES = "adenocarcinoma,normal,polyp"
MARK_RGB = (0x00, 0xE5, 0xFF)  # the driving-tile boxes of viz.heatmap


@pytest.fixture(scope="module")
def result(built: Built) -> SlideClassification:
    with Library.open(built.lib, encoder=FakeHist()) as lib:
        return lib.classify(built.slides[2].path, classes=CLASSES, progress=False)


def marked(pixels: np.ndarray, tol: int = 30) -> np.ndarray:
    return (np.abs(pixels[..., :3].astype(int) - np.array(MARK_RGB)) <= tol).all(axis=-1)


def test_the_heatmap_png_is_written(result: SlideClassification, built: Built,
                                    tmp_path: Path) -> None:
    out = write_classification_heatmap(result, tmp_path / "maps")
    assert out == tmp_path / "maps" / f"classify-{built.slides[2].path.stem}.png"
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    slide = built.slides[2]
    assert 500 < width < 1200 and 300 < height < 1200
    # the figure keeps the slide's shape (wider than tall), give or take title and colour bar
    assert width / height > 0.8 * slide.width / slide.height
    assert marked(pixels).sum() > 100  # the driving tiles are boxed


def test_no_driving_tiles_no_boxes(result: SlideClassification, tmp_path: Path) -> None:
    from dataclasses import replace

    bare = replace(result, driving_tiles=())
    with Image.open(write_classification_heatmap(bare, tmp_path)) as image:
        assert marked(np.asarray(image.convert("RGB"))).sum() == 0
    with Image.open(write_classification_heatmap(result, tmp_path / "boxed")) as image:
        assert marked(np.asarray(image.convert("RGB"))).sum() > 100


def test_odd_file_names_make_safe_png_names(result: SlideClassification, built: Built,
                                            tmp_path: Path) -> None:
    from dataclasses import replace

    odd = Path(shutil.copy(built.slides[2].path, tmp_path / "my slide (1).tif"))
    out = write_classification_heatmap(replace(result, path=str(odd)), tmp_path / "maps")
    assert out.name == "classify-my_slide_1_.png" and out.is_file()


def test_the_table_shows_the_decision_and_the_driving_tiles(
        result: SlideClassification) -> None:
    console = Console(record=True, width=200)
    print_classification(result, console)
    text = " ".join(console.export_text().split())  # the title wraps at the table's width
    assert "synth-s3-002.tif: normal, margin" in text
    for cls in ("adenocarcinoma", "normal", "polyp"):
        assert cls in text
    first = result.driving_tiles[0]
    assert f"{first.box[0]},{first.box[1]},{first.box[2]},{first.box[3]}" in text
    assert "tiles that drove 'normal'" in text and "abstain (" not in text


def test_the_table_says_abstain_with_the_best_guess(result: SlideClassification) -> None:
    from dataclasses import replace

    console = Console(record=True, width=200)
    print_classification(replace(result, min_margin=2.0), console)
    text = " ".join(console.export_text().split())  # the title wraps at the table's width
    assert "abstain (best 'normal')" in text and "abstains below 2" in text
