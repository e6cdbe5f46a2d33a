"""Slide → slide search as a library grows: bytes per slide and query time, one- vs two-stage.

For each size N, builds a real library (SQLite ``RecordStore`` + FAISS image index, written
as ``ingest.files`` writes them, with slide summaries computed by ``insert_sources``) of N
synthetic slides from stored vectors: nothing is tiled or encoded, so 10,000 slides fit in
minutes. Then it reports

- bytes per slide of each representation: the raw tile vectors, each stored summary
  (``mean``, ``mosaic``, ``bag``; ``RecordStore.summary_bytes``), the coarse stage's RAM
  (``SlideCatalogue.bytes_in_memory``, float vs binary mosaic codes), the library on disk;
- time per query of the one-stage path (every query tile against every indexed tile, then
  ``aggregate_slides``), and of the two-stage path (``Library.search(slide=..., target=
  "slides")``, float and binary coarse index), median and p95, first (warm-up) call left
  out; the coarse catalogue's build time apart;
- agreement: overlap@10 of two-stage with one-stage (share of one-stage's top 10, query
  slide left out, that two-stage also returns), and family recall@10 of each path.

Synthetic slides: 20 tissue-class centres on the unit sphere; slides come in families of 4
(one "case": the same 2-4 classes, each with a family-specific shift). A slide is a grid of
100-300 tiles whose classes form contiguous Voronoi blocks, each tile its class centre plus
family shift plus noise, normalised. A slide's other family members are its planted nearest
neighbours; every slide is a pure function of (seed, index), so sizes are nested.

Queries: a slide → slide search needs a query slide. An indexed slide's two-stage query uses
its stored summaries when its resolved path is indexed (``Searcher._query_summary``; the
file need not exist), so no pixels are read. The one-stage path would tile and
encode the query slide from pixels; here it runs the same code after encoding
(``Searcher._ranked`` on the query slide's stored tile vectors, evenly subsampled to 64 as
``max_query_tiles``, then ``aggregate_slides``). Neither timing includes encoding.

    python benchmarks/slide_scaling.py --sizes 10 100 1000 10000 \\
        --json docs/slide-scaling.json --markdown docs/slide-scaling.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from histoseek.encoders.base import Encoder, EncoderInfo, Preprocess
from histoseek.index.lock import write_lock
from histoseek.index.store import SourceRecord
from histoseek.library import Library
from histoseek.search.hits import Hit
from histoseek.search.queries import aggregate_slides
from histoseek.search.slide_search import SlideCodes

CLASSES = 20  # global tissue-class centres
FAMILY_SIZE = 4  # slides per family: each one's planted nearest neighbours are the others
FAMILY_SHIFT = 0.6  # norm of a family's per-class shift (class centres have norm 1)
TILE_NOISE = 1.0  # norm of each tile's noise
TILE_L0 = 448  # level-0 px of a 224-px tile at 0.5 mpp on a 0.25-mpp scan
MAX_QUERY_TILES = 64  # Library.search's default max_query_tiles


class StoredVectors(Encoder):
    """Stands in for the image encoder: the library records its dim; nothing is encoded."""

    def __init__(self, dim: int) -> None:
        self.info = EncoderInfo("synthetic-stored-vectors", "1", dim, ("image",), Preprocess())

    def _encode_images(self, tiles: np.ndarray) -> np.ndarray:
        raise RuntimeError("slide_scaling searches stored vectors only: nothing is encoded")


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class SyntheticSlides:
    """Clustered tile vectors on a grid, slide ``i`` a pure function of ``(seed, i)``."""

    def __init__(self, dim: int, seed: int, tiles: tuple[int, int]) -> None:
        self.dim, self.seed, self.tiles = dim, seed, tiles
        self.centres = _unit(np.random.default_rng([seed, 0]).standard_normal((CLASSES, dim)))

    def family(self, f: int) -> tuple[np.ndarray, np.ndarray]:
        """A family's classes and their per-class shifted centres ``[c, dim]``."""
        rng = np.random.default_rng([self.seed, 1, f])
        classes = rng.choice(CLASSES, int(rng.integers(2, 5)), replace=False)
        shifts = FAMILY_SHIFT * _unit(rng.standard_normal((len(classes), self.dim)))
        return classes, self.centres[classes] + shifts

    def slide(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 boxes ``[n, 4]`` and unit vectors ``[n, dim]`` of slide ``i``."""
        rng = np.random.default_rng([self.seed, 2, i])
        classes, means = self.family(i // FAMILY_SIZE)
        n = int(rng.integers(self.tiles[0], self.tiles[1] + 1))
        cols = int(rng.integers(8, 21))
        rows = -(-n // cols)
        grid = np.stack([np.arange(n) % cols, np.arange(n) // cols], axis=1).astype(np.float32)
        seeds = rng.uniform((0, 0), (cols, rows), size=(len(classes), 2))
        block = np.argmin(((grid[:, None] - seeds[None]) ** 2).sum(axis=2), axis=1)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32)
        vectors = _unit(means[block] + TILE_NOISE / np.sqrt(self.dim) * noise)
        boxes = np.hstack([grid.astype(np.int64) * TILE_L0, np.full((n, 2), TILE_L0)])
        return boxes, vectors

    def record(self, i: int, path: Path) -> SourceRecord:
        boxes, vectors = self.slide(i)
        family = i // FAMILY_SIZE
        return SourceRecord(
            path=str(path), name=path.name, sha256=f"synthetic-{self.seed}-{i}", kind="slide",
            width=int((boxes[:, 0] + boxes[:, 2]).max()),
            height=int((boxes[:, 1] + boxes[:, 3]).max()), mpp=0.25, mpp_source="synthetic",
            label=None, source_id=f"family-{family}", metadata={"family": family},
            boxes_l0=boxes, tile_mpp=0.5, tissue=np.ones(len(boxes), np.float32),
            vectors=vectors)


@dataclass(frozen=True)
class Built:
    paths: list[Path]
    tiles: int
    generate_s: float
    build_s: float


def slide_paths(folder: Path, n: int) -> list[Path]:
    """Resolved fake paths (the store keeps sources' paths resolved); no files made."""
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    return [folder / f"slide-{i:05d}.svs" for i in range(n)]


def build(root: Path, slides: SyntheticSlides, n: int, batch: int) -> Built:
    """A library (closed) of ``n`` synthetic slides, ``batch`` records per transaction."""
    lib = Library.create(root / "library", encoder=StoredVectors(slides.dim))
    paths = slide_paths(root / "slides", n)
    generate_s = build_s = 0.0
    tiles = 0
    with write_lock(lib.root):
        index = lib.indexes["image"]
        for start in tqdm(range(0, n, batch), desc=f"building {n:,} slides", unit="batch",
                          dynamic_ncols=True):
            t0 = time.perf_counter()
            records = [slides.record(i, paths[i]) for i in range(start, min(n, start + batch))]
            t1 = time.perf_counter()
            for rec, ids in zip(records, lib.store.insert_sources(records), strict=True):
                index.add(ids, rec.vectors)
                tiles += len(ids)
            lib.indexes.mark_changed("image")
            generate_s += t1 - t0
            build_s += time.perf_counter() - t1
        t0 = time.perf_counter()
        lib.indexes.save()
        build_s += time.perf_counter() - t0
    lib.close()
    return Built(paths, tiles, generate_s, build_s)


def timed(fn: Callable[[int], Any], queries: list[int], desc: str,
          warm_up: Callable[[], Any] | None = None) -> tuple[list[float], list[Any]]:
    """Seconds and result of ``fn(q)`` for each query, after one untimed warm-up call
    (``warm_up``, else ``fn`` on the first query)."""
    warm_up() if warm_up is not None else fn(queries[0])
    seconds, results = [], []
    for q in tqdm(queries, desc=desc, unit="query", leave=False, dynamic_ncols=True):
        t0 = time.perf_counter()
        results.append(fn(q))
        seconds.append(time.perf_counter() - t0)
    return seconds, results


def ms(seconds: list[float], q: float) -> float:
    return round(1e3 * float(np.percentile(seconds, q)), 2)


def overlap(reference: list[str], found: list[str]) -> float:
    return len(set(reference) & set(found)) / max(len(reference), 1)


def family_recall(hits: list[str], family: str, family_paths: dict[str, set[str]],
                  own: str) -> float:
    """Share of the query's other family members among ``hits``."""
    wanted = family_paths[family] - {own}
    return len(wanted & set(hits)) / len(wanted) if wanted else float("nan")


def spread(n: int, count: int) -> list[int]:
    """``count`` slide indices evenly over ``0..n-1`` (repeating when ``count > n``)."""
    return [int(i) % n for i in np.linspace(0, n - 1, count).round()]


def bench_size(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    root = workdir / f"slides-{n}"
    slides = SyntheticSlides(args.dim, args.seed, tuple(args.tiles_per_slide))
    built = build(root, slides, n, args.batch)
    disk = {f.name: f.stat().st_size for f in (root / "library").rglob("*") if f.is_file()}

    t0 = time.perf_counter()
    lib = Library.open(root / "library", encoder=StoredVectors(args.dim))
    lib.indexes["image"]  # FAISS file loaded and checked against SQLite
    open_s = time.perf_counter() - t0
    searcher, store, k = lib._searcher, lib.store, args.k
    summary_bytes = store.summary_bytes()

    queries = spread(n, args.queries)  # two-stage
    one_queries = queries if n < args.large else [  # one-stage: slow at the large sizes
        queries[i] for i in spread(len(queries), min(args.large_one_stage, len(queries)))]
    query_path = {i: str(built.paths[i]) for i in queries}
    family_paths: dict[str, set[str]] = {}
    for source in store.list_sources():
        family_paths.setdefault(source["source_id"], set()).add(source["path"])

    tile_vectors = {}
    for i in set(one_queries):  # what the one-stage path would have after tiling and encoding
        ids, _ = store.source_tiles(store.source_by_path(built.paths[i]))
        keep = np.unique(np.linspace(0, len(ids) - 1, min(MAX_QUERY_TILES, len(ids))).astype(int))
        tile_vectors[i] = store.vectors_for("image", ids[keep], args.dim)

    def one_stage(i: int) -> list[list[Hit]]:
        per_tile = searcher._ranked("image", tile_vectors[i], max(4 * k, 32), None, None)
        aggregate_slides(per_tile, k)
        return per_tile

    first = tile_vectors[one_queries[0]][:1]  # warm-up: one tile is enough to load caches
    one_s, per_tiles = timed(one_stage, one_queries, "one-stage",
                             lambda: searcher._ranked("image", first, k, None, None))
    one_found = [[h.path for h in aggregate_slides(p, k + 1) if h.path != query_path[i]][:k]
                 for i, p in zip(one_queries, per_tiles, strict=True)]
    one_paths = dict(zip(one_queries, one_found, strict=True))
    faiss_bytes = sum(v for name, v in disk.items() if name.endswith(".faiss"))
    row: dict[str, Any] = {
        "slides": n, "tiles": built.tiles, "dim": args.dim,
        "queries": {"one_stage": len(one_queries), "two_stage": len(queries)},
        "generate_s": round(built.generate_s, 1), "build_s": round(built.build_s, 1),
        "open_s": round(open_s, 2),
        "bytes_per_slide": {
            "tile_vectors": round(4 * args.dim * built.tiles / n),
            **{f"summary_{kind}": round(b / n) for kind, b in sorted(summary_bytes.items())},
            "sqlite_on_disk": round((sum(disk.values()) - faiss_bytes) / n),
            "faiss_on_disk": round(faiss_bytes / n)},
        "one_stage_ms": {"median": ms(one_s, 50), "p95": ms(one_s, 95)},
        "family_recall_at_k": {"one_stage": _mean_recall(
            one_found, one_queries, query_path, family_paths)},
    }
    codes: SlideCodes
    for codes in ("float", "binary"):
        t0 = time.perf_counter()
        catalogue = searcher.catalogue(codes)
        row[f"catalogue_{codes}_build_s"] = round(time.perf_counter() - t0, 3)
        row["bytes_per_slide"][f"coarse_ram_{codes}"] = round(catalogue.bytes_in_memory / n)
        # one codes kind at a time: the searcher caches a single catalogue
        seconds, hits = timed(lambda i, c=codes: lib.search(
            slide=query_path[i], target="slides", k=k, slide_codes=c), queries,
            f"two-stage {codes}")
        paths = [[h.path for h in found] for found in hits]
        row[f"two_stage_{codes}_ms"] = {"median": ms(seconds, 50), "p95": ms(seconds, 95)}
        found = dict(zip(queries, paths, strict=True))
        row[f"overlap_at_k_{codes}"] = round(float(np.mean(
            [overlap(one_paths[i], found[i]) for i in one_queries])), 3)
        row["family_recall_at_k"][f"two_stage_{codes}"] = _mean_recall(
            paths, queries, query_path, family_paths)
    lib.close()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return row


def _mean_recall(found: list[list[str]], queries: list[int], query_path: dict[int, str],
                 family_paths: dict[str, set[str]]) -> float:
    scores = [family_recall(hits, f"family-{i // FAMILY_SIZE}", family_paths, query_path[i])
              for hits, i in zip(found, queries, strict=True)]
    kept = [s for s in scores if s == s]
    return round(float(np.mean(kept)), 3) if kept else float("nan")


def tables(rows: list[dict[str, Any]], k: int) -> str:
    def b(v: int) -> str:
        return f"{v / 1024:,.1f} KiB" if v >= 10_240 else f"{v:,} B"

    storage = [
        "| slides | tiles | build s | tile vectors | mean | mosaic | bag | coarse RAM float "
        "| coarse RAM binary | SQLite on disk | FAISS on disk |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p = r["bytes_per_slide"]
        storage.append(
            f"| {r['slides']:,} | {r['tiles']:,} | {r['build_s']} | {b(p['tile_vectors'])} "
            f"| {b(p['summary_mean'])} | {b(p['summary_mosaic'])} | {b(p['summary_bag'])} "
            f"| {b(p['coarse_ram_float'])} | {b(p['coarse_ram_binary'])} "
            f"| {b(p['sqlite_on_disk'])} | {b(p['faiss_on_disk'])} |")
    search = [
        f"| slides | queries (one / two-stage) | one-stage ms (median / p95) "
        f"| two-stage float ms | two-stage binary ms | catalogue build s (float / binary) "
        f"| overlap@{k} float / binary "
        f"| family recall@{k} one / float / binary |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = r["family_recall_at_k"]
        search.append(
            f"| {r['slides']:,} | {r['queries']['one_stage']} / {r['queries']['two_stage']} "
            f"| {r['one_stage_ms']['median']} / {r['one_stage_ms']['p95']} "
            f"| {r['two_stage_float_ms']['median']} / {r['two_stage_float_ms']['p95']} "
            f"| {r['two_stage_binary_ms']['median']} / {r['two_stage_binary_ms']['p95']} "
            f"| {r['catalogue_float_build_s']} / {r['catalogue_binary_build_s']} "
            f"| {r['overlap_at_k_float']} / {r['overlap_at_k_binary']} "
            f"| {f['one_stage']} / {f['two_stage_float']} / {f['two_stage_binary']} |")
    return ("Bytes per slide\n\n" + "\n".join(storage) + "\n\nSearch per query\n\n"
            + "\n".join(search) + "\n")


def environment() -> dict[str, Any]:
    """What the timings depend on: cores, FAISS threads, versions, load at the start."""
    return {"machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(), "numpy": np.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "date": f"{datetime.now(UTC):%Y-%m-%d}"}


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, Any],
             seconds: float) -> str:
    lo, hi = args.tiles_per_slide
    return "\n".join([
        "# Slide → slide search scaling (synthetic slides, stored vectors)", "",
        f"`python benchmarks/slide_scaling.py --sizes {' '.join(map(str, args.sizes))} "
        f"--queries {args.queries}` on {env['date']}: {env['cpus']} CPUs (FAISS "
        f"{env['faiss']}, {env['faiss_threads']} threads; 1-min load {env['load_average_1min']} "
        f"at the start), {seconds / 60:.1f} min in all. {lo}-{hi} tiles per slide, "
        f"{args.dim}-d, k = {args.k}, families of {FAMILY_SIZE} slides; the script's docstring "
        "says what is measured. Times exclude encoding (neither path encodes here) and the "
        f"first, warm-up call; from {args.large:,} slides on, one-stage runs only "
        f"{args.large_one_stage} queries (tens of seconds each).", "",
        tables(rows, args.k),
        "Bytes per slide: tile vectors are the float32 tile embeddings alone; mean / mosaic / "
        "bag are the stored summaries (vectors, tile ids, boxes, weights); coarse RAM is what "
        "the two-stage catalogue holds in memory; SQLite on disk is the database file (tiles "
        "with their vectors, summaries, sources), FAISS on disk the flat image index (which "
        "one-stage search holds in RAM).",
        "",
        f"overlap@{args.k}: share of the one-stage top {args.k} (query slide left out, as "
        "two-stage leaves it out) that two-stage also returns, over the one-stage queries. "
        f"Family recall: share of the query's {FAMILY_SIZE - 1} planted family members in "
        f"the top {args.k}. The synthetic families are well separated, so these say whether "
        "two-stage finds what exhaustive search finds on easy data, not how either ranks "
        "real slides.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    parser.add_argument("--queries", type=int, default=20,
                        help="queries per size (query slides repeat when a size is smaller)")
    parser.add_argument("--large", type=int, default=10_000,
                        help="from this size on, one-stage runs --large-one-stage queries")
    parser.add_argument("--large-one-stage", type=int, default=5,
                        help="one-stage queries at the large sizes (tens of s each)")
    parser.add_argument("--dim", type=int, default=512, help="histoseek-base's dim")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tiles-per-slide", type=int, nargs=2, default=[100, 300],
                        metavar=("MIN", "MAX"))
    parser.add_argument("--batch", type=int, default=250, help="slides per insert transaction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="libraries go here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the libraries")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args()
    env = environment()
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="histoseek-slide-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.sizes:
            rows.append(bench_size(n, args, workdir))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    print(tables(rows, args.k))
    print(f"wall time {seconds:.0f} s")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}
        args.json.write_text(json.dumps({"settings": settings, "environment": env,
                                         "wall_s": round(seconds, 1), "results": rows},
                                        indent=2, default=str) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(rows, args, env, seconds))


if __name__ == "__main__":
    main()
