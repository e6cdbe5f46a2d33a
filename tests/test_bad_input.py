"""Bad input never crashes histoseek: a typed error naming the file and the problem.

Each bad file is checked three ways: through the API (``open_slide`` + ``tile_slide`` raise a
``HistoseekError`` subclass whose message names the file), in a batch ingest (the file is
skipped and listed, the good files are indexed, the library stays consistent and re-opens),
and through the CLI (one line naming the file, non-zero exit, no traceback).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

import histoseek.slides.reader as reader
from histoseek.cli import app
from histoseek.errors import (
    EmptyQueryError,
    HistoseekError,
    InputError,
    LibraryError,
    LibraryMismatchError,
    MissingMppError,
    NoTextTowerError,
    SlideReadError,
    UnknownEncoderError,
    UnsupportedImageError,
)
from histoseek.ingest.results import IngestReport
from histoseek.library import Library
from histoseek.search.arguments import parse_filters
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import TilingConfig, tile_slide
from reliability.bad_corpus import sparse_tiff, write_aperio_svs
from synthetic_images import he_like_pixels, write_pyramid_tiff

RNG_PIXELS = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)


# -- the bad files ------------------------------------------------------------------------------

def _corrupt_svs(folder: Path) -> Path:
    path = folder / "corrupt.svs"
    path.write_bytes(np.random.default_rng(0).bytes(20_000))
    return path


def _truncated_tif(folder: Path) -> Path:
    full = write_pyramid_tiff(folder / "full.tmp", he_like_pixels(768, 1024), mpp=0.25)
    data = full.read_bytes()
    full.unlink()
    path = folder / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    return path


def _zero_byte(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def _png_named_jpg(folder: Path) -> Path:
    path = folder / "really_png.jpg"
    Image.fromarray(RNG_PIXELS).save(path, format="PNG")
    return path


def _jpeg_named_svs(folder: Path) -> Path:
    path = folder / "really_jpeg.svs"
    Image.fromarray(RNG_PIXELS).save(path, format="JPEG")
    return path


def _docx(folder: Path) -> Path:
    path = folder / "notes.docx"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    return path


def _grayscale(folder: Path) -> Path:
    path = folder / "gray.png"
    Image.fromarray(RNG_PIXELS[..., 0]).save(path)
    return path


def _png16(folder: Path) -> Path:
    path = folder / "deep.png"
    Image.fromarray(RNG_PIXELS[..., 0].astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode == "I;16"
    return path


def _tiff16_rgb(folder: Path) -> Path:
    path = folder / "deep_rgb.tif"
    tifffile.imwrite(path, RNG_PIXELS.astype(np.uint16) * 257, photometric="rgb")
    return path


def _tiff16_gray(folder: Path) -> Path:
    path = folder / "deep_gray.tif"
    tifffile.imwrite(path, RNG_PIXELS[..., 0].astype(np.uint16) * 257)
    return path


def _cmyk_jpeg(folder: Path) -> Path:
    path = folder / "print.jpg"
    Image.fromarray(RNG_PIXELS).convert("CMYK").save(path)
    return path


def _plain(name: str, side: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        Image.fromarray(he_like_pixels(side, side)).save(path)
        return path
    return make


def _truncated_jpeg(folder: Path) -> Path:
    path = folder / "cut.jpg"
    Image.fromarray(he_like_pixels(256, 256)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_png(folder: Path) -> Path:
    path = folder / "cut.png"
    Image.fromarray(he_like_pixels(128, 128)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _pyramid_no_mpp(folder: Path) -> Path:
    return write_pyramid_tiff(folder / "scale_unknown.tif", he_like_pixels(512, 512), None, 2)


def _svs_with_mpp(name: str, mpp: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        return write_aperio_svs(folder / name, he_like_pixels(512, 512), mpp, levels=2)
    return make


def _truncated_svs(folder: Path) -> Path:
    full = write_aperio_svs(folder / "full.tmp", he_like_pixels(768, 1024), "0.25")
    data = full.read_bytes()
    full.unlink()
    path = folder / "truncated.svs"
    path.write_bytes(data[: len(data) * 9 // 10])  # OpenSlide declines; tifffile would read on
    return path


def _huge_sparse_tiff(folder: Path) -> Path:
    path = folder / "huge_sparse.tif"
    path.write_bytes(sparse_tiff(side=100_000))
    return path


def _small_plain_limit(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(reader, "MAX_PLAIN_IMAGE_PIXELS", 300 * 300)


def _small_pillow_limit(mp: pytest.MonkeyPatch) -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; good tiles are 224^2
    mp.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)


@dataclass(frozen=True)
class BadFile:
    id: str
    make: Callable[[Path], Path]
    error: type[HistoseekError]
    problem: str  # regex the message must match, beside the file's path
    discoverable: bool = True  # found when its folder is indexed (supported suffix)
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


BAD_FILES = [
    BadFile("corrupt-svs", _corrupt_svs, SlideReadError, r"corrupt or unsupported"),
    BadFile("truncated-tif", _truncated_tif, SlideReadError, r"corrupt or truncated"),
    BadFile("zero-byte", _zero_byte, SlideReadError, r"empty \(0 bytes\)"),
    BadFile("png-named-jpg", _png_named_jpg, SlideReadError,
            r"wrong extension: named \.jpg but the content is PNG"),
    BadFile("jpeg-named-svs", _jpeg_named_svs, SlideReadError,
            r"wrong extension: named \.svs but the content is a plain JPEG"),
    BadFile("unknown-extension", _docx, SlideReadError, r"unsupported file type '\.docx'",
            discoverable=False),
    BadFile("grayscale", _grayscale, UnsupportedImageError, r"mode L is not RGB"),
    BadFile("16-bit-png", _png16, UnsupportedImageError, r"I;16 image has more than 8 bits"),
    BadFile("16-bit-rgb-tiff", _tiff16_rgb, UnsupportedImageError,
            r"16-bit TIFF has more than 8 bits"),
    BadFile("16-bit-gray-tiff", _tiff16_gray, UnsupportedImageError, r"more than 8 bits"),
    BadFile("cmyk-jpeg", _cmyk_jpeg, UnsupportedImageError, r"mode CMYK is not RGB"),
    BadFile("huge-plain-image", _plain("huge.png", 400), UnsupportedImageError,
            r"400x400 px is too large to load whole", patch=_small_plain_limit),
    BadFile("decompression-bomb", _plain("bomb.png", 400), UnsupportedImageError,
            r"too large to load whole.*decompression bomb", patch=_small_pillow_limit),
    BadFile("decompression-bomb-warning", _plain("bomb_warn.png", 300), UnsupportedImageError,
            r"too large to load whole.*decompression bomb", patch=_small_pillow_limit),
    BadFile("truncated-jpeg", _truncated_jpeg, SlideReadError, r"truncated"),
    BadFile("truncated-png", _truncated_png, SlideReadError, r"truncated"),
    BadFile("large-plain-without-mpp", _plain("no_scale.png", 1000), MissingMppError,
            r"no microns-per-pixel.*--mpp"),
    BadFile("pyramid-without-mpp", _pyramid_no_mpp, MissingMppError,
            r"no microns-per-pixel.*--mpp"),
    BadFile("svs-mpp-inf", _svs_with_mpp("mpp_inf.svs", "inf"), MissingMppError,
            r"implausible microns-per-pixel \(inf;.*--mpp"),
    BadFile("svs-mpp-zero", _svs_with_mpp("mpp_zero.svs", "0"), MissingMppError,
            r"implausible microns-per-pixel \(0;.*--mpp"),
    BadFile("truncated-svs", _truncated_svs, SlideReadError, r"corrupt or truncated TIFF"),
    BadFile("100k-sparse-tiff", _huge_sparse_tiff, UnsupportedImageError,
            r"smallest level is 100000x100000 px, too large"),
]


def _ids(case: BadFile) -> str:
    return case.id


# -- helpers ------------------------------------------------------------------------------------

def make_good(root: Path) -> list[Path]:
    """``root/a/good_a.png`` and ``root/b/good_b.png``: two distinct 224 px tiles."""
    paths = []
    for name, colour in (("a", (225, 140, 190)), ("b", (120, 70, 160))):
        (root / name).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(paths))
        pixels = np.clip(np.array(colour) + rng.integers(-15, 15, (224, 224, 3)), 0, 255)
        path = root / name / f"good_{name}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(path.resolve())
    return paths


def assert_consistent(lib: Library, good: list[Path]) -> None:
    """Only the good files are in, and searching still finds them."""
    info = lib.info()
    assert (info["sources"], info["tiles"], info["images"], info["slides"]) == (2, 2, 2, 0)
    assert info["labels"] == {"a": 1, "b": 1}
    hits = lib.search(image=good[0], k=5)
    assert [h.path for h in hits][:1] == [str(good[0])]
    assert {h.path for h in hits} == {str(p) for p in good}
    assert hits[0].score > 0.99


def assert_listed(report: IngestReport, bad: Path, problem: str) -> None:
    assert len(report.failures) == 1, report.failures
    failure = report.failures[0]
    assert failure.path == str(bad)
    assert str(bad) in failure.problem
    assert re.search(problem, failure.problem), failure.problem


def invoke(*args: object) -> object:
    """Run the CLI; a HistoseekError must never surface as an exception or traceback."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"CLI raised {result.exception!r}")
    assert "Traceback" not in result.output
    return result


def one_line_naming(text: str, name: str, problem: str) -> str:
    lines = [line for line in text.splitlines() if name in line]
    assert len(lines) == 1, text
    assert re.search(problem, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def good_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "batch"
    return root, make_good(root)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], Path]:
    """A small classic library of the good tiles, and a 0.25-mpp slide for region queries."""
    base = tmp_path_factory.mktemp("built")
    good = make_good(base / "tiles")
    with Library.create(base / "lib", encoder="classic") as lib:
        lib.add([base / "tiles"], progress=False)
    slide = write_pyramid_tiff(base / "slide.tif", he_like_pixels(768, 1024), mpp=0.25)
    return base / "lib", good, slide


# -- bad files: API, batch, CLI -----------------------------------------------------------------

@pytest.mark.parametrize("case", BAD_FILES, ids=_ids)
def test_bad_file_api_raises_typed_error(case: BadFile, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if case.patch:
        case.patch(monkeypatch)
    path = case.make(tmp_path)
    with pytest.raises(case.error) as info, open_slide(path) as slide:
        tile_slide(slide, TilingConfig())
    assert isinstance(info.value, HistoseekError)
    message = str(info.value)
    assert str(path) in message
    assert re.search(case.problem, message), message


@pytest.mark.parametrize("case", BAD_FILES, ids=_ids)
def test_bad_file_skipped_in_batch(case: BadFile, good_folder: tuple[Path, list[Path]],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if case.patch:
        case.patch(monkeypatch)
    root, good = good_folder
    bad = case.make(root / "a").resolve()
    paths = [root] if case.discoverable else [root, bad]
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        report = lib.add(paths, progress=False)
        assert_listed(report, bad, case.problem)
        assert sorted(report.added) == sorted(str(p) for p in good)
        assert report.tiles == 2
        assert_consistent(lib, good)
    with Library.open(tmp_path / "lib") as lib:
        assert_consistent(lib, good)
        again = lib.add(paths, progress=False)  # still bad, good ones not re-added
        assert again.added == [] and len(again.unchanged) == 2
        assert_listed(again, bad, case.problem)
        assert_consistent(lib, good)


@pytest.mark.parametrize("case", BAD_FILES, ids=_ids)
def test_bad_file_cli_one_line(case: BadFile, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    if case.patch:
        case.patch(monkeypatch)
    bad = case.make(tmp_path).resolve()
    result = invoke("index", tmp_path / "lib", bad)
    assert result.exit_code == 1
    line = one_line_naming(result.stderr, str(bad), case.problem)
    assert line.startswith("skipped:")
    assert "0 files added" in result.stdout and "1 failed" in result.stdout


def test_file_name_with_brackets_is_printed_verbatim(tmp_path: Path) -> None:
    bad = tmp_path / "slide[ab].svs"
    shutil.copy(_corrupt_svs(tmp_path), bad)
    result = invoke("index", tmp_path / "lib", bad.resolve())
    assert result.exit_code == 1
    one_line_naming(result.stderr, str(bad.resolve()), r"corrupt or unsupported")
    result = invoke("search", tmp_path / "lib", "--region", f"{bad}:0,0,10,10")
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(bad), r"^error: .*corrupt or unsupported")


def test_nonexistent_path(good_folder: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, good = good_folder
    missing = tmp_path / "nowhere" / "slide.svs"
    with pytest.raises(SlideReadError, match=re.escape(f"{missing}: no such file")):
        open_slide(missing)
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        report = lib.add([root, missing], progress=False)
        assert_listed(report, missing, r"no such file or folder")
        assert_consistent(lib, good)
    result = invoke("index", tmp_path / "lib", missing)  # nothing else to do: an error
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(missing), r"^error: .*no such file or folder")
    result = invoke("index", tmp_path / "lib", missing, root)  # with work to do: a warning
    assert result.exit_code == 1
    one_line_naming(result.stderr, str(missing), r"^skipped: .*no such file or folder")
    result = invoke("index", tmp_path / "new-lib", missing)  # a typo creates no library
    assert result.exit_code == 2 and not (tmp_path / "new-lib").exists()


def test_unreadable_folder(good_folder: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, good = good_folder
    if os.geteuid() == 0:
        # root reads any folder whatever its mode: check a folder that is not there instead
        folder, problem = tmp_path / "gone", r"no such file or folder"
    else:
        folder, problem = tmp_path / "locked", r"permission denied"
        make_good(folder)
        folder.chmod(0)
    try:
        with Library.create(tmp_path / "lib", encoder="classic") as lib:
            report = lib.add([root, folder], progress=False)
            assert_listed(report, folder, problem)
            assert_consistent(lib, good)
        result = invoke("index", tmp_path / "lib", folder, root)
        assert result.exit_code == 1
        one_line_naming(result.stderr, str(folder), problem)
    finally:
        if folder.exists():
            folder.chmod(0o755)


def test_negative_mpp_is_refused(tmp_path: Path) -> None:
    path = _plain("tile.png", 224)(tmp_path)
    with pytest.raises(SlideReadError, match=r"tile\.png: --mpp must be positive"):
        open_slide(path, mpp=-0.5)
    result = invoke("index", tmp_path / "lib", path.resolve(), "--mpp", "-0.5")
    assert result.exit_code == 1
    one_line_naming(result.stderr, str(path.resolve()), r"--mpp must be positive")


def test_duplicate_content_in_one_batch_is_added_once(tmp_path: Path) -> None:
    root = tmp_path / "dups"
    good = make_good(root)
    copy = root / "b" / "copy_of_a.png"
    shutil.copy(good[0], copy)
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        report = lib.add([root], progress=False)
        assert report.failures == []
        assert len(report.added) == 2 and report.unchanged == [str(copy.resolve())]
        assert_consistent(lib, good)


# -- bad libraries ------------------------------------------------------------------------------

def test_library_opened_with_another_encoder(built: tuple[Path, list[Path], Path]) -> None:
    lib_dir, good, _ = built
    with pytest.raises(LibraryMismatchError) as info:
        Library.open_or_create(lib_dir, encoder="minilm")
    message = str(info.value)
    assert str(lib_dir) in message and "'classic'" in message and "'minilm'" in message
    with Library.open(lib_dir) as lib:
        assert_consistent(lib, good)
    result = invoke("index", lib_dir, "--encoder", "minilm")
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(lib_dir), r"^error: .*built with encoder 'classic'")


def test_folder_that_is_not_a_library(tmp_path: Path) -> None:
    folder = tmp_path / "plain_folder"
    folder.mkdir()
    with pytest.raises(LibraryError, match=re.escape(f"{folder}: no histoseek library here")):
        Library.open(folder)
    junk = tmp_path / "junk_lib"
    junk.mkdir()
    (junk / "library.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a histoseek library database"):
        Library.open(junk)
    for args in (("info", folder), ("search", folder, "--text", "tumour"),
                 ("remove", folder, "x.png"), ("info", junk)):
        result = invoke(*args)
        assert result.exit_code == 2
        one_line_naming(result.stderr, str(args[1]), r"^error: .*library")


def test_create_over_existing_library_and_unknown_encoder(
        built: tuple[Path, list[Path], Path], tmp_path: Path) -> None:
    lib_dir, _, _ = built
    with pytest.raises(LibraryError, match="a library exists here already"):
        Library.create(lib_dir, encoder="classic")
    with pytest.raises(UnknownEncoderError) as info:
        Library.create(tmp_path / "lib", encoder="no-such-encoder")
    assert "no-such-encoder" in str(info.value) and "classic" in str(info.value)
    result = invoke("index", tmp_path / "lib2", "--encoder", "no-such-encoder")
    assert result.exit_code == 2
    one_line_naming(result.stderr, "no-such-encoder", r"^error: unknown encoder.*classic")
    # the failed attempt leaves nothing half-made: the folder still becomes a library
    result = invoke("index", tmp_path / "lib2")
    assert result.exit_code == 0
    with Library.open(tmp_path / "lib2") as lib:
        assert lib.info()["sources"] == 0


def test_remove_unknown_source(built: tuple[Path, list[Path], Path]) -> None:
    lib_dir, _, _ = built
    with Library.open(lib_dir) as lib, pytest.raises(InputError, match=r"nothing\.png: no such"):
        lib.remove("nothing.png")
    result = invoke("remove", lib_dir, "nothing.png")
    assert result.exit_code == 2
    one_line_naming(result.stderr, "nothing.png", r"^error: nothing\.png: no such source")


# -- bad queries --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_query(built: tuple[Path, list[Path], Path], text: str) -> None:
    lib_dir, _, _ = built
    with Library.open(lib_dir) as lib, pytest.raises(EmptyQueryError, match="text query is empty"):
        lib.search(text=text)
    result = invoke("search", lib_dir, "--text", text)
    assert result.exit_code == 2
    one_line_naming(result.stderr, "error:", r"text query is empty")


def test_text_query_with_classic_has_no_text_tower(built: tuple[Path, list[Path], Path]) -> None:
    lib_dir, good, _ = built
    with Library.open(lib_dir) as lib:
        with pytest.raises(NoTextTowerError, match="'classic' has no text tower"):
            lib.search(text="invasive carcinoma", target="tiles")
        with pytest.raises(NoTextTowerError, match="'classic' has no text tower"):
            lib.search(image=good[0], target="reports")
    result = invoke("search", lib_dir, "--text", "invasive carcinoma", "--target", "tiles")
    assert result.exit_code == 2
    one_line_naming(result.stderr, "error:", r"'classic' has no text tower")


def test_k_zero(built: tuple[Path, list[Path], Path]) -> None:
    lib_dir, good, _ = built
    with Library.open(lib_dir) as lib, pytest.raises(InputError, match="k must be at least 1"):
        lib.search(image=good[0], k=0)
    result = invoke("search", lib_dir, "--image", good[0], "-k", "0")
    assert result.exit_code == 2
    one_line_naming(result.stderr, "error:", r"k must be at least 1, got 0")


@pytest.mark.parametrize("flag,pair", [("--where", "label"), ("--exclude", "=pink")])
def test_filter_without_key_value(built: tuple[Path, list[Path], Path], flag: str,
                                  pair: str) -> None:
    lib_dir, good, _ = built
    with pytest.raises(InputError, match=f"filter '{pair}' must look like key=value"):
        parse_filters([pair])
    result = invoke("search", lib_dir, "--image", good[0], flag, pair)
    assert result.exit_code == 2
    one_line_naming(result.stderr, f"'{pair}'", r"^error: filter .* must look like key=value")


@pytest.mark.parametrize("box", ["1,2,3", "a,b,c,d", "1,2,0,5", ""])
def test_malformed_region(built: tuple[Path, list[Path], Path], box: str) -> None:
    lib_dir, _, slide = built
    spec = f"{slide}:{box}" if box else str(slide)
    with Library.open(lib_dir) as lib, pytest.raises(InputError) as info:
        lib.search(region=spec)
    assert spec in str(info.value) and "FILE:x,y,w,h" in str(info.value)
    result = invoke("search", lib_dir, "--region", spec)
    assert result.exit_code == 2
    one_line_naming(result.stderr, spec, r"^error: region .* must look like FILE:x,y,w,h")


def test_region_outside_the_slide(built: tuple[Path, list[Path], Path]) -> None:
    lib_dir, _, slide = built
    spec = f"{slide}:900,700,500,500"
    with Library.open(lib_dir) as lib, pytest.raises(InputError) as info:
        lib.search(region=spec)
    message = str(info.value)
    assert str(slide) in message and "outside the slide (1024x768 px)" in message
    result = invoke("search", lib_dir, "--region", spec)
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(slide), r"^error: .*outside the slide")
    with Library.open(lib_dir) as lib:  # the same box inside the slide is a fine query
        assert len(lib.search(region=f"{slide}:100,100,500,500", k=2)) == 2


def test_query_image_that_is_bad(built: tuple[Path, list[Path], Path], tmp_path: Path) -> None:
    lib_dir, _, _ = built
    bad = _cmyk_jpeg(tmp_path)
    with Library.open(lib_dir) as lib, pytest.raises(UnsupportedImageError, match="CMYK"):
        lib.search(image=bad)
    result = invoke("search", lib_dir, "--image", bad)
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(bad), r"^error: .*mode CMYK is not RGB")


# -- bad CSVs -----------------------------------------------------------------------------------

def test_labels_csv_without_path_column(good_folder: tuple[Path, list[Path]],
                                        tmp_path: Path) -> None:
    root, _ = good_folder
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ngood_a.png,tumour\n")
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        with pytest.raises(InputError) as info:
            lib.add([root], labels=labels, progress=False)
        assert str(labels) in str(info.value) and "lacks column(s) path" in str(info.value)
        assert lib.info()["sources"] == 0
    result = invoke("index", tmp_path / "lib", root, "--labels", labels)
    assert result.exit_code == 2
    one_line_naming(result.stderr, str(labels), r"^error: .*lacks column\(s\) path")


def test_report_with_empty_text_is_skipped_and_listed(built: tuple[Path, list[Path], Path],
                                                      tmp_path: Path) -> None:
    lib_dir = tmp_path / "lib"
    shutil.copytree(built[0], lib_dir)
    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,text,label\n"
                       "r1,invasive ductal carcinoma with necrosis,tumour\n"
                       "r2,,tumour\n"
                       "r3,   ,normal\n"
                       "r4,normal colonic mucosa without dysplasia,normal\n")
    with Library.open(lib_dir) as lib:
        report = lib.add_reports(reports)
        assert sorted(report.added) == ["r1", "r4"]
        assert sorted((f.path, f.problem) for f in report.failures) == [
            ("r2", "report text is empty"), ("r3", "report text is empty")]
        assert lib.info()["reports"] == 2
        hits = lib.search(text="carcinoma with necrosis", k=2)
        assert [h.report_id for h in hits] == ["r1", "r4"]
    with Library.open(lib_dir) as lib:
        assert lib.info()["reports"] == 2 and lib.info()["sources"] == 2
    result = invoke("index", lib_dir, "--reports", reports)
    assert result.exit_code == 1
    one_line_naming(result.stderr, "r2", r"skipped report r2: report text is empty")
    one_line_naming(result.stderr, "r3", r"skipped report r3: report text is empty")
    assert "0 reports added, 2 already indexed, 2 failed" in result.stdout


def test_reports_csv_without_text_column(built: tuple[Path, list[Path], Path],
                                         tmp_path: Path) -> None:
    reports = tmp_path / "reports.csv"
    reports.write_text("report_id,body\nr1,carcinoma\n")
    with Library.open(built[0]) as lib, pytest.raises(InputError) as info:
        lib.add_reports(reports)
    assert str(reports) in str(info.value) and "lacks column(s) text" in str(info.value)
