"""Peak memory of ``histoseek index`` on large synthetic pyramidal TIFFs (issue 14).

Each slide is a tiled, JPEG-compressed pyramidal BigTIFF at 0.25 mpp (resolution tags in
pixels per centimetre, which OpenSlide's generic-tiff reader turns into ``openslide.mpp-x``),
one top-level page per level at downsamples 1, 4, 16, ... down to under 4,096 px, the reduced
pages marked ``subfiletype=1``: the layout of the tests' ``write_pyramid_tiff`` and of
``vips tiffsave --tile --pyramid``. Tiles come from an iterator, so writing never holds a
level. Tissue (an H&E-like texture) fills the same absolute area in every slide, a centred
square of ``--tissue-px`` level-0 pixels, the rest is white glass: the tiles to encode stay
the same, so any growth of peak memory with slide size comes from the slide, not from the
work. Each size is indexed by ``/usr/bin/time -v histoseek index LIB SLIDE --encoder classic``
in a fresh library; its maximum resident set size is the peak.

    python benchmarks/large_tiff_memory.py --markdown            # 25k, 50k, 100k px squares
    python benchmarks/large_tiff_memory.py --sizes 8000 200000 --keep /data/tiffs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "scaling-tiff.json"
TILE = 256
MPP = 0.25


def he_atlas(side: int = 2048, seed: int = 0) -> np.ndarray:
    """uint8 RGB ``[side, side, 3]``: pink stroma, purple nuclei of varying density, pale
    lumens; repeated over the tissue area (a tile's content only needs to look stained)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    density = 0.5 + 0.5 * np.sin(2 * np.pi * (3 * xx + 2 * yy)) * np.cos(2 * np.pi * 5 * yy)
    img = np.empty((side, side, 3), np.uint8)
    img[..., 0] = rng.integers(205, 235, (side, side))
    img[..., 1] = rng.integers(120, 165, (side, side))
    img[..., 2] = rng.integers(170, 210, (side, side))
    for cy, cx, r in zip(rng.integers(0, side, 60), rng.integers(0, side, 60),
                         rng.integers(20, 70, 60), strict=True):
        img[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = (238, 225, 232)  # lumens
    n = side * side // 120
    ys, xs = rng.integers(0, side, n), rng.integers(0, side, n)
    keep = rng.random(n) < density[ys, xs]
    for y, x in zip(ys[keep], xs[keep], strict=True):
        img[max(0, y - 3) : y + 4, max(0, x - 3) : x + 4] = (95, 55, 150)
    return img


def level_shapes(side: int, max_levels: int = 99, min_side: int = 4096,
                 downsamples: list[int] | None = None) -> list[tuple[int, int]]:
    """(side px, downsample) of each level: ``downsamples`` if given, else 1, 4, 16, ...
    until the side is under ``min_side`` or there are ``max_levels``."""
    if downsamples:
        return [(-(-side // ds), ds) for ds in downsamples]
    levels, ds = [(side, 1)], 1
    while -(-side // ds) >= min_side and len(levels) < max_levels:
        ds *= 4
        levels.append((-(-side // ds), ds))
    return levels


def tiles(side_px: int, ds: int, tissue_l0: tuple[int, int], atlas: np.ndarray
          ) -> Iterator[np.ndarray]:
    """Row-major ``TILE``-square tiles of one level (side ``side_px`` at downsample ``ds``):
    the atlas point-sampled inside the level-0 box ``tissue_l0 = (start, stop)`` (the same on
    both axes), white elsewhere."""
    white = np.full((TILE, TILE, 3), 255, np.uint8)
    lo, hi = tissue_l0[0] // ds, -(-tissue_l0[1] // ds)  # tissue box in this level's pixels
    a = atlas.shape[0]
    for ty in range(0, side_px, TILE):
        for tx in range(0, side_px, TILE):
            y0, y1 = max(ty, lo), min(ty + TILE, hi, side_px)
            x0, x1 = max(tx, lo), min(tx + TILE, hi, side_px)
            if y0 >= y1 or x0 >= x1:
                yield white
                continue
            tile = white.copy()
            rows = (np.arange(y0, y1) * ds) % a
            cols = (np.arange(x0, x1) * ds) % a
            tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx] = atlas[np.ix_(rows, cols)]
            yield tile


def write_slide(path: Path, side: int, tissue_px: int, atlas: np.ndarray,
                max_levels: int = 99, downsamples: list[int] | None = None) -> Path:
    """A square pyramidal tiled JPEG BigTIFF of ``side`` px at ``MPP``, written tile by tile."""
    import tifffile

    start = (side - min(tissue_px, side)) // 2
    box = (start, start + min(tissue_px, side))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, (side_px, ds) in enumerate(level_shapes(side, max_levels,
                                                       downsamples=downsamples)):
            res = 1e4 / (MPP * ds)  # pixels per centimetre
            tif.write(tiles(side_px, ds, box, atlas), shape=(side_px, side_px, 3),
                      dtype=np.uint8, tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                      compressionargs={"level": 85}, subfiletype=1 if i else 0,
                      resolution=(res, res), resolutionunit="CENTIMETER", metadata=None)
    return path


def peak_of(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``cmd``; its peak RSS in MB (GNU ``time -v``, else this process's largest waited-for
    child), wall seconds, and the finished process."""
    timer = Path("/usr/bin/time")
    t0 = time.perf_counter()
    proc = subprocess.run(([str(timer), "-v"] if timer.is_file() else []) + cmd,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if timer.is_file():
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)",
                                proc.stderr).group(1))  # type: ignore[union-attr]
    else:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak_kb / 1024, wall, proc


# the thumbnail ``tile_slide`` takes (tiling.py), alone, after opening the slide the same way
_THUMBNAIL = """
import sys
from histoseek.slides.reader import open_slide
from histoseek.slides.tiling import MASK_PX_PER_TILE, THUMBNAIL_MAX_PX, TilingConfig
slide = open_slide(sys.argv[1])
c = TilingConfig()
size_l0 = c.tile_px * c.target_mpp / slide.mpp
px = int(min(max(max(slide.dimensions) / size_l0 * MASK_PX_PER_TILE, 256), THUMBNAIL_MAX_PX))
if sys.argv[2] != "open":
    thumb = slide.thumbnail(px)
if sys.argv[2] == "mask":
    from histoseek.slides.tissue import tissue_mask
    tissue_mask(thumb)
"""


def index_once(slide: Path, library: Path) -> dict[str, Any]:
    """``histoseek index`` in a child process: peak RSS, wall, tiles; and the peaks of children
    that open the slide and take ``tile_slide``'s thumbnail, then also its tissue mask,
    against one that only opens it (those steps' share of the peak)."""
    histoseek = Path(sys.executable).with_name("histoseek")
    peak, wall, proc = peak_of([str(histoseek), "index", str(library), str(slide), "--encoder",
                                "classic"])
    if proc.returncode:  # histoseek refused the slide: keep its reason
        reason = next((line for line in (proc.stdout + proc.stderr).splitlines()
                       if str(slide) in line and "index" not in line.split(":")[0]),
                      proc.stderr.strip().splitlines()[-1])
        return {"peak_rss_mb": round(peak), "wall_s": round(wall, 1), "tiles": 0,
                "refused": reason.split(f"{slide}: ", 1)[-1]}
    opened, _, _ = peak_of([sys.executable, "-c", _THUMBNAIL, str(slide), "open"])
    thumb, _, _ = peak_of([sys.executable, "-c", _THUMBNAIL, str(slide), "thumbnail"])
    mask, _, _ = peak_of([sys.executable, "-c", _THUMBNAIL, str(slide), "mask"])
    from histoseek.library import Library

    with Library.open(library) as lib:
        tiles_indexed = lib.info()["tiles"]
    return {"peak_rss_mb": round(peak), "wall_s": round(wall, 1), "tiles": int(tiles_indexed),
            "open_peak_mb": round(opened), "thumbnail_extra_mb": round(thumb - opened),
            "thumbnail_mask_extra_mb": round(mask - opened)}


def run(sizes: list[int], tissue_px: int, folder: Path, max_levels: int = 99,
        downsamples: list[int] | None = None, log: Any = print) -> list[dict[str, Any]]:
    """Write and index one slide per size; one result row each."""
    atlas = he_atlas()
    rows = []
    for side in sizes:
        slide = folder / f"synthetic-{side}-{max_levels}.tif"
        t0 = time.perf_counter()
        write_slide(slide, side, tissue_px, atlas, max_levels, downsamples)
        write_s = time.perf_counter() - t0
        library = folder / f"lib-{side}"
        shutil.rmtree(library, ignore_errors=True)
        row = {"side_px": side,
               "levels": [s for s, _ in level_shapes(side, max_levels, downsamples=downsamples)],
               "file_mb": round(slide.stat().st_size / 2**20, 1), "write_s": round(write_s, 1),
               "tissue_px": min(tissue_px, side), **index_once(slide, library)}
        log(f"{side:,} px square ({row['file_mb']} MB, levels {row['levels']}): "
            f"{row['tiles']} tiles, peak RSS {row['peak_rss_mb']} MB, {row['wall_s']} s"
            + (f"; refused: {row['refused']}" if "refused" in row else ""))
        rows.append(row)
    return rows


def section(runs: list[dict[str, Any]]) -> str:
    """The ``tiff`` section of docs/scaling.md, one table row per slide of every run."""
    from scale_vectors import table

    body = table(["slide (px)", "levels (px)", "file MB", "tissue tiles indexed",
                  "peak RSS MB", "index wall s", "thumbnail: extra MB",
                  "thumbnail + tissue mask: extra MB", "write s"],
                 [[f"{r['side_px']:,}²", " / ".join(f"{s:,}" for s in r["levels"]),
                   r["file_mb"], r["tiles"] if "refused" not in r else "refused (below)",
                   r["peak_rss_mb"], r["wall_s"], r.get("thumbnail_extra_mb", "—"),
                   r.get("thumbnail_mask_extra_mb", "—"), r["write_s"]]
                  for run in runs for r in run["rows"]])
    refused = [f"- {r['side_px']:,}² with levels {' / '.join(f'{s:,}' for s in r['levels'])}: "
               f"histoseek refused it: \"{r['refused']}\"" for run in runs for r in run["rows"]
               if "refused" in r]
    commands = "; ".join(f"`python benchmarks/large_tiff_memory.py {run['command']}`"
                         for run in runs)
    return "\n".join([
        "## Peak memory while indexing large slides (`benchmarks/large_tiff_memory.py`)", "",
        "Synthetic pyramidal TIFFs (tiled JPEG BigTIFF, 0.25 mpp in the resolution tags, one "
        "page per level at downsamples 1, 4, 16, ... down to under 4,096 px; the tissue, an "
        "H&E-like texture, is a centred square of the same absolute size in each, the rest "
        "white glass, so every slide has the same tiles to encode). Each is indexed by "
        "`/usr/bin/time -v histoseek index LIB SLIDE --encoder classic` in a fresh library; "
        "peak RSS is GNU time's maximum resident set size of that process. *Thumbnail*, "
        "*thumbnail + tissue mask*: the peak of a process that opens the slide and takes the "
        "thumbnail `tile_slide` takes (then also its tissue mask), minus that of one that "
        "only opens it. Rows with two levels are sparse pyramids (`--max-levels 2`, or "
        "`--downsamples 1 64`: a gap between a large and a tiny level), with no level near "
        "the thumbnail's size.", "",
        body, *refused, "", f"Commands: {commands}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000],
                        help="side of each square slide in level-0 pixels")
    parser.add_argument("--tissue-px", type=int, default=16_000,
                        help="side of the tissue square in level-0 pixels (the same in all)")
    parser.add_argument("--max-levels", type=int, default=99,
                        help="stop the pyramid after this many levels (a sparse pyramid)")
    parser.add_argument("--downsamples", type=int, nargs="+", metavar="DS",
                        help="the levels' downsamples instead (e.g. 1 64: a gap in the pyramid)")
    parser.add_argument("--merge", action="store_true",
                        help="add these rows to those already in --json")
    parser.add_argument("--keep", type=Path, help="write slides and libraries here and keep them")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true",
                        help="write the tiff section of docs/scaling.md")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="histoseek-tiff-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(args.sizes, args.tissue_px, folder, args.max_levels, args.downsamples)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    runs = [{"command": " ".join(sys.argv[1:]), "rows": rows}]
    if args.merge and args.json.is_file():
        runs = json.loads(args.json.read_text())["runs"] + runs
    args.json.write_text(json.dumps({"runs": runs}, indent=1))
    if args.markdown:
        from scale_vectors import DOC, write_section

        write_section(DOC, "tiff", section(runs))


if __name__ == "__main__":
    main()
