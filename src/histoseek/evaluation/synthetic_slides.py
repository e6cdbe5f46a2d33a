"""Synthetic whole slides with known ground truth, built from labelled EBHI-style tiles.

Real slides rarely come with region annotations that match a tile classifier's classes, so
region localisation and slide retrieval are evaluated on composites instead: a tissue-like
canvas (pale pink stroma texture, pure-white glass margins) on which non-overlapping
rectangular regions, each made of tiles of ONE class from ONE ``source_id``, are pasted.
Keeping a region to one source keeps leave-one-source-out evaluation honest. One class is
made clearly dominant by area (its first region is 9-12 cells, every other region 4-6).

Slides are pyramidal tiled TIFFs (level 0, then /4 and /16, each a main IFD with
``subfiletype=1``: the layout both OpenSlide's generic-tiff reader and tiffslide open as
levels) with resolution tags in pixels per centimetre, from which both report level-0 mpp.
The default ``mpp=0.5`` (about 20x) is a nominal scale: the EBHI tiles are pasted unscaled.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from histoseek.errors import InputError

CELL = 224  # px of one EBHI tile; the canvas is a grid of such cells
TIFF_TILE = 256
DOWNSAMPLES = (1, 4, 16)
BIG_SHAPES = ((3, 3), (4, 3), (3, 4))  # (cols, rows) of the dominant class's first region
SMALL_SHAPES = ((2, 2), (3, 2), (2, 3))  # every other region: strictly smaller than any big
BACKGROUND_RGB = (230, 186, 206)  # saturation ~0.19: kept as tissue by tissue_mask
REQUIRED_COLUMNS = ("path", "label", "source_id")


@dataclass(frozen=True)
class SyntheticRegion:
    """A block of tiles of one class from one source; ``box`` is level-0 ``(x, y, w, h)``."""

    label: str
    source_id: str
    box: tuple[int, int, int, int]
    tiles: tuple[str, ...] = ()  # labels-CSV ``path`` values, row-major, to exclude if needed

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class SyntheticSlide:
    path: Path
    slide_id: str
    width: int
    height: int
    mpp: float
    dominant_label: str
    regions: tuple[SyntheticRegion, ...]

    def label_areas(self) -> dict[str, int]:
        """Total level-0 area per class."""
        areas: dict[str, int] = defaultdict(int)
        for region in self.regions:
            areas[region.label] += region.area
        return dict(areas)

    def to_json(self, root: Path) -> dict:
        return {"path": self.path.relative_to(root).as_posix(), "slide_id": self.slide_id,
                "width": self.width, "height": self.height, "mpp": self.mpp,
                "dominant_label": self.dominant_label,
                "regions": [{"label": r.label, "source_id": r.source_id, "box": list(r.box),
                             "tiles": list(r.tiles)} for r in self.regions]}


def box_iou(a: Iterable[float], b: Iterable[float]) -> float:
    """Intersection over union of two ``[x, y, w, h]`` boxes (0 when either is empty)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


def split_sources(split_json: str | Path, part: Literal["train", "test"] = "test") -> set[str]:
    """The ``<part>_sources`` of a split file such as ``configs/splits/ebhi-seg-seed0.json``."""
    path = Path(split_json)
    try:
        return {str(s) for s in json.loads(path.read_text())[f"{part}_sources"]}
    except FileNotFoundError as exc:
        raise InputError(f"{path}: split file not found") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a split file with a '{part}_sources' list") from exc


def _read_labels(labels_csv: Path, sources: set[str] | None) -> dict[str, dict[str, list[str]]]:
    """``{label: {source_id: sorted paths}}`` of the allowed sources."""
    if not labels_csv.is_file():
        raise InputError(f"{labels_csv}: labels CSV not found")
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{labels_csv}: header must have columns {', '.join(REQUIRED_COLUMNS)}"
                             f" (missing {', '.join(missing)}; found {reader.fieldnames})")
        groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for row in reader:
            if sources is None or row["source_id"] in sources:
                groups[row["label"]][row["source_id"]].append(row["path"])
    if not groups:
        raise InputError(f"{labels_csv}: no tiles left after restricting to the given sources")
    return {lab: {s: sorted(p) for s, p in by_src.items()} for lab, by_src in groups.items()}


def _eligible(groups: dict[str, dict[str, list[str]]], cells: int) -> list[str]:
    """Classes with at least one source holding ``cells`` distinct tiles."""
    return sorted(lab for lab, by_src in groups.items()
                  if max(len(p) for p in by_src.values()) >= cells)


def _load_tile(root: Path, rel: str, labels_csv: Path) -> np.ndarray:
    try:
        with Image.open(root / rel) as img:
            tile = img.convert("RGB")
    except OSError as exc:
        raise InputError(f"{labels_csv}: cannot read tile '{rel}' ({exc})") from exc
    if tile.size != (CELL, CELL):  # EBHI tiles are 224 px; others are fitted to the cell
        tile = tile.resize((CELL, CELL), Image.Resampling.BILINEAR)
    return np.asarray(tile)


def _place(occupied: np.ndarray, shape: tuple[int, int], rng: np.random.Generator
           ) -> tuple[int, int, int, int] | None:
    """A random free interior cell block of ``shape`` or its transpose, as (col, row, c, r)."""
    rows, cols = occupied.shape
    options = []
    for c, r in {shape, shape[::-1]}:
        for y in range(1, rows - r):  # the outer ring of cells is kept for margin/background
            for x in range(1, cols - c):
                if not occupied[y:y + r, x:x + c].any():
                    options.append((x, y, c, r))
    return options[rng.integers(len(options))] if options else None


def _background(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Stroma-like texture: blotchy low-frequency tint plus fine noise, glass at the edges."""
    h, w = rows * CELL, cols * CELL
    coarse = rng.normal(0, 5, (rows * 4, cols * 4)).astype(np.int8)
    coarse = coarse.repeat(CELL // 4, 0).repeat(CELL // 4, 1)
    fine = rng.normal(0, 4, (2 * CELL, 2 * CELL)).astype(np.int8)  # tiled: 10x faster
    fine = np.tile(fine, (rows // 2 + 1, cols // 2 + 1))[:h, :w]
    offset = (np.clip(coarse + fine, -24, 24) + 24).astype(np.uint8)
    img = np.empty((h, w, 3), np.uint8)
    for channel, value in enumerate(BACKGROUND_RGB):  # uint8 throughout: 0.05 s, not 1 s
        np.add(offset, value - 24, out=img[..., channel])
    top, bottom, left, right = rng.integers(24, CELL - 24, 4)
    img[:top], img[h - bottom:], img[:, :left], img[:, w - right:] = 255, 255, 255, 255
    return img


def _make_one(groups: dict[str, dict[str, list[str]]], labels_csv: Path,
              rng: np.random.Generator) -> tuple[np.ndarray, str, list[SyntheticRegion]]:
    cols, rows = (int(v) for v in rng.integers(8, 13, 2))
    dominant = str(rng.choice(_eligible(groups, min(a * b for a, b in BIG_SHAPES))))
    minors = [c for c in _eligible(groups, min(a * b for a, b in SMALL_SHAPES)) if c != dominant]
    n_regions = int(rng.integers(2, 5))
    two_dominant = n_regions >= 3 and rng.random() < 0.5
    n_minor = min(len(minors), max(1, n_regions - 1 - two_dominant))
    plan = [(dominant, BIG_SHAPES)] + [(dominant, SMALL_SHAPES)] * two_dominant
    plan += [(str(c), SMALL_SHAPES) for c in rng.permutation(minors)[:n_minor]]
    canvas = _background(rows, cols, rng)
    occupied = np.zeros((rows, cols), bool)
    regions = []
    for label, shapes in plan:
        most = max(len(p) for p in groups[label].values())
        fitting = [s for s in shapes if s[0] * s[1] <= most]
        spot = _place(occupied, fitting[rng.integers(len(fitting))], rng)
        if spot is None:
            continue
        x, y, c, r = spot
        occupied[y:y + r, x:x + c] = True
        srcs = sorted(s for s, p in groups[label].items() if len(p) >= c * r)
        src = srcs[rng.integers(len(srcs))]
        picks = [groups[label][src][i] for i in rng.choice(len(groups[label][src]), c * r, False)]
        for k, rel in enumerate(picks):
            ty, tx = (y + k // c) * CELL, (x + k % c) * CELL
            canvas[ty:ty + CELL, tx:tx + CELL] = _load_tile(labels_csv.parent, rel, labels_csv)
        regions.append(SyntheticRegion(label, src, (x * CELL, y * CELL, c * CELL, r * CELL),
                                       tuple(picks)))
    return canvas, dominant, regions


def write_pyramid(path: Path, pixels: np.ndarray, mpp: float,
                  compression: Literal["jpeg", "zlib"] = "jpeg") -> None:
    """Tiled TIFF: level 0 then box-averaged /4 and /16 levels, each a reduced-size IFD."""
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        level, done = pixels, 1
        for ds in DOWNSAMPLES:
            f = ds // done
            if f > 1:
                h, w = level.shape[0] // f, level.shape[1] // f
                level = level[:h * f, :w * f].reshape(h, f, w, f, 3).astype(np.uint16)
                level = (level.sum((1, 3)) // (f * f)).astype(np.uint8)
            done = ds
            tif.write(level, tile=(TIFF_TILE, TIFF_TILE), photometric="rgb",
                      compression=compression, resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)),
                      resolutionunit="CENTIMETER", subfiletype=int(ds > 1), metadata=None,
                      compressionargs={"level": 90 if compression == "jpeg" else 6}, maxworkers=1)


def make_synthetic_slides(
    labels_csv: str | Path, out_dir: str | Path, n_slides: int, *, seed: int = 0,
    sources: Iterable[str] | None = None, mpp: float = 0.5,
    compression: Literal["jpeg", "zlib"] = "jpeg",
    on_slide: Callable[[SyntheticSlide], None] | None = None,
) -> list[SyntheticSlide]:
    """Write ``n_slides`` TIFFs and ``truth.json`` to ``out_dir``; deterministic in ``seed``.

    ``sources`` restricts tiles to those source ids (e.g. a split's test sources). Slide ``i``
    depends only on (seed, i), so asking for more slides keeps the first ones unchanged.
    """
    labels_csv, out_dir = Path(labels_csv).resolve(), Path(out_dir).resolve()
    allowed = None if sources is None else {str(s) for s in sources}
    groups = _read_labels(labels_csv, allowed)
    big, small = min(a * b for a, b in BIG_SHAPES), min(a * b for a, b in SMALL_SHAPES)
    if not _eligible(groups, big) or len(_eligible(groups, small)) < 2:
        raise InputError(
            f"{labels_csv}: too few tiles to fill regions: need one class with a source of "
            f">= {big} tiles and another class with a source of >= {small} tiles (tiles per "
            f"class and source: { {k: max(map(len, v.values())) for k, v in groups.items()} })")
    if mpp <= 0 or n_slides < 0:
        raise InputError(f"mpp must be > 0 and n_slides >= 0 (got {mpp}, {n_slides})")
    out_dir.mkdir(parents=True, exist_ok=True)
    slides = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_slides)):
        canvas, dominant, regions = _make_one(groups, labels_csv, np.random.default_rng(child))
        slide_id = f"synth-s{seed}-{i:03d}"
        path = out_dir / f"{slide_id}.tif"
        write_pyramid(path, canvas, mpp, compression)
        slide = SyntheticSlide(path, slide_id, canvas.shape[1], canvas.shape[0], float(mpp),
                               dominant, tuple(regions))
        slides.append(slide)
        if on_slide is not None:
            on_slide(slide)
    truth = {"seed": seed, "mpp": float(mpp), "cell_px": CELL, "labels_csv": str(labels_csv),
             "sources": None if allowed is None else sorted(allowed),
             "slides": [s.to_json(out_dir) for s in slides]}
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return slides


def load_truth(path: str | Path) -> list[SyntheticSlide]:
    """Slides of a ``truth.json`` (or a bare list of slides), with absolute slide paths."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        items = data["slides"] if isinstance(data, dict) else data
        return [SyntheticSlide(
            (path.parent / s["path"]).resolve(), s["slide_id"], int(s["width"]),
            int(s["height"]), float(s["mpp"]), s["dominant_label"],
            tuple(SyntheticRegion(r["label"], str(r["source_id"]),
                                  tuple(int(v) for v in r["box"]), tuple(r.get("tiles", ())))
                  for r in s["regions"])) for s in items]
    except FileNotFoundError as exc:
        raise InputError(f"{path}: ground-truth file not found") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a synthetic-slide truth file ({exc!r})") from exc
