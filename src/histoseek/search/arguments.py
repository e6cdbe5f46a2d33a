"""Query arguments as users type them: regions ``FILE:x,y,w,h`` and ``key=value`` filters."""

from __future__ import annotations

from pathlib import Path

from histoseek.errors import InputError


def parse_region(spec: str) -> tuple[Path, int, int, int, int]:
    """``FILE:x,y,w,h`` (level-0 pixels) into its parts."""
    path_part, sep, box = spec.rpartition(":")
    try:
        x, y, w, h = (int(float(v)) for v in box.split(","))
    except ValueError:
        raise InputError(
            f"region '{spec}' must look like FILE:x,y,w,h in level-0 pixels") from None
    if not sep or w <= 0 or h <= 0:
        raise InputError(f"region '{spec}' must look like FILE:x,y,w,h with w, h > 0")
    return Path(path_part), x, y, w, h


def parse_filters(pairs: list[str] | None) -> dict[str, list[str]]:
    """``key=value`` CLI pairs into a filter dict (repeated keys mean any of the values)."""
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"filter '{pair}' must look like key=value")
        out.setdefault(key.strip(), []).append(value.strip())
    return out
