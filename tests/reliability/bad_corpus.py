"""A corpus of bad inputs (issue 14): bad files, CSVs, names, query images and requests.

``write_corpus(folder)`` writes every case of ``SPECS`` under ``folder`` and returns them as
``Case``s: a file for ``histoseek index``, a reports or labels CSV, a query image for
``histoseek search --image``, or a request to the HTTP service, each with what a correct
outcome is and what its message must name. ``bad_outcomes.py`` judges a run of each;
``tests/reliability/test_bad_inputs.py`` runs the corpus in-process,
``benchmarks/bad_inputs.py`` in subprocesses.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
from PIL import Image

from synthetic_images import he_like_pixels, write_pyramid_tiff

Kind = Literal["index", "reports", "labels", "query", "service"]
Expect = Literal["refuse", "accept", "either"]
LIB = "{lib}"  # stands for the library folder in a case's command line
TOKEN = "bad-inputs-token-0123456789"
TILE = he_like_pixels(256, 256, seed=5)  # a good tile the base library does not hold


@dataclass(frozen=True)
class Request:
    """One HTTP request to the service (``files``: name → (filename, bytes, content type))."""

    method: str
    url: str
    json: Any = None
    content: bytes | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Case:
    """One bad input: what to run, what a correct outcome is, what its message must name."""

    name: str
    kind: Kind
    expect: Expect
    correct: str  # a correct outcome, in words
    names: str  # the message must contain this (the file's name, or the field)
    argv: tuple[str, ...] = ()  # CLI words after ``histoseek`` (``LIB`` for the library)
    request: Request | None = None
    skip: str | None = None  # why this case cannot run here


@dataclass(frozen=True)
class Made:
    """What a maker wrote: the command's words, or a request, and what must be named."""

    names: str
    argv: tuple[str, ...] = ()
    request: Request | None = None
    skip: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    kind: Kind
    expect: Expect
    correct: str
    make: Callable[[Path], Made]


# -- bytes of bad files ---------------------------------------------------------------------------

def _png_bytes(pixels: np.ndarray, **options: Any) -> bytes:
    import io

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=options.pop("format", "PNG"), **options)
    return out.getvalue()


def write_aperio_svs(path: Path, pixels: np.ndarray, mpp: str, levels: int = 3) -> Path:
    """A tiled JPEG pyramid whose description OpenSlide's Aperio reader takes for an SVS,
    recording ``mpp`` as written (``"0.5"``, ``"inf"``, ``"-0.25"``...)."""
    head = "Aperio Image Library v12.0.15 \r\n"
    with tifffile.TiffWriter(path) as tif:
        level = pixels
        for i in range(levels):
            level = level[::2, ::2] if i else level
            size = f"{level.shape[1]}x{level.shape[0]}"
            desc = head + size + (f" (256x256) JPEG/RGB Q=70|AppMag = 20|MPP = {mpp}"
                                  if i == 0 else "")
            tif.write(level, tile=(256, 256), photometric="rgb", compression="jpeg",
                      description=desc, metadata=None)
    return path


def _pyramid_bytes(folder: Path, svs: bool = False, mpp: str = "0.5") -> bytes:
    """A 1024x768 three-level tiled JPEG TIFF; ``svs``: with an Aperio description."""
    pixels = he_like_pixels(768, 1024, seed=6)
    path = folder / ".pyramid.tmp"
    if svs:
        write_aperio_svs(path, pixels, mpp)
    else:
        write_pyramid_tiff(path, pixels, mpp=float(mpp))
    data = path.read_bytes()
    path.unlink()
    return data


def _flip(data: bytes, offsets: Sequence[int], bit: int = 5) -> bytes:
    out = bytearray(data)
    for at in offsets:
        out[at] ^= 1 << bit
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png_header(side: int = 100_000) -> bytes:
    """A PNG whose header declares ``side`` x ``side`` RGB pixels over a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _chunk(b"IEND", b""))


def sparse_tiff(side: int = 100_000, tile: int = 256, mpp: float = 0.25) -> bytes:
    """A tiled RGB TIFF declaring ``side`` x ``side`` px with every tile missing (offsets and
    byte counts 0): ~1 MB on disk, 30 GB if anything decoded it whole."""
    n = (-(-side // tile)) ** 2
    per_cm = round(1e4 / mpp)
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 3, None), (259, 3, 1, 1),
            (262, 3, 1, 2), (277, 3, 1, 3), (282, 5, 1, None), (283, 5, 1, None),
            (284, 3, 1, 1), (296, 3, 1, 3), (322, 3, 1, tile), (323, 3, 1, tile),
            (324, 4, n, None), (325, 4, n, None)]
    extra_at = 8 + 2 + 12 * len(tags) + 4
    extra = {258: struct.pack("<3H", 8, 8, 8), 282: struct.pack("<2I", per_cm, 1),
             283: struct.pack("<2I", per_cm, 1), 324: bytes(4 * n), 325: bytes(4 * n)}
    ifd, blob = struct.pack("<H", len(tags)), b""
    for tag, typ, count, value in tags:
        if value is None:
            ifd += struct.pack("<HHII", tag, typ, count, extra_at + len(blob))
            blob += extra[tag]
        elif typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + blob


# -- makers: each writes its case under ``folder`` and says how to run it -------------------------

def _index(path: Path, *more: str) -> Made:
    return Made(path.name, ("index", LIB, str(path), "--encoder", "classic", *more))


def _write(folder: Path, name: str, data: bytes | Callable[[Path], bytes]) -> Path:
    path = folder / name
    path.write_bytes(data(folder) if callable(data) else data)
    return path


def file_case(name: str, data: bytes | Callable[[Path], bytes], folder: Path) -> Made:
    return _index(_write(folder, name, data))


def cut_case(name: str, fraction: float, svs: bool, folder: Path) -> Made:
    data = _pyramid_bytes(folder, svs)
    return _index(_write(folder, name, data[: int(len(data) * fraction)]))


def flip_case(name: str, where: Literal["header", "ifd", "tiles"], folder: Path) -> Made:
    data = _pyramid_bytes(folder)
    ifd = struct.unpack("<I", data[4:8])[0]
    offsets = {"header": [7], "ifd": range(ifd + 2, ifd + 2 + 12 * 8, 7),
               "tiles": range(len(data) // 3, len(data) // 3 + 4000, 97)}[where]
    return _index(_write(folder, name, _flip(data, offsets)))


def mpp_case(name: str, mpp: str, folder: Path) -> Made:
    return _index(_write(folder, name, partial(_pyramid_bytes, svs=True, mpp=mpp)))


def image_case(name: str, make: Callable[[], Image.Image], folder: Path, **save: Any) -> Made:
    path = folder / name
    make().save(path, **save)
    return _index(path)


def multipage_tiff(folder: Path) -> Made:
    path = folder / "multipage.tif"
    with tifffile.TiffWriter(path) as tif:
        for seed in range(3):
            tif.write(he_like_pixels(300, 300, seed), photometric="rgb")
    return _index(path)


def renamed_good(name: str, fmt: str, folder: Path) -> Made:
    return file_case(name, _png_bytes(TILE, format=fmt), folder)


def named_tile(name: str, folder: Path) -> Made:
    path = folder / "names" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(_png_bytes(TILE))
    printable = os.fsencode(name).decode("utf-8", "backslashreplace")  # as messages show it
    return Made(printable.split("\n")[0], ("index", LIB, str(path), "--encoder", "classic"))


def dash_unquoted(folder: Path) -> Made:
    (folder / "-rf.png").write_bytes(_png_bytes(TILE))
    return Made("-r", ("index", LIB, "-rf.png", "--encoder", "classic"))  # cwd: ``folder``


def dash_after_double_dash(folder: Path) -> Made:
    (folder / "-rf.png").write_bytes(_png_bytes(TILE))
    return Made("-rf.png", ("index", LIB, "--encoder", "classic", "--", "-rf.png"))


def folder_with(name: str, build: Callable[[Path], str | None], folder: Path) -> Made:
    """A folder holding one good tile and one hostile entry, indexed as a folder."""
    root = folder / name
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "tile.png").write_bytes(_png_bytes(TILE))
    skip = build(root)
    return Made(name, ("index", LIB, str(root), "--encoder", "classic"), skip=skip)


def _symlink_loops(root: Path) -> None:
    (root / "ok" / "self").symlink_to("..")
    (root / "ok" / "loop.png").symlink_to("loop.png")
    (root / "ok" / "dangling.png").symlink_to(root / "gone.png")


def _locked(root: Path) -> str | None:
    locked = root / "locked"
    locked.mkdir()
    (locked / "hidden.png").write_bytes(_png_bytes(TILE))
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        locked.chmod(0o755)
        return "running as root: chmod 000 does not stop root reading the folder"
    return None


def _fifo_inside(root: Path) -> None:
    os.mkfifo(root / "ok" / "pipe.png")


def _folder_named_png(root: Path) -> None:
    (root / "ok" / "folder.png").mkdir()


def fifo_case(name: str, query: bool, folder: Path) -> Made:
    path = folder / name
    os.mkfifo(path)
    if query:
        return Made(name, ("search", LIB, "--image", str(path), "-k", "3"))
    return _index(path)


def reports_case(name: str, data: bytes | Callable[[Path], bytes], folder: Path,
                 names: str | None = None) -> Made:
    path = _write(folder, name, data)
    return Made(names or name, ("index", LIB, "--reports", str(path)))


def labels_case(name: str, data: bytes, folder: Path) -> Made:
    tiles = folder / "labelled"
    if not tiles.exists():
        (tiles / "a").mkdir(parents=True)
        (tiles / "a" / "tile.png").write_bytes(_png_bytes(TILE))
    path = _write(folder, name, data)
    return Made(name, ("index", LIB, str(tiles), "--labels", str(path), "--encoder", "classic"))


def query_case(name: str, data: bytes | Callable[[Path], bytes], folder: Path) -> Made:
    path = _write(folder, name, data)
    return Made(name, ("search", LIB, "--image", str(path), "-k", "3"))


def text_query(folder: Path) -> Made:
    text = " ".join(["tubular adenoma with low grade dysplasia"] * 2500)  # 100 KB
    return Made("", ("search", LIB, "--text", text, "-k", "2"))


def service_case(names: str, request: Request, folder: Path) -> Made:
    return Made(names, request=request)


def upload(name: str, data: bytes, kind: str = "image/png", **form: str) -> Request:
    return Request("POST", "/search/image", files={"file": (name, data, kind)},
                   data=form or None)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ten_mb_report() -> bytes:
    return b"adenoma " * 1_310_720


PNG_TILE = _png_bytes(TILE)
S, I, R, L, Q = "service", "index", "reports", "labels", "query"  # noqa: E741
REFUSED = "refused, naming the file"


def _svc(names: str, request: Request) -> Callable[[Path], Made]:
    return partial(service_case, names, request)


SPECS: list[Spec] = [
    # zero bytes, truncation, corruption
    *(Spec(f"zero-byte-{s}", I, "refuse", "refused: file is empty",
           partial(file_case, f"empty.{s}", b"")) for s in ("svs", "tif", "ndpi", "png", "jpg")),
    *(Spec(f"truncated-{s}-{int(f * 100)}pct", I, "refuse", "refused: corrupt or truncated",
           partial(cut_case, f"cut{int(f * 100)}.{s}", f, s == "svs"))
      for s in ("svs", "tif") for f in (0.1, 0.5, 0.9)),
    Spec("bitflip-tiff-header", I, "refuse", "refused: corrupt TIFF",
         partial(flip_case, "flip_header.tif", "header")),
    Spec("bitflip-tiff-ifd", I, "either", "refused as corrupt, or read if the flips are benign",
         partial(flip_case, "flip_ifd.tif", "ifd")),
    Spec("bitflip-tile-data", I, "either", "refused as corrupt, or read with damaged pixels",
         partial(flip_case, "flip_tiles.tif", "tiles")),
    Spec("truncated-png", I, "refuse", REFUSED,
         partial(file_case, "cut.png", _png_bytes(TILE)[:3000])),
    Spec("truncated-jpeg", I, "refuse", REFUSED,
         partial(file_case, "cut.jpg", _png_bytes(TILE, format="JPEG", quality=95)[:4000])),
    Spec("text-named-svs", I, "refuse", "refused: not a slide",
         partial(file_case, "notes.svs", b"Patient notes, not a slide.\n" * 200)),
    Spec("png-named-jpg", I, "either", "refused as wrong extension, or read",
         partial(renamed_good, "really_png.jpg", "PNG")),
    Spec("jpeg-named-png", I, "either", "refused as wrong extension, or read",
         partial(renamed_good, "really_jpeg.png", "JPEG")),
    Spec("unknown-extension", I, "refuse", "refused: unsupported file type",
         partial(file_case, "slide.xyz", PNG_TILE)),
    # sizes
    Spec("1x1-png", I, "refuse", "refused: too small to make a tile",
         partial(image_case, "dot.png", lambda: Image.new("RGB", (1, 1), (200, 120, 180)))),
    Spec("100k-png-header", I, "refuse", "refused before decoding: too large",
         partial(file_case, "huge.png", huge_png_header())),
    Spec("100k-sparse-tiff", I, "refuse", "refused before decoding: too large, no pyramid",
         partial(file_case, "huge_sparse.tif", sparse_tiff())),
    # pixel formats
    Spec("16-bit-gray-png", I, "refuse", "refused: more than 8 bits", partial(
        image_case, "deep.png", lambda: Image.fromarray(TILE[..., 0].astype(np.uint16) * 257))),
    Spec("16-bit-rgb-tiff", I, "refuse", "refused: more than 8 bits", partial(
        file_case, "deep_rgb.tif", lambda f: _tiff16(f))),
    Spec("cmyk-jpeg", I, "refuse", "refused: CMYK is not RGB", partial(
        image_case, "print.jpg", lambda: Image.fromarray(TILE).convert("CMYK"))),
    Spec("palette-png", I, "accept", "accepted (converted to RGB)", partial(
        image_case, "palette.png", lambda: Image.fromarray(TILE).convert("P"))),
    Spec("rgba-png", I, "accept", "accepted (alpha composited on white)", partial(
        image_case, "alpha.png", lambda: Image.fromarray(TILE).convert("RGBA"))),
    Spec("grayscale-jpeg", I, "refuse", "refused: grayscale is not RGB", partial(
        image_case, "gray.jpg", lambda: Image.fromarray(TILE).convert("L"))),
    Spec("1-bit-png", I, "refuse", "refused: 1-bit is not RGB", partial(
        image_case, "bits.png", lambda: Image.fromarray(TILE).convert("1"))),
    Spec("multipage-flat-tiff", I, "either", "first page read, or refused", multipage_tiff),
    # absurd scales
    *(Spec(f"svs-mpp-{label}", I, "refuse", "refused: implausible mpp, give --mpp",
           partial(mpp_case, f"mpp_{label}.svs", value))
      for label, value in (("zero", "0"), ("negative", "-0.25"), ("nan", "nan"),
                           ("inf", "inf"), ("tiny", "1e-9"), ("huge", "1e6"))),
    # hostile names
    Spec("name-with-spaces", I, "accept", "accepted",
         partial(named_tile, "a slide  with spaces.png")),
    Spec("name-unicode", I, "accept", "accepted", partial(named_tile, "ünïcødé_切片_🔬.png")),
    Spec("name-newline", I, "accept", "accepted", partial(named_tile, "new\nline.png")),
    Spec("name-250-chars", I, "accept", "accepted", partial(named_tile, "n" * 246 + ".png")),
    Spec("name-not-utf8", I, "either", "accepted, or refused naming the file",
         partial(named_tile, os.fsdecode(b"latin1_caf\xe9.png"))),
    Spec("name-leading-dash", I, "refuse", "refused by the option parser, naming -r",
         dash_unquoted),
    Spec("name-leading-dash-after-double-dash", I, "accept", "accepted",
         dash_after_double_dash),
    Spec("folder-symlink-loops", I, "either", "good tile added; broken links listed, loops "
         "not followed",
         partial(folder_with, "looped", _symlink_loops)),
    Spec("folder-unreadable", I, "refuse", "good tile added; the folder listed as failed",
         partial(folder_with, "unreadable", _locked)),
    Spec("folder-with-fifo", I, "either", "good tile added; the FIFO not opened",
         partial(folder_with, "piped", _fifo_inside)),
    Spec("folder-named-png", I, "accept", "good tile added; the folder not read as an image",
         partial(folder_with, "dirpng", _folder_named_png)),
    Spec("fifo-given", I, "refuse", "refused: not a regular file (no hang)",
         partial(fifo_case, "pipe.png", False)),
    # reports CSVs and texts
    Spec("reports-invalid-utf8", R, "refuse", REFUSED, partial(
        reports_case, "r_latin1.csv", b"report_id,text\nr1,ad\xe9nocarcinome du c\xf4lon\n")),
    Spec("reports-utf16", R, "refuse", REFUSED, partial(
        reports_case, "r_utf16.csv", "report_id,text\nr1,tubular adenoma\n".encode("utf-16"))),
    Spec("reports-10mb-report", R, "refuse", "the row refused, naming its report id", partial(
        reports_case, "r_big.csv", lambda _: b"report_id,text\nr-big," + ten_mb_report() + b"\n",
        names="r-big")),
    Spec("reports-nul-bytes", R, "refuse", REFUSED, partial(
        reports_case, "r_nul.csv", b"report_id,text\nr1,tubular\x00 adenoma\n")),
    Spec("reports-unbalanced-quote", R, "refuse", REFUSED, partial(
        reports_case, "r_quote.csv",
        b'report_id,text\nr1,"tubular adenoma, low grade\nr2,normal colonic mucosa\n')),
    Spec("reports-no-header", R, "refuse", REFUSED, partial(
        reports_case, "r_nohead.csv", b"r1,tubular adenoma\nr2,normal mucosa\n")),
    Spec("reports-wrong-columns", R, "refuse", REFUSED, partial(
        reports_case, "r_cols.csv", b"id,body\nr1,tubular adenoma\n")),
    Spec("reports-duplicate-ids", R, "refuse", "refused or one kept, naming the id", partial(
        reports_case, "r_dups.csv",
        b"report_id,text\nr1,tubular adenoma\nr1,normal colonic mucosa\n", names="r1")),
    Spec("reports-empty-file", R, "refuse", REFUSED, partial(reports_case, "r_empty.csv", b"")),
    Spec("reports-header-only", R, "accept", "accepted: nothing to add", partial(
        reports_case, "r_head.csv", b"report_id,text\n")),
    Spec("reports-ragged-rows", R, "refuse", REFUSED, partial(
        reports_case, "r_ragged.csv", b"report_id,text\nr1,adenoma,extra,fields\nr2\n")),
    Spec("reports-binary", R, "refuse", REFUSED, partial(reports_case, "r_png.csv", PNG_TILE)),
    Spec("report-txt-10mb", R, "refuse", "refused: too long", partial(
        reports_case, "huge_report.txt", lambda _: ten_mb_report(), names="huge_report")),
    Spec("report-txt-invalid-utf8", R, "refuse", REFUSED, partial(
        reports_case, "latin1_report.txt", b"ad\xe9nocarcinome\n")),
    # labels CSVs
    Spec("labels-wrong-header", L, "refuse", REFUSED,
         partial(labels_case, "l_header.csv", b"file,label\nlabelled/a/tile.png,polyp\n")),
    Spec("labels-escaping-paths", L, "refuse", "refused: no row matches a file", partial(
        labels_case, "l_escape.csv", b"path,label\n../../etc/passwd,polyp\n/etc/shadow,x\n")),
    Spec("labels-escaping-plus-good", L, "accept", "accepted; other rows noted", partial(
        labels_case, "l_mixed.csv",
        b"path,label\n../../etc/passwd,polyp\nlabelled/a/tile.png,normal\n")),
    Spec("labels-bom", L, "accept", "accepted", partial(
        labels_case, "l_bom.csv", "\ufeffpath,label\nlabelled/a/tile.png,normal\n".encode())),
    Spec("labels-invalid-utf8", L, "refuse", REFUSED,
         partial(labels_case, "l_latin1.csv", b"path,label\nlabelled/a/tile.png,norm\xe9l\n")),
    Spec("labels-empty", L, "refuse", REFUSED, partial(labels_case, "l_empty.csv", b"")),
    # query images and texts
    Spec("query-zero-byte", Q, "refuse", REFUSED, partial(query_case, "q_empty.png", b"")),
    Spec("query-truncated-png", Q, "refuse", REFUSED,
         partial(query_case, "q_cut.png", PNG_TILE[:3000])),
    Spec("query-text-as-png", Q, "refuse", REFUSED,
         partial(query_case, "q_text.png", b"not an image\n" * 50)),
    Spec("query-100k-png-header", Q, "refuse", REFUSED,
         partial(query_case, "q_huge.png", huge_png_header())),
    Spec("query-16-bit-png", Q, "refuse", REFUSED, partial(
        query_case, "q_deep.png",
        _png_bytes(TILE[..., 0].astype(np.uint16) * 257))),
    Spec("query-1x1-png", Q, "refuse", REFUSED, partial(
        query_case, "q_dot.png", _png_bytes(np.full((1, 1, 3), 200, np.uint8)))),
    Spec("query-fifo", Q, "refuse", "refused: not a regular file (no hang)",
         partial(fifo_case, "q_pipe.png", True)),
    Spec("query-text-100kb", Q, "accept", "accepted (the encoder truncates)", text_query),
    # service requests
    Spec("svc-traversal-thumbnail", S, "refuse", "4xx: no such route", _svc("passwd", Request(
        "GET", "/slides/..%2F..%2F..%2Fetc%2Fpasswd/thumbnail.png"))),
    Spec("svc-traversal-source", S, "refuse", "404 naming the key", _svc("passwd", Request(
        "GET", "/sources/..%2F..%2F..%2Fetc%2Fpasswd"))),
    Spec("svc-traversal-dzi-tile", S, "refuse", "4xx: no such route", _svc("etc", Request(
        "GET", "/slides/1_files/0/0_0.jpeg%2F..%2F..%2F..%2Fetc%2Fpasswd"))),
    Spec("svc-traversal-ingest", S, "refuse", "4xx naming the path", _svc("passwd", Request(
        "POST", "/ingest", json={"paths": ["../../../../etc/passwd"]}, headers=AUTH))),
    Spec("svc-absolute-ingest", S, "refuse", "4xx naming the path", _svc("/etc", Request(
        "POST", "/ingest", json={"paths": ["/etc"]}, headers=AUTH))),
    Spec("svc-traversal-delete", S, "refuse", "404 naming the key", _svc("passwd", Request(
        "DELETE", "/sources/..%2F..%2Fetc%2Fpasswd", headers=AUTH))),
    Spec("svc-huge-source-id", S, "refuse", "404 naming the id", _svc("9999", Request(
        "GET", "/slides/99999999999999999999999/thumbnail.png"))),
    Spec("svc-oversized-upload", S, "refuse", "413 naming the limit", _svc("limit", upload(
        "big.png", PNG_TILE + bytes(2 * 2**20)))),
    Spec("svc-non-image-upload", S, "refuse", "415 naming the upload", _svc("notes.png", upload(
        "notes.png", b"just some text\n" * 100))),
    Spec("svc-truncated-upload", S, "refuse", "4xx naming the upload", _svc("cut.png", upload(
        "cut.png", PNG_TILE[:3000]))),
    Spec("svc-100k-upload", S, "refuse", "413 naming the upload", _svc("huge.png", upload(
        "huge.png", huge_png_header()))),
    Spec("svc-upload-k-negative", S, "refuse", "422 naming k", _svc("k", upload(
        "tile.png", PNG_TILE, k="-1"))),
    Spec("svc-malformed-json", S, "refuse", "400 malformed JSON", _svc("json", Request(
        "POST", "/search/text", content=b'{"text": "adenoma", "k": ',
        headers={"Content-Type": "application/json"}))),
    Spec("svc-unknown-field", S, "refuse", "422 naming the field", _svc("kay", Request(
        "POST", "/search/text", json={"text": "adenoma", "kay": 3}))),
    Spec("svc-k-negative", S, "refuse", "422 naming k", _svc("k", Request(
        "POST", "/search/text", json={"text": "adenoma", "k": -1}))),
    Spec("svc-k-billion", S, "refuse", "422 naming k", _svc("k", Request(
        "POST", "/search/text", json={"text": "adenoma", "k": 10**9}))),
    Spec("svc-huge-text", S, "refuse", "422 naming text", _svc("text", Request(
        "POST", "/search/text", json={"text": "adenoma " * 125_000}))),
    Spec("svc-empty-text", S, "refuse", "400: the query is empty", _svc("empty", Request(
        "POST", "/search/text", json={"text": "  "}))),
    Spec("svc-region-outside", S, "refuse", "400 naming the box", _svc("outside", Request(
        "POST", "/search/region", json={"source": 1, "x": 10**9, "y": 0, "w": 224,
                                        "h": 224}))),
    Spec("svc-thumbnail-size", S, "refuse", "400 naming size", _svc("size", Request(
        "GET", "/slides/1/thumbnail.png?size=100000"))),
    Spec("svc-reports-csv-latin1", S, "refuse", "415 naming the upload", _svc("r.csv", Request(
        "POST", "/reports/csv", headers=AUTH,
        files={"file": ("r.csv", b"report_id,text\nr1,ad\xe9nome\n", "text/csv")}))),
    Spec("svc-reports-csv-nul", S, "refuse", "415 naming the upload", _svc("n.csv", Request(
        "POST", "/reports/csv", headers=AUTH,
        files={"file": ("n.csv", b"report_id,text\nr1,ade\x00nome\n", "text/csv")}))),
]


def _tiff16(folder: Path) -> bytes:
    path = folder / ".deep.tmp"
    tifffile.imwrite(path, TILE.astype(np.uint16) * 257, photometric="rgb")
    data = path.read_bytes()
    path.unlink()
    return data


def write_corpus(folder: Path) -> list[Case]:
    """Write every case of ``SPECS`` under ``folder`` (made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for spec in SPECS:
        made = spec.make(folder)
        cases.append(Case(spec.name, spec.kind, spec.expect, spec.correct, made.names,
                          made.argv, made.request, made.skip))
    return cases


def build_library(folder: Path) -> Path:
    """The library each case starts from: classic, two tiles, one slide, two reports."""
    from histoseek.library import Library

    tiles = folder / "base_tiles"
    (tiles / "a").mkdir(parents=True, exist_ok=True)
    for seed in (1, 2):
        Image.fromarray(he_like_pixels(224, 224, seed)).save(tiles / "a" / f"base{seed}.png")
    slide = write_pyramid_tiff(folder / "base_slide.tif", he_like_pixels(768, 1024, 3), 0.5)
    with Library.create(folder / "base_lib", encoder="classic") as lib:
        lib.add([tiles, slide], progress=False)
        lib.add_reports([{"report_id": "b1", "text": "tubular adenoma, low grade"},
                         {"report_id": "b2", "text": "normal colonic mucosa"}])
    return folder / "base_lib"


def release_fifos(folder: Path) -> None:
    """Open every FIFO under ``folder`` for writing and close it: a reader stuck on one ends."""
    for path in folder.rglob("*"):
        try:
            if path.is_fifo():
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
