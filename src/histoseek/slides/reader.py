"""One small slide interface over OpenSlide, tiffslide and Pillow.

Coordinates are level-0 pixels throughout (``x_l0``, ``y_l0``); scale is microns per pixel
(mpp) at level 0. ``open_slide`` picks the reader from the file's content, not only its
name, so a mislabelled file is reported instead of misread.
"""

from __future__ import annotations

import logging
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from histoseek.errors import MissingMppError, SlideReadError, UnsupportedImageError
from histoseek.slides.scale import (
    MppSource,
    choose_mpp,
    describe_missing,
    mpp_from_pillow,
    mpp_from_properties,
)

log = logging.getLogger(__name__)

SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".tif",
                  ".tiff", ".qptiff", ".dcm"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SUPPORTED_SUFFIXES = SLIDE_SUFFIXES | IMAGE_SUFFIXES
MAX_PLAIN_IMAGE_PIXELS = 16384 * 16384  # beyond this a plain image must be a pyramid


class Slide(ABC):
    """A readable image pyramid with a physical scale."""

    path: Path
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None
    mpp_source: MppSource
    mpp_rejected: float | None = None  # an implausible value the file records (0, inf, ...)
    is_pyramid: bool

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @abstractmethod
    def read_region(self, x_l0: int, y_l0: int, level: int, size: tuple[int, int]) -> np.ndarray:
        """Read ``size`` (w, h) pixels of ``level`` whose top-left is at level-0 (x, y).

        Returns uint8 RGB ``[h, w, 3]``; transparent (outside-scan) pixels become white.
        """

    @abstractmethod
    def thumbnail(self, max_px: int) -> np.ndarray:
        """Whole slide downscaled so its longer side is at most ``max_px``; uint8 RGB."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles."""

    def require_mpp(self) -> float:
        """The mpp, or a clear error saying how to give one."""
        if self.mpp is None:
            raise MissingMppError(
                f"{self.path}: the file {describe_missing(self.mpp_rejected)}; give it with "
                "--mpp (e.g. --mpp 0.25 for 40x, 0.5 for 20x scans)"
            )
        return self.mpp

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return (f"{type(self).__name__}({self.path.name!r}, {w}x{h}, "
                f"levels={self.level_count}, mpp={self.mpp})")


def _rgba_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Composite RGBA on white: OpenSlide marks unscanned area transparent."""
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        rgb = pixels[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return rgb.round().astype(np.uint8)
    return np.ascontiguousarray(pixels[..., :3])


class _PyramidSlide(Slide):
    """Shared body of the OpenSlide and tiffslide readers (same API shape)."""

    prefix = "openslide"

    def __init__(self, path: Path, handle: object, mpp_override: float | None) -> None:
        self.path = path
        self._handle = handle
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in handle.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in handle.level_downsamples)
        self.is_pyramid = True
        _check_smallest_level(path, handle, self.level_dimensions)
        file_mpp = mpp_from_properties(dict(handle.properties), self.prefix)
        self.mpp, self.mpp_source, self.mpp_rejected = choose_mpp(path, file_mpp, mpp_override)

    def read_region(self, x_l0: int, y_l0: int, level: int, size: tuple[int, int]) -> np.ndarray:
        try:
            region = self._handle.read_region((int(x_l0), int(y_l0)), int(level), size)
        except Exception as exc:
            raise SlideReadError(
                f"{self.path}: cannot read region at ({x_l0}, {y_l0}) level {level}; the file "
                f"may be corrupt or truncated ({exc})"
            ) from exc
        return _rgba_to_rgb(np.asarray(region))

    def thumbnail(self, max_px: int) -> np.ndarray:
        try:
            thumb = self._handle.get_thumbnail((max_px, max_px))
        except Exception as exc:
            raise SlideReadError(f"{self.path}: cannot read a thumbnail; the file may be "
                                 f"corrupt or truncated ({exc})") from exc
        return _rgba_to_rgb(np.asarray(thumb))

    def close(self) -> None:
        self._handle.close()


class OpenSlideSlide(_PyramidSlide):
    """Vendor formats through OpenSlide (SVS, NDPI, MRXS, SCN, generic tiled TIFF, ...)."""

    prefix = "openslide"


class TiffSlideSlide(_PyramidSlide):
    """Pure-Python fallback through tiffslide (TIFF-based formats OpenSlide declines)."""

    prefix = "tiffslide"


class ImageSlide(Slide):
    """A plain RGB image (PNG, JPEG, flat TIFF) as a one-level slide."""

    def __init__(self, path: Path, image: Image.Image, mpp_override: float | None) -> None:
        self.path = path
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            # convert("RGB") would drop alpha; composite on white like the pyramid readers
            self._pixels = _rgba_to_rgb(np.asarray(image.convert("RGBA")))
        else:
            self._pixels = np.asarray(image.convert("RGB"))
        h, w = self._pixels.shape[:2]
        self.level_dimensions = ((w, h),)
        self.level_downsamples = (1.0,)
        self.is_pyramid = False
        self.mpp, self.mpp_source, self.mpp_rejected = choose_mpp(
            path, mpp_from_pillow(image), mpp_override)

    def read_region(self, x_l0: int, y_l0: int, level: int, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        out = np.full((h, w, 3), 255, np.uint8)
        img_h, img_w = self._pixels.shape[:2]
        x0, y0 = max(x_l0, 0), max(y_l0, 0)
        x1, y1 = min(x_l0 + w, img_w), min(y_l0 + h, img_h)
        if x1 > x0 and y1 > y0:
            out[y0 - y_l0 : y1 - y_l0, x0 - x_l0 : x1 - x_l0] = self._pixels[y0:y1, x0:x1]
        return out

    def thumbnail(self, max_px: int) -> np.ndarray:
        image = Image.fromarray(self._pixels)
        image.thumbnail((max_px, max_px), Image.Resampling.BOX)
        return np.asarray(image)


def _check_smallest_level(path: Path, handle: object,
                          dims: tuple[tuple[int, int], ...]) -> None:
    """A thumbnail is read from the smallest level whole: refuse one too large to decode."""
    w, h = min(dims, key=lambda d: d[0] * d[1])
    if w * h > MAX_PLAIN_IMAGE_PIXELS:
        handle.close()  # type: ignore[attr-defined]
        width, height = dims[0]
        raise UnsupportedImageError(
            f"{path}: {width}x{height} px slide whose smallest level is {w}x{h} px, too large "
            "to decode for a thumbnail; convert it to a pyramidal TIFF (e.g. `vips tiffsave "
            "in out.tif --tile --pyramid`)")


def _open_plain_image(path: Path, mpp: float | None) -> ImageSlide:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            w, h = image.size
            if w * h > MAX_PLAIN_IMAGE_PIXELS:
                raise UnsupportedImageError(
                    f"{path}: plain image of {w}x{h} px is too large to load whole; convert it to "
                    "a tiled pyramidal TIFF (e.g. `vips tiffsave in out.tif --tile --pyramid`)"
                )
            _check_mode(path, image)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnsupportedImageError(
            f"{path}: image is too large to load whole ({exc}); convert it to a pyramidal TIFF"
        ) from exc
    except OSError as exc:
        raise SlideReadError(f"{path}: cannot decode image ({exc}); is it truncated?") from exc
    return ImageSlide(path, image, mpp)


def _check_mode(path: Path, image: Image.Image) -> None:
    # Pillow opens 16-bit RGB TIFFs as mode RGB (keeping the high byte), so ask the tags.
    bits = image.tag_v2.get(258) if image.format == "TIFF" else None
    bits = max(bits) if isinstance(bits, tuple) and bits else bits
    if isinstance(bits, int) and bits > 8:
        raise UnsupportedImageError(
            f"{path}: {bits}-bit TIFF has more than 8 bits per channel; histoseek reads "
            "8-bit RGB H&E images, so convert it to 8-bit RGB first"
        )
    if image.mode in ("RGB", "RGBA", "P", "YCbCr"):
        return
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F") or image.mode.startswith("I;16"):
        raise UnsupportedImageError(
            f"{path}: {image.mode} image has more than 8 bits per channel; histoseek reads "
            "8-bit RGB H&E images, so convert it to 8-bit RGB first"
        )
    raise UnsupportedImageError(
        f"{path}: image mode {image.mode} is not RGB; histoseek reads 8-bit RGB (H&E) images, "
        "so convert it (grayscale, CMYK and multi-channel fluorescence are not supported)"
    )


def _sniff_kind(path: Path) -> str | None:
    """Name the container from its first bytes, whatever the file is called."""
    with open(path, "rb") as fh:
        return sniff_image(fh.read(16))


def sniff_image(head: bytes) -> str | None:
    """The image container named by its first bytes (PNG, JPEG, TIFF, BMP, WEBP), or None;
    the service judges uploads by the same rule."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_slide(
    path: str | Path,
    mpp: float | None = None,
    backend: Literal["auto", "openslide", "tiffslide", "pillow"] = "auto",
) -> Slide:
    """Open a whole-slide image or a plain image tile.

    ``mpp`` overrides the file's value (or supplies a missing one). Raises ``SlideReadError``
    (or its subclass ``UnsupportedImageError``) naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise SlideReadError(f"{path}: no such file")
    if path.is_dir():
        raise SlideReadError(f"{path}: is a folder, not an image")
    if not path.is_file():  # a FIFO would block the read below forever
        raise SlideReadError(f"{path}: not a regular file (a pipe, socket or device)")
    try:
        size = path.stat().st_size
        kind = _sniff_kind(path)
    except OSError as exc:
        raise SlideReadError(f"{path}: cannot read file ({exc.strerror})") from exc
    if size == 0:
        raise SlideReadError(f"{path}: file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES and suffix != ".mrxs":
        raise SlideReadError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; expected one of "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    if backend == "pillow" or (backend == "auto" and suffix in IMAGE_SUFFIXES - SLIDE_SUFFIXES):
        expected = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}
        if kind is None:
            raise SlideReadError(f"{path}: not an image file (content is not {suffix[1:].upper()})")
        if suffix in expected and kind != expected[suffix]:
            raise SlideReadError(
                f"{path}: wrong extension: named {suffix} but the content is {kind}; rename it"
            )
        return _open_plain_image(path, mpp)
    return _open_pyramid(path, mpp, backend, kind)


class _Warnings(logging.Handler):
    """Collects tifffile's warnings of a broken page chain (it logs them, then goes on with
    the pages it could read); vendor quirks it also warns about are let through."""

    BROKEN = re.compile(r"invalid (page )?offset|offset to (first )?page|corrupted tag list|"
                        r"circular reference|could not read all values")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.BROKEN.search(message):
            self.messages.append(message)


def _is_tiled_rgb8_tiff(path: Path) -> bool:
    """True for a tiled or multi-level 8-bit RGB TIFF: a slide, not a flat picture.

    Raises ``SlideReadError`` for a TIFF whose pages do not all parse or whose data runs past
    the end of the file (a truncated copy tifffile would otherwise read in part).
    """
    import tifffile

    warned, logger = _Warnings(), logging.getLogger("tifffile")
    logger.addHandler(warned)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            size = path.stat().st_size
            end = max((o + c for p in pages for o, c in zip(p.dataoffsets, p.databytecounts,
                                                            strict=False) if c), default=0)
            if warned.messages or end > size:
                raise ValueError(f"data ends at byte {end:,} of {size:,}" if end > size
                                 else warned.messages[0])
            page = pages[0]
            levels = len(tif.series[0].levels) if tif.series else 1
            rgb8 = page.dtype == np.uint8 and page.samplesperpixel in (3, 4)
            return rgb8 and (page.is_tiled or levels > 1)
    except Exception as exc:
        raise SlideReadError(f"{path}: corrupt or truncated TIFF ({exc})") from exc
    finally:
        logger.removeHandler(warned)


def _openslide_declines(exc: Exception) -> bool:
    """True when OpenSlide says "not my format" rather than "this file is broken".

    No vendor detected raises ``OpenSlideUnsupportedFormatError``; a TIFF whose codec OpenSlide
    was built without (WebP, JPEG 2000, JPEG XL, LZMA in a generic TIFF) raises a plain
    ``OpenSlideError("Unsupported TIFF compression: N")``, which tiffslide may still read.
    """
    import openslide

    return isinstance(exc, openslide.OpenSlideUnsupportedFormatError) or str(exc).startswith(
        "Unsupported")


def _open_pyramid(path: Path, mpp: float | None, backend: str, kind: str | None) -> Slide:
    suffix = path.suffix.lower()
    if kind in ("PNG", "JPEG", "BMP", "WEBP"):
        raise SlideReadError(
            f"{path}: wrong extension: named {suffix} but the content is a plain {kind} image"
        )
    errors: list[str] = []  # why each backend declined; a backend that fails reading raises
    if backend in ("auto", "openslide"):
        try:
            import openslide
        except ImportError as exc:  # the binding or its C library is not installed
            errors.append(f"OpenSlide: not available ({exc})")
        else:
            if backend == "openslide" or openslide.OpenSlide.detect_format(str(path)):
                try:
                    return OpenSlideSlide(path, openslide.OpenSlide(str(path)), mpp)
                except openslide.OpenSlideError as exc:
                    if not _openslide_declines(exc):
                        raise SlideReadError(
                            f"{path}: OpenSlide recognises the format but cannot read the file; "
                            f"it is corrupt or truncated ({exc})"
                        ) from exc
                    errors.append(f"OpenSlide: {exc}")
            else:
                errors.append("OpenSlide: format not recognised")
    if backend in ("auto", "tiffslide") and kind == "TIFF":
        if backend == "auto" and not _is_tiled_rgb8_tiff(path):
            # Flat or non-RGB8 TIFFs go through Pillow, which checks the pixel format.
            return _open_plain_image(path, mpp)
        try:
            import tiffslide
        except ImportError as exc:
            errors.append(f"tiffslide: not available ({exc})")
        else:
            try:
                return TiffSlideSlide(path, tiffslide.TiffSlide(str(path)), mpp)
            except (tiffslide.TiffFileError, NotImplementedError) as exc:
                errors.append(f"tiffslide: {exc}")  # not a TIFF it parses / a layout it lacks
            except (OSError, ValueError, KeyError, IndexError) as exc:
                raise SlideReadError(
                    f"{path}: tiffslide cannot read the file's structure; it is corrupt or "
                    f"truncated ({type(exc).__name__}: {exc})"
                ) from exc
    detail = "; ".join(errors) or f"content is not a TIFF-based slide ({kind or 'unknown'})"
    raise SlideReadError(f"{path}: cannot open as a slide, corrupt or unsupported ({detail})")
