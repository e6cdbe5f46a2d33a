"""A small library for the service tests: two synthetic pyramidal slides, one plain image and
two reports, indexed with the fast fake two-tower encoder of the slide-search tests.

Nothing here imports FastAPI: without the ``serve`` extra every test file here skips itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluation.test_synthetic_slides import write_labels
from histoseek.evaluation.synthetic_slides import make_synthetic_slides
from histoseek.library import Library
from search.test_slide_search import FakeHist


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from service.helpers import REPORTS, Built

    root = tmp_path_factory.mktemp("service-lib")
    labels = write_labels(root / "tiles")
    slides = make_synthetic_slides(labels, root / "slides", 2, seed=3, compression="zlib")
    image = labels.parent / "polyp" / "src0_00.png"
    with Library.create(root / "lib", encoder=FakeHist(), text_encoder=FakeHist()) as lib:
        lib.add([s.path for s in slides], progress=False)
        lib.add([image], mpp=0.5, progress=False)
        lib.add_reports(REPORTS)
    return Built(root / "lib", [s.path for s in slides], image,
                 labels.parent / "normal" / "src1_03.png", labels.parent)


@pytest.fixture
def lib_copy(built: Any, tmp_path: Path) -> Path:
    """A private copy of the library, for tests that write."""
    return Path(shutil.copytree(built.library, tmp_path / "lib"))


@pytest.fixture(scope="module")
def client(built: Any) -> Iterator[Any]:
    """A read-only service over the shared library (tests using it must not write)."""
    from service.helpers import make_client

    with make_client(built.library) as c:
        yield c


@pytest.fixture
def writable(lib_copy: Path, tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A service over a private library copy, with ``tmp_path / 'root'`` as its --root."""
    from service.helpers import make_client

    root = tmp_path / "root"
    root.mkdir()
    with make_client(lib_copy, roots=(root,)) as c:
        yield c, root
