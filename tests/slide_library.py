"""A small library of synthetic slides indexed with the fast fake two-tower encoder.

Built once per test session (the first test module that asks builds it; later ones reuse the
folder) and shared, read-only, by the classification, picture, report-link and slide-eval
tests; a test that changes a library works on a copy (``copy_library``).

Four slides (``make_synthetic_slides`` seed 3, 224 px cells at 0.5 mpp) from the solid-colour
tiles of ``evaluation.test_synthetic_slides``; each is indexed with a labels CSV that gives it
its dominant class as ``label``, the source of its largest dominant-class region as
``source_id`` (the slide's "case") and its ``slide_id``, as ``slide_eval.index_synthetic``
does. The encoder is ``FakeHist`` of ``search.test_slide_search``: an image is its colour
histogram, a text the histogram of the class colours it names, so a class name and a tile of
that class meet in one space. It serves as both the image and the report-text encoder.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluation.test_synthetic_slides import COLOURS, write_labels
from histoseek.evaluation.synthetic_slides import SyntheticSlide, make_synthetic_slides
from histoseek.library import Library
from search.test_slide_search import FakeHist

__all__ = ["COLOURS", "Built", "FakeHist", "copy_library", "synthetic_library", "use_fake_encoder"]


@dataclass(frozen=True)
class Built:
    lib: Path  # the library folder (do not change it: copy it first)
    slides: list[SyntheticSlide]
    tiles: Path  # the solid-colour tiles: ``tiles/<class>/srcS_II.png`` and ``labels.csv``
    labels: Path  # the slides' labels CSV


_BUILT: dict[str, Built] = {}


def largest_region_source(slide: SyntheticSlide) -> str:
    """The source of the slide's largest region of its dominant class."""
    return max((r for r in slide.regions if r.label == slide.dominant_label),
               key=lambda r: r.area).source_id


def synthetic_library(factory: pytest.TempPathFactory) -> Built:
    if "lib" not in _BUILT:
        root = factory.mktemp("synthetic-library")
        tile_labels = write_labels(root / "tiles")
        slides = make_synthetic_slides(tile_labels, root / "slides", 4, seed=3,
                                       compression="zlib")
        dominant = [s.dominant_label for s in slides]
        assert dominant == ["adenocarcinoma", "adenocarcinoma", "normal", "adenocarcinoma"], (
            "the synthetic slides changed; update the tests")
        labels = root / "slide-labels.csv"
        with open(labels, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "source_id", "slide_id"])
            for s in slides:
                writer.writerow([s.path, s.dominant_label, largest_region_source(s), s.slide_id])
        with Library.create(root / "lib", encoder=FakeHist(), text_encoder=FakeHist()) as lib:
            lib.add([s.path for s in slides], labels=labels, progress=False)
        _BUILT["lib"] = Built(root / "lib", slides, root / "tiles", labels)
    return _BUILT["lib"]


@pytest.fixture(scope="module", name="built")
def built_fixture(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The shared library (import this fixture and ``lib_fixture`` into a test module)."""
    return synthetic_library(tmp_path_factory)


@pytest.fixture(name="lib")
def lib_fixture(built: Built) -> Iterator[Library]:
    """The shared library opened read-only with the fake encoder."""
    library = Library.open(built.lib, encoder=FakeHist())
    yield library
    library.close()


def copy_library(built: Built, dest: Path) -> Path:
    return Path(shutil.copytree(built.lib, dest))


def use_fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoders built by name (``Library.open`` without one, the CLI's ``--encoder``) give
    ``FakeHist`` for ``fake-hist``."""
    import histoseek.encoders.registry
    import histoseek.library

    real = histoseek.encoders.registry.create_encoder

    def create(name: str, *args: object, **kwargs: object) -> object:
        return FakeHist() if name == "fake-hist" else real(name, *args, **kwargs)

    monkeypatch.setattr(histoseek.library, "create_encoder", create)
    monkeypatch.setattr(histoseek.encoders.registry, "create_encoder", create)
