"""A slide's physical scale (microns per pixel at level 0): read from the file, checked, chosen.

A file can record nonsense (0, a negative number, ``inf``, 1e-9) and a user can mistype
``--mpp``; either would tile the slide into zero-size or astronomically many tiles. A file's
value outside ``MPP_RANGE`` is treated as missing (and named in the error that asks for
``--mpp``); a ``--mpp`` outside it is refused.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

from PIL import Image

from histoseek.errors import SlideReadError

log = logging.getLogger(__name__)

MppSource = Literal["file", "override", "unknown"]
# 0.01 um/px is ten times finer than any optical scanner; at 100 um/px a 25 mm slide is 250 px
MPP_RANGE = (0.01, 100.0)


def plausible_mpp(value: float) -> bool:
    return math.isfinite(value) and MPP_RANGE[0] <= value <= MPP_RANGE[1]


def mpp_from_properties(props: dict[str, str], prefix: str) -> float | None:
    """Read mpp from ``<prefix>.mpp-x``/``-y``, else from TIFF resolution tags.

    The first plausible value wins; if none is plausible, the first value found is returned
    (for ``choose_mpp`` to reject by name); None if the file records none.
    """
    found: list[float] = []
    for key in (f"{prefix}.mpp-x", f"{prefix}.mpp-y"):
        try:
            found.append(float(props[key]))
        except (KeyError, TypeError, ValueError):
            continue
    unit = str(props.get("tiff.ResolutionUnit", "")).lower()
    per_micron = {"centimeter": 1e4, "3": 1e4, "inch": 25400.0, "2": 25400.0}.get(unit)
    try:
        res = float(props["tiff.XResolution"])
    except (KeyError, TypeError, ValueError):
        res = math.nan
    if per_micron is not None and math.isfinite(res) and res > 0:
        found.append(per_micron / res)
    return next((v for v in found if plausible_mpp(v)), found[0] if found else None)


def mpp_from_pillow(image: Image.Image) -> float | None:
    """Flat TIFFs may carry resolution tags; PNG/JPEG dpi is almost never physical."""
    if image.format != "TIFF":
        return None
    tags = getattr(image, "tag_v2", {})
    unit, xres = tags.get(296), tags.get(282)
    try:
        xres = float(xres)
    except (TypeError, ValueError):
        return None
    if unit not in (2, 3) or not math.isfinite(xres) or xres <= 0:
        return None
    return (25400.0 if unit == 2 else 1e4) / xres


def choose_mpp(path: Path, file_mpp: float | None, override: float | None
               ) -> tuple[float | None, MppSource, float | None]:
    """The mpp to use, where it came from, and the file's value if it was rejected.

    Raises ``SlideReadError`` for an override that is not a plausible scale.
    """
    lo, hi = MPP_RANGE
    rejected = None if file_mpp is None or plausible_mpp(file_mpp) else file_mpp
    file_mpp = None if rejected is not None else file_mpp
    if override is not None:
        if not override > 0:
            raise SlideReadError(f"{path}: --mpp must be positive, got {override}")
        if not plausible_mpp(override):
            raise SlideReadError(
                f"{path}: --mpp {override:g} is not a plausible scale; give microns per pixel "
                f"between {lo:g} and {hi:g} (0.25 for 40x, 0.5 for 20x scans)")
        if file_mpp is not None and abs(file_mpp - override) / file_mpp > 0.05:
            log.warning("%s: file says %.4f mpp, using the given %.4f", path, file_mpp, override)
        return float(override), "override", rejected
    if file_mpp is not None:
        return float(file_mpp), "file", None
    return None, "unknown", rejected


def describe_missing(rejected: float | None) -> str:
    """What ``require_mpp`` says the file records."""
    if rejected is None:
        return "records no microns-per-pixel"
    lo, hi = MPP_RANGE
    return (f"records an implausible microns-per-pixel ({rejected:g}; a scan is between "
            f"{lo:g} and {hi:g})")
