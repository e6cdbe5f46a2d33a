"""Synthetic whole slides with known regions: files, pyramid, pixels, truth and bad input."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.errors import InputError
from histoseek.evaluation.synthetic_slides import (
    BACKGROUND_RGB,
    CELL,
    SyntheticSlide,
    box_iou,
    load_truth,
    make_synthetic_slides,
    split_sources,
)
from histoseek.slides.reader import open_slide

REPO = Path(__file__).resolve().parents[2]
EBHI_LABELS = REPO.parent / "shared" / "data" / "ebhi-seg" / "labels.csv"
SPLIT = REPO / "configs" / "splits" / "ebhi-seg-seed0.json"
COLOURS = {"adenocarcinoma": (150, 40, 90), "normal": (60, 110, 170), "polyp": (90, 160, 80)}
TOL = 12  # JPEG and tile noise


def write_labels(root: Path, tiles_per_source: int = 12, header: tuple[str, ...] = (
        "path", "label", "source_id", "slide_id")) -> Path:
    """Three solid-ish classes, two sources each, as PNG tiles next to a labels.csv."""
    rows = []
    for c, (label, colour) in enumerate(COLOURS.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for s, i in itertools.product(range(2), range(tiles_per_source)):
            rng = np.random.default_rng(1000 * c + 100 * s + i)
            pixels = np.array(colour, np.int16) + rng.integers(-5, 6, (CELL, CELL, 3))
            name = f"{label}/src{s}_{i:02d}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(root / name, compress_level=1)
            rows.append([name, label, f"{label[:3]}-{s}", f"{label[:3]}-{s}-1"])
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return root / "labels.csv"


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_labels(tmp_path_factory.mktemp("tiles"))


@pytest.fixture(scope="module")
def made(labels: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, list[SyntheticSlide]]:
    out = tmp_path_factory.mktemp("synth")
    return out, make_synthetic_slides(labels, out, 3, seed=7, mpp=0.25)


def test_files_and_truth_are_written(made: tuple[Path, list[SyntheticSlide]]) -> None:
    out, slides = made
    assert len(slides) == 3 and (out / "truth.json").is_file()
    truth = json.loads((out / "truth.json").read_text())
    for slide, entry in zip(slides, truth["slides"], strict=True):
        assert slide.path.is_file() and (out / entry["path"]).resolve() == slide.path
        assert set(entry) >= {"path", "slide_id", "width", "height", "mpp", "dominant_label",
                              "regions"}
        assert entry["regions"][0].keys() >= {"label", "source_id", "box"}
        assert slide.width % CELL == 0 and slide.height % CELL == 0


def test_slide_opens_as_a_pyramid_with_mpp(made: tuple[Path, list[SyntheticSlide]]) -> None:
    for slide in made[1]:
        for backend in ("auto", "tiffslide"):
            with open_slide(slide.path, backend=backend) as opened:
                assert opened.level_count == 3
                assert opened.dimensions == (slide.width, slide.height)
                assert opened.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
                assert opened.mpp == pytest.approx(0.25) and opened.mpp_source == "file"


def test_pixels_match_the_truth(made: tuple[Path, list[SyntheticSlide]]) -> None:
    for slide in made[1]:
        with open_slide(slide.path) as opened:
            pixels = opened.read_region(0, 0, 0, (slide.width, slide.height))
        assert (pixels[:20, :20] == 255).all()  # glass margin at the corner
        expected = {}
        for region in slide.regions:
            x, y, w, h = region.box
            for cx, cy in itertools.product(range(x, x + w, CELL), range(y, y + h, CELL)):
                expected[cx // CELL, cy // CELL] = COLOURS[region.label]
        cols, rows = slide.width // CELL, slide.height // CELL
        for cx, cy in itertools.product(range(1, cols - 1), range(1, rows - 1)):
            cell = pixels[cy * CELL + 16:(cy + 1) * CELL - 16, cx * CELL + 16:(cx + 1) * CELL - 16]
            want = expected.get((cx, cy), BACKGROUND_RGB)
            assert np.abs(cell.mean((0, 1)) - want).max() < TOL, (slide.slide_id, cx, cy)
            assert cell.std((0, 1)).max() < 15  # one colour, not a mixture


def test_regions_are_valid_and_dominant_is_largest(
        made: tuple[Path, list[SyntheticSlide]], labels: Path) -> None:
    with open(labels, newline="") as fh:
        source_of = {r["path"]: (r["label"], r["source_id"]) for r in csv.DictReader(fh)}
    for slide in made[1]:
        assert 2 <= len(slide.regions) <= 4
        for a, b in itertools.combinations(slide.regions, 2):
            assert box_iou(a.box, b.box) == 0.0
        for r in slide.regions:
            x, y, w, h = r.box
            assert x >= CELL and y >= CELL and x + w <= slide.width - CELL
            assert y + h <= slide.height - CELL and w * h == len(r.tiles) * CELL * CELL
            assert {source_of[t] for t in r.tiles} == {(r.label, r.source_id)}
            assert len(set(r.tiles)) == len(r.tiles)
        areas = slide.label_areas()
        top = areas.pop(slide.dominant_label)
        assert all(top > a for a in areas.values())


def test_same_seed_same_truth_and_round_trip(
        labels: Path, made: tuple[Path, list[SyntheticSlide]], tmp_path: Path) -> None:
    out, slides = made
    again = make_synthetic_slides(labels, tmp_path, 2, seed=7, mpp=0.25, compression="zlib")
    first = json.loads((out / "truth.json").read_text())["slides"]
    assert json.loads((tmp_path / "truth.json").read_text())["slides"] == first[:2]
    assert [s.regions for s in again] == [s.regions for s in slides[:2]]
    other = make_synthetic_slides(labels, tmp_path / "b", 2, seed=8)
    assert [s.regions for s in other] != [s.regions for s in again]
    assert load_truth(out / "truth.json") == slides
    assert all(s.path.is_absolute() for s in load_truth(out / "truth.json"))


def test_box_iou() -> None:
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [10, 0, 10, 10]) == 0.0  # touching edges
    assert box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [2, 2, 5, 5]) == pytest.approx(25 / 100)
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_bad_input_names_the_file(tmp_path: Path) -> None:
    bad = write_labels(tmp_path / "bad", tiles_per_source=1, header=("file", "label", "case"))
    with pytest.raises(InputError, match=r"labels\.csv.*source_id"):
        make_synthetic_slides(bad, tmp_path / "out", 1)
    with pytest.raises(InputError, match="not found"):
        make_synthetic_slides(tmp_path / "nope.csv", tmp_path / "out", 1)
    few = write_labels(tmp_path / "few", tiles_per_source=3)
    with pytest.raises(InputError, match=r"labels\.csv: too few tiles"):
        make_synthetic_slides(few, tmp_path / "out", 1)
    with pytest.raises(InputError, match="no tiles left"):
        make_synthetic_slides(few, tmp_path / "out", 1, sources={"unknown"})
    with pytest.raises(InputError, match="test_sources"):
        split_sources(bad)


@pytest.mark.shared
def test_real_ebhi_slides_use_only_test_sources(tmp_path: Path) -> None:
    if not EBHI_LABELS.is_file():
        pytest.skip("../shared/data/ebhi-seg/labels.csv is not present")
    test_sources = set(json.loads(SPLIT.read_text())["test_sources"])
    slides = make_synthetic_slides(EBHI_LABELS, tmp_path, 2, seed=0,
                                   sources=split_sources(SPLIT, "test"))
    assert len(slides) == 2
    for slide in slides:
        assert {r.source_id for r in slide.regions} <= test_sources
        with open_slide(slide.path) as opened:
            assert opened.level_count == 3 and opened.mpp == pytest.approx(0.5)
