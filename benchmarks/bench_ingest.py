"""Ingest throughput against the bare encoder forward pass on the same tiles.

For each encoder: (a) the bare ``encode_images`` on tiles already decoded in memory, batch 64;
(b) ``Library.add`` on the same tiles as files: hashing, decoding, tiling, tissue detection,
encoding, SQLite and FAISS writes. Prints tiles/s of both and the ratio (target >= 0.8).
The bare pass is timed before and after the ingest and averaged, so drift hits both alike.

    python benchmarks/bench_ingest.py --encoders classic resnet18-random --tiles 512
    python benchmarks/bench_ingest.py --encoders resnet18-random --ray-workers 1 2 \
        --markdown docs/scaling.md

``--ray-workers`` also times the same ingest through a private local Ray cluster of each
size (``Library.add(ray=...)``; Ray's start-up is not counted, its task and transfer
overheads are). ``--markdown`` writes the table into that file's ingest section.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from histoseek import create_encoder
from histoseek.library import Library

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def collect_tiles(n: int, workdir: Path) -> tuple[Path, np.ndarray, str]:
    """``n`` real EBHI-Seg tiles (copied as files) if ../shared is there, else synthetic."""
    folder = workdir / "tiles"
    folder.mkdir()
    labels = SHARED / "ebhi-seg" / "labels.csv"
    if labels.is_file():
        with open(labels, newline="") as fh:
            rows = list(csv.DictReader(fh))
        rows = rows[:: max(1, len(rows) // n)][:n]
        paths = []
        for i, row in enumerate(rows):
            dest = folder / f"{i:05d}.jpg"
            shutil.copyfile(SHARED / "ebhi-seg" / row["path"], dest)
            paths.append(dest)
        source = f"EBHI-Seg ({len(paths)} tiles, JPEG 224 px)"
    else:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            dest = folder / f"{i:05d}.png"
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), np.uint8)).save(dest)
            paths.append(dest)
        source = f"synthetic ({n} random PNG tiles)"
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return folder, pixels, source


def bare_rate(encoder, pixels: np.ndarray, batch: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for start in range(0, len(pixels), batch):
        encoder.encode_images(pixels[start : start + batch])
    return len(pixels) / (time.perf_counter() - t0)


def bench(name: str, folder: Path, pixels: np.ndarray, batch: int, workdir: Path) -> dict:
    encoder = create_encoder(name)
    encoder.encode_images(pixels[:8])  # warm-up (allocations, lazy init)
    before = bare_rate(encoder, pixels, batch)
    lib = Library.create(workdir / f"lib-{name}", encoder=encoder)  # no second model in memory
    report = lib.add([folder], batch_size=batch, progress=False)
    lib.close()
    after = bare_rate(encoder, pixels, batch)
    bare = (before + after) / 2
    if report.failures or report.tiles != len(pixels):
        raise SystemExit(f"ingest indexed {report.tiles} of {len(pixels)} tiles: {report.failures}")
    return {"encoder": name, "tiles": report.tiles, "bare_tiles_per_s": round(bare, 1),
            "bare_before": round(before, 1), "bare_after": round(after, 1),
            "ingest_tiles_per_s": round(report.tiles_per_second, 1),
            "ratio": round(report.tiles_per_second / bare, 3)}


def bench_ray(name: str, folder: Path, tiles: int, batch: int, workers: int,
              workdir: Path) -> dict:
    """The same ingest with reading and encoding on ``workers`` local Ray workers."""
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        lib = Library.create(workdir / f"lib-{name}-ray{workers}", encoder=name)
        report = lib.add([folder], batch_size=batch, progress=False, ray="auto")
        lib.close()
    finally:
        ray.shutdown()
    if report.failures or report.tiles != tiles:
        raise SystemExit(f"ray ingest indexed {report.tiles} of {tiles} tiles: {report.failures}")
    return {"encoder": name, "ray_workers": workers, "tiles": report.tiles,
            "ingest_tiles_per_s": round(report.tiles_per_second, 1)}


def write_markdown(path: Path, results: list[dict], ray_results: list[dict],
                   source: str) -> None:
    """Replace the ``<!-- ingest:begin -->`` section of ``path`` (added at the end if new)."""
    lines = ["<!-- ingest:begin -->", "## Ingest throughput", "",
             f"`python benchmarks/bench_ingest.py` ({source}; tiles/s on this machine, both "
             "sides measured in one run):", "",
             "| encoder | bare encoder tiles/s | library ingest tiles/s | ratio (target ≥ 0.8) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['encoder']} | {r['bare_tiles_per_s']} | {r['ingest_tiles_per_s']} | "
              f"{r['ratio']:.2f} |" for r in results]
    if ray_results:
        base = {r["encoder"]: r["ingest_tiles_per_s"] for r in ray_results
                if r["ray_workers"] == min(x["ray_workers"] for x in ray_results)}
        lines += ["", "Through local Ray workers (`--ray`; a task per group of files; Ray's "
                  "start-up not counted):", "",
                  "| encoder | Ray workers | tiles/s | vs fewest workers |", "|---|---:|---:|---:|"]
        lines += [f"| {r['encoder']} | {r['ray_workers']} | {r['ingest_tiles_per_s']} | "
                  f"{r['ingest_tiles_per_s'] / base[r['encoder']]:.2f}x |" for r in ray_results]
    lines.append("<!-- ingest:end -->")
    text = path.read_text() if path.is_file() else "# Scaling\n"
    if "<!-- ingest:begin -->" in text:
        head, rest = text.split("<!-- ingest:begin -->", 1)
        text = head + "\n".join(lines) + rest.split("<!-- ingest:end -->", 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["classic", "resnet18-random"])
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ray-workers", type=int, nargs="*", default=[])
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="histoseek-ingest-"))
    results = []
    try:
        folder, pixels, source = collect_tiles(args.tiles, workdir)
        print(f"tiles: {source}")
        for name in args.encoders:
            res = bench(name, folder, pixels, args.batch, workdir)
            results.append(res)
            print(f"{name:>16}: ingest {res['ingest_tiles_per_s']:.1f} tiles/s vs bare encoder "
                  f"{res['bare_tiles_per_s']:.1f} tiles/s (before {res['bare_before']}, after "
                  f"{res['bare_after']}) -> ratio {res['ratio']:.3f} (target >= 0.8)", flush=True)
        ray_results = []
        for name in args.encoders:
            for workers in args.ray_workers:
                res = bench_ray(name, folder, len(pixels), args.batch, workers, workdir)
                ray_results.append(res)
                print(f"{name:>16}: ray, {workers} worker(s): {res['ingest_tiles_per_s']:.1f} "
                      "tiles/s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results + ray_results, indent=2))
    if args.markdown:
        write_markdown(args.markdown, results, ray_results, source)


if __name__ == "__main__":
    main()
