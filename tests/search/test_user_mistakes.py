"""Mistakes users make with queries and library settings get a clear error, not a quiet answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.errors import InputError, LibraryMismatchError, MissingMppError
from histoseek.library import Library
from histoseek.slides.tiling import MIN_IMAGE_SIDE_PX


@pytest.fixture
def lib(tmp_path: Path, tile_folder: Path) -> Library:
    library = Library.create(tmp_path / "lib", encoder="classic")
    library.add(tile_folder, progress=False)
    yield library
    library.close()


def _query(tile_folder: Path) -> Path:
    return tile_folder / "pink" / "pink_0.png"


def test_unknown_filter_keys_name_the_key_and_the_fields(lib: Library,
                                                         tile_folder: Path) -> None:
    for option in ("where", "exclude"):
        with pytest.raises(InputError, match=r"unknown filter key 'lable'.*fields that exist: "
                                             r"kind, label, name, path"):
            lib.search(image=_query(tile_folder), **{option: {"lable": "pink"}})
    assert lib.search(image=_query(tile_folder), where={"label": "pink"}, k=20)  # real keys work


def test_a_metadata_key_that_exists_is_a_valid_filter(tmp_path: Path, tile_folder: Path) -> None:
    with Library.create(tmp_path / "m", encoder="classic") as lib:
        lib.add(tile_folder / "pink", metadata={"stain": "HE"}, progress=False)
        lib.add(tile_folder / "pale", progress=False)
        hits = lib.search(image=_query(tile_folder), exclude={"stain": "HE"}, k=20)
        assert {h.label for h in hits} == {None} and len(hits) == 4


def test_bad_target_and_group_on_reports_are_refused(lib: Library, tile_folder: Path) -> None:
    with pytest.raises(InputError, match="target 'foo' is not one of tiles, slides, reports"):
        lib.search(image=_query(tile_folder), target="foo")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="group applies to tile hits"):
        lib.search(text="pink", target="reports", group=True)


def test_group_k_counts_sources_and_plain_images_are_not_slides(lib: Library,
                                                                tile_folder: Path) -> None:
    grouped = lib.search(image=_query(tile_folder), group=True, k=5)
    assert len(grouped) == 5 and len({h.path for h in grouped}) == 5
    ranked = lib.search(image=_query(tile_folder), target="slides", k=3)
    assert [h.kind for h in ranked] == ["image"] * 3
    assert all(h.source_kind == "image" for h in ranked)


def test_scores_never_exceed_one(lib: Library, tile_folder: Path) -> None:
    top = lib.search(image=_query(tile_folder), k=1)[0]
    assert top.score <= 1.0 and top.to_dict()["score"] <= 1.0


def test_tiny_query_images_are_refused(lib: Library) -> None:
    tiny = np.full((MIN_IMAGE_SIDE_PX - 1, 64, 3), 200, np.uint8)
    with pytest.raises(InputError, match=f"needs at least {MIN_IMAGE_SIDE_PX} px"):
        lib.search(image=tiny)


def test_tiny_images_are_not_indexed(tmp_path: Path) -> None:
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        report = lib.add(tmp_path / "dot.png", progress=False)
        assert not report.added and "image is 1x1 px" in report.failures[0].problem


def test_region_on_a_slide_without_mpp_asks_for_it_like_slide_queries(
        lib: Library, pyramid_tiff_no_mpp: Path) -> None:
    for query in ({"region": (pyramid_tiff_no_mpp, 0, 0, 512, 512)},
                  {"slide": pyramid_tiff_no_mpp}):
        with pytest.raises(MissingMppError, match="no microns-per-pixel"):
            lib.search(**query)  # type: ignore[arg-type]
    assert lib.search(region=(pyramid_tiff_no_mpp, 0, 0, 512, 512), mpp=0.5, k=1)


def test_other_settings_on_an_existing_library_are_refused(lib: Library,
                                                           tile_folder: Path) -> None:
    lib.close()
    with pytest.raises(LibraryMismatchError, match=r"built with tile_px 224.*asks for tile_px "
                                                   r"256"):
        Library.open_or_create(lib.root, tiling={"tile_px": 256})
    with pytest.raises(LibraryMismatchError, match=r"encoder 'classic'.*encoder 'histoseek"):
        Library.open_or_create(lib.root, encoder="histoseek-base")
    with Library.open_or_create(lib.root, tiling={"tile_px": 224}, encoder="classic") as same:
        assert same.info()["tiles"] == 12  # the same settings, given again, are fine


def test_an_empty_library_takes_new_settings(tmp_path: Path, tile_folder: Path) -> None:
    Library.create(tmp_path / "lib", encoder="classic").close()  # e.g. after a typo'd path
    with Library.open_or_create(tmp_path / "lib", encoder="resnet18-random",
                                tiling={"tile_px": 128}) as lib:
        assert lib.manifest.encoder_name == "resnet18-random" and lib.tiling.tile_px == 128
        assert lib.add(tile_folder / "pink", progress=False).tiles == 4


def test_print_lib_says_what_it_holds(lib: Library) -> None:
    text = repr(lib)
    assert "12 sources (0 slides, 12 images), 12 tiles, 0 reports" in text
    assert "encoder classic" in text and "224 px at 0.5 mpp" in text
