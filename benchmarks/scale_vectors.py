"""Vector indexes at scale (issue 14): build time, memory, latency and recall, 250k to 10M.

Synthetic 728-d unit vectors (histoseek-base's dimension) are a pure function of their id
(``SyntheticVectors.rows``), so a chunk, or a single re-ranking candidate, is regenerated
instead of stored: 10M x 728 float32 (29 GB) is never held. Each index kind grows in its own
subprocess through the sizes asked for (peak RSS per kind, reset between phases via
``/proc/self/clear_refs``); at each size it records build time, peak and resident memory,
serialized bytes, single-query latency (p50/p99) of histoseek's search and of raw FAISS on the
same index, and recall@10 against exact search (brute force over regenerated chunks).

- ``flat``, ``hnsw``, ``ivfpq``: ``histoseek.index.vectors.FaissIndex`` (efSearch 128,
  nprobe 16, M 32); IVF-PQ re-ranks ``k * RESCORE_FACTOR`` candidates exactly with
  ``histoseek.index.rescore.rescore``, the float vectors regenerated from their ids.
- ``binary``: ``histoseek.index.binary_codes`` (SimHash, 728 bits) in ``faiss.IndexBinaryFlat``,
  re-ranked the same way.
- ``Library.search`` against raw FAISS on the library's own index: ``bench_search``'s
  ``build_library`` (``--library flat:1000000 hnsw:100000``).

    python benchmarks/scale_vectors.py --markdown   # all defaults: ~70 min on 2 quiet cores
    python benchmarks/scale_vectors.py --kinds ivfpq --merge --markdown   # one kind, kept others
    python benchmarks/scale_vectors.py --kinds flat hnsw --sizes 1000000 10000000 --library
    python benchmarks/scale_vectors.py --render     # docs from docs/scaling-vectors.json

Most of the time is the IVF-PQ build to 10M (PQ encoding, ~125 us a vector) and HNSW to 1M
(~0.8 ms an insert); the exact neighbours (~8 min to 10M) are cached in ``CACHE``. On a
loaded machine multiply by 2-4.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from histoseek.index.binary_codes import binary_codes
from histoseek.index.rescore import RESCORE_FACTOR, rescore
from histoseek.index.vectors import FaissIndex

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "scaling.md"
RESULTS = ROOT / "docs" / "scaling-vectors.json"
PLOT = ROOT / "docs" / "images" / "scaling" / "latency-vs-size.png"
DIM = 728  # histoseek-base: EfficientNet-Lite0 taps (472) + tuned branch (256)
KINDS = ("flat", "hnsw", "ivfpq", "binary")
DEFAULT_SIZES = {"flat": [250_000, 500_000, 1_000_000, 2_000_000],
                 "hnsw": [250_000, 500_000, 1_000_000],
                 "ivfpq": [250_000, 500_000, 1_000_000, 2_000_000, 10_000_000],
                 "binary": [250_000, 500_000, 1_000_000, 2_000_000, 10_000_000]}
DEFAULT_LIBRARY = ["flat:1000000", "hnsw:100000"]
SLIDE_TILES = 1_000  # IVF-PQ fills as ingest does, a slide per add, until FaissIndex trains
QUERY_POOL = 100_000  # queries perturb rows below this, the same in every run
CACHE = Path(tempfile.gettempdir()) / "histoseek-scale-cache"  # exact neighbours, reused
WIDE_FETCH = 400  # a second, wider candidate pool for the compressed kinds (recall only)
_U64 = np.uint64
_SALT_LABEL, _SALT_LATENT, _SALT_NOISE, _SALT_QUERY = (
    _U64(0x5A17 << 48), _U64(0x1A7E << 48), _U64(0x0015E << 44), _U64(0x0E77 << 48))


# -- memory of this process ------------------------------------------------------------------
def _status_mb(field_name: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field_name}:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """Peak RSS (VmHWM) since the process started or since ``reset_peak``."""
    return _status_mb("VmHWM")


def reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):  # else peaks run from the start: later ones overstate
        Path("/proc/self/clear_refs").write_text("5")


# -- synthetic vectors -----------------------------------------------------------------------
def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on uint64 counters: a counter-based generator."""
    z *= _U64(0x9E3779B97F4A7C15)
    t = z >> _U64(30)
    z ^= t
    z *= _U64(0xBF58476D1CE4E5B9)
    np.right_shift(z, _U64(27), out=t)
    z ^= t
    z *= _U64(0x94D049BB133111EB)
    np.right_shift(z, _U64(31), out=t)
    z ^= t
    return z


def _random_bytes(ids: np.ndarray, n_bytes: int, salt: np.uint64) -> np.ndarray:
    """int8 ``[len(ids), n_bytes]``, uniform, a pure function of (id, column, salt)."""
    words = n_bytes // 8
    counters = ids.astype(_U64)[:, None] * _U64(words) + np.arange(words, dtype=_U64)
    counters ^= salt
    return _mix(counters).view(np.int8).reshape(len(ids), n_bytes)


@dataclass(frozen=True)
class SyntheticVectors:
    """Clustered unit vectors: ``x_i = unit(c[l_i] + 0.15 * z_i @ B + 0.3 * e_i)``.

    ``c`` are ``centres`` random unit directions (cluster ``l_i`` drawn per id), ``B`` a random
    ``latent_dim``-d basis shared by all clusters (stain, focus, tissue variation), ``z_i``
    approximately standard normal (sum of four uniform bytes), ``e_i`` unit-norm noise with
    iid uniform coordinates. Within a cluster the exact neighbours are the latent-near rows,
    distinct rather than near-ties, as with real tile embeddings; across clusters cosines
    are near 0. Everything is a function of (seed, id): sizes are prefixes of one sequence,
    and any row can be regenerated alone (about 20 us a row for re-ranking).
    """

    dim: int = DIM
    centres: int = 10_000
    latent_dim: int = 16
    seed: int = 14

    @cached_property
    def _centres(self) -> np.ndarray:
        """Centres plus the mean of the noise (uniform int8 has mean -0.5), folded in once."""
        rng = np.random.default_rng(self.seed)
        centres = rng.standard_normal((self.centres, self.dim), np.float32)
        centres /= np.float32(np.sqrt(self.dim))
        centres += np.float32(0.5) * self._noise_scale
        return centres

    @cached_property
    def _basis(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        basis = rng.standard_normal((self.latent_dim, self.dim), np.float32)
        return basis * np.float32(0.15 / np.sqrt(self.dim) / 147.8)  # 4 int8s: std 147.8

    @property
    def _noise_scale(self) -> np.float32:
        return np.float32(0.3 / (73.9 * np.sqrt(self.dim)))  # uniform int8: std 73.9

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 unit rows ``[len(ids), dim]`` of the given int ids (any order, repeats ok)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        labels = (_mix(ids.astype(_U64) ^ _SALT_LABEL) % _U64(self.centres)).astype(np.int64)
        latent = _random_bytes(ids, 4 * self.latent_dim, _SALT_LATENT).reshape(
            len(ids), self.latent_dim, 4).sum(axis=2, dtype=np.int16).astype(np.float32)
        out = self._centres[labels]
        part = latent @ self._basis
        out += part
        np.multiply(_random_bytes(ids, self.dim, _SALT_NOISE), self._noise_scale, out=part)
        out += part
        out /= np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]
        return out

    def chunks(self, start: int, stop: int, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(start, stop, chunk):
            ids = np.arange(lo, min(stop, lo + chunk), dtype=np.int64)
            yield ids, self.rows(ids)

    def queries(self, n: int, near_below: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` queries near the data: rows below ``near_below`` plus a 0.25-norm nudge."""
        sources = np.sort(np.random.default_rng(self.seed).choice(near_below, n, replace=False))
        nudge = _random_bytes(np.arange(n, dtype=np.int64), self.dim, _SALT_QUERY).astype(
            np.float32) + 0.5
        nudge /= np.linalg.norm(nudge, axis=1, keepdims=True)
        q = self.rows(sources) + 0.25 * nudge
        return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), sources


def exact_neighbours(gen: SyntheticVectors, queries: np.ndarray, sizes: list[int], k: int,
                     chunk: int, log: Callable[[str], None] = print) -> dict[int, np.ndarray]:
    """Exact top-``k`` ids ``[q, k]`` over the first N rows, for every N in ``sizes``."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    top = max(sizes)
    stops = sorted({*range(chunk, top, chunk), *sizes})
    out, start, t0 = {}, 0, time.perf_counter()
    for stop in stops:
        ids = np.arange(start, stop, dtype=np.int64)
        scores = queries @ gen.rows(ids).T
        take = min(k, len(ids))
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        cand_s = np.hstack([best_s, np.take_along_axis(scores, part, 1)])
        cand_i = np.hstack([best_i, ids[part]])
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
        if stop in sizes:
            out[stop] = best_i.copy()
            log(f"[truth] exact top-{k} over {stop:,} rows ({time.perf_counter() - t0:.0f} s)")
        start = stop
    return out


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean |found top-k ∩ exact top-k| / k over queries."""
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k
                          for f, t in zip(found, truth, strict=True)]))


# -- one index kind through its sizes ----------------------------------------------------------
@dataclass
class Settings:
    """One run's choices; written to the work folder so each subprocess reads the same."""

    kinds: list[str]
    sizes: dict[str, list[int]]
    library: list[str]
    queries: int = 200
    latency_queries: int = 200
    latency_seconds: float = 20.0
    chunk: int = 50_000
    k: int = 10
    ivfpq_first_add: int | None = None  # None: slide-sized adds, as ingest fills a library
    generator: dict[str, int] = field(default_factory=lambda: asdict(SyntheticVectors()))

    @property
    def all_sizes(self) -> list[int]:
        lib = [int(s.split(":")[1]) for s in self.library]
        return sorted({n for kind in self.kinds for n in self.sizes[kind]} | set(lib))


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C++ writes to fd 2 (FAISS clustering warnings) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _serialized_bytes(index: Any, kind: str) -> int:
    """Bytes FAISS writes for the index, counted through a callback (no copy in memory)."""
    total = [0]

    def count(buf: bytes) -> int:
        total[0] += len(buf)
        return len(buf)

    writer = faiss.PyCallbackIOWriter(count)
    if kind == "binary":
        faiss.write_index_binary(index, writer)
    else:
        faiss.write_index(index.index, writer)
    del writer
    return total[0]


def _raw(index: Any, kind: str) -> Any:
    """The FAISS index the histoseek wrapper searches, set up with the same parameters."""
    if kind == "binary":
        return index
    inner = faiss.downcast_index(index.index.index)
    if kind == "hnsw":
        inner.hnsw.efSearch = index.ef_search
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = index.nprobe
    return inner


def _time_latency(run: Callable[[int], float], raw: Callable[[int], None], n_max: int,
                  seconds: float, at_least: int = 20) -> dict[str, Any]:
    """Single-query loop over query numbers, histoseek and raw interleaved in blocks of 10;
    stops after ``n_max`` queries or ``seconds`` (but not before ``at_least``)."""
    for i in range(3):  # warm caches
        run(i)
        raw(i)
    total, search, rerank, raw_t = [], [], [], []
    t_start = time.perf_counter()
    for lo in range(0, n_max, 10):
        block = range(lo, min(n_max, lo + 10))
        for i in block:
            t0 = time.perf_counter()
            r = run(i)
            total.append(time.perf_counter() - t0)
            rerank.append(r)
            search.append(total[-1] - r)
        for i in block:
            t0 = time.perf_counter()
            raw(i)
            raw_t.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > seconds and len(total) >= at_least:
            break
    ms = lambda xs, p: round(1e3 * float(np.percentile(xs, p)), 3)  # noqa: E731
    return {"p50_ms": ms(total, 50), "p99_ms": ms(total, 99), "search_p50_ms": ms(search, 50),
            "rerank_p50_ms": ms(rerank, 50), "raw_p50_ms": ms(raw_t, 50),
            "ratio_vs_raw": round(float(np.median(search) / np.median(raw_t)), 3),
            "latency_queries": len(total)}


def latency(run: Callable[[int], float], raw: Callable[[int], None], n_max: int,
            seconds: float) -> dict[str, Any]:
    """``_time_latency`` with one thread (FAISS OpenMP and BLAS), then a shorter loop with the
    default threads (``*_2t``): on a busy machine each multi-threaded region in a single
    query can wait a scheduler slice for its second thread."""
    with threadpool_limits(1):
        out = _time_latency(run, raw, n_max, seconds)
    two = _time_latency(run, raw, min(n_max, 40), seconds / 4, at_least=10)
    out.update({f"{key}_2t": two[key] for key in ("p50_ms", "p99_ms", "raw_p50_ms",
                                                  "ratio_vs_raw")})
    return out


def measure_kind(kind: str, sizes: list[int], gen: SyntheticVectors, queries: np.ndarray,
                 truth: dict[int, np.ndarray], settings: Settings, workdir: Path,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Grow one index through ``sizes``; one result row per size (see the module docstring)."""
    k, bits = settings.k, -(-gen.dim // 8) * 8
    fetch = k * RESCORE_FACTOR
    _ = gen._centres, gen._basis
    reset_peak()
    baseline = rss_mb()
    index: Any = faiss.IndexBinaryFlat(bits) if kind == "binary" else FaissIndex(gen.dim, kind)
    first_add = settings.ivfpq_first_add if kind == "ivfpq" else None
    label = f"ivfpq-t{first_add // 1000}k" if first_add else kind
    built, build_s, results = 0, 0.0, []
    codes_q = binary_codes(queries, bits) if kind == "binary" else None
    for n in sorted(sizes):
        reset_peak()
        t_seg = time.perf_counter()
        lo = built
        while lo < n:
            slide_sized = kind == "ivfpq" and index.is_exact and not first_add  # trains at 4,096
            step = first_add if first_add and lo == 0 else settings.chunk
            hi = min(n, lo + (SLIDE_TILES if slide_sized else step))
            ids = np.arange(lo, hi, dtype=np.int64)
            x = gen.rows(ids)
            t0 = time.perf_counter()
            if kind == "binary":
                index.add(binary_codes(x, bits))  # positions are the ids
            else:
                with _quiet_stderr() if slide_sized else contextlib.nullcontext():
                    index.add(ids, x)  # (PQ training on ~5k rows warns once per sub-quantizer)
            build_s += time.perf_counter() - t0
            del x
            lo = hi
            if hi % (20 * settings.chunk) == 0 or hi == n:
                log(f"[{kind}] {hi:,} / {n:,} added ({build_s:.0f} s in index.add, "
                    f"{time.perf_counter() - t_seg:.0f} s this segment)")
        built = n
        row: dict[str, Any] = {"kind": label, "n": n, "build_s": round(build_s, 1),
                               "baseline_rss_mb": round(baseline), "build_peak_mb": round(
                                   peak_mb()), "index_rss_mb": round(rss_mb() - baseline)}
        row["index_bytes"] = _serialized_bytes(index, kind)
        row["bytes_per_vector"] = round(row["index_bytes"] / n, 1)
        row["rss_bytes_per_vector"] = round(row["index_rss_mb"] * 2**20 / n, 1)
        if kind == "ivfpq":
            inner = faiss.downcast_index(index.index.index)
            row.update(nlist=int(inner.nlist), pq_m=int(inner.pq.M), nprobe=index.nprobe)
        if kind != "binary" and n == min(sizes):
            reset_peak()
            before = rss_mb()
            index.save(workdir / f"save-{kind}.faiss")
            row["save_extra_peak_mb"] = round(peak_mb() - before)
            (workdir / f"save-{kind}.faiss").unlink()
        raw = _raw(index, kind)
        reset_peak()
        row.update(_recall(kind, index, queries, codes_q, truth[n], gen, k, fetch, bits))
        run, raw_search = _search_fns(kind, index, raw, gen, queries, k, fetch, bits)
        row.update(latency(run, raw_search, min(settings.latency_queries, len(queries)),
                           settings.latency_seconds))
        row["query_peak_mb"] = round(peak_mb())
        row["serving_rss_mb"] = round(rss_mb() - baseline)  # with FaissIndex's cached id array
        log(f"[{kind}] N={n:,}: build {row['build_s']} s, peak {row['build_peak_mb']} MB, "
            f"index {row['index_rss_mb']} MB RSS / {row['index_bytes'] / 2**20:.0f} MB "
            f"serialized; p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms "
            f"({row['latency_queries']} q); recall@{k} {row['recall_at_10']:.3f}; "
            f"wrapper/raw {row['ratio_vs_raw']}; 2 threads: p50 {row['p50_ms_2t']} ms, "
            f"wrapper/raw {row['ratio_vs_raw_2t']}")
        results.append(row)
    return results


def _search_fns(kind: str, index: Any, raw: Any, gen: SyntheticVectors, queries: np.ndarray,
                k: int, fetch: int, bits: int
                ) -> tuple[Callable[[int], float], Callable[[int], None]]:
    """Query ``i`` through histoseek (returning the seconds spent re-ranking) and through raw
    FAISS (no re-ranking; binary: on a precomputed code), for the latency loop."""
    if kind in ("flat", "hnsw"):
        def run(i: int) -> float:
            index.search(queries[i], k)
            return 0.0

        return run, lambda i: raw.search(queries[i : i + 1], k)
    codes = binary_codes(queries, bits) if kind == "binary" else queries

    def run_compressed(i: int) -> float:
        q = queries[i : i + 1]
        _, cand = index.search(binary_codes(q, bits) if kind == "binary" else q, fetch)
        t0 = time.perf_counter()
        rescore(q, cand, gen.rows, k)
        return time.perf_counter() - t0

    return run_compressed, lambda i: raw.search(codes[i : i + 1], fetch)


def _recall(kind: str, index: Any, queries: np.ndarray, codes_q: np.ndarray | None,
            truth: np.ndarray, gen: SyntheticVectors, k: int, fetch: int,
            bits: int) -> dict[str, Any]:
    """Recall@k of the batch search; compressed kinds also without re-ranking and with a
    wider candidate pool."""
    if kind in ("flat", "hnsw"):
        return {"recall_at_10": round(recall_at(index.search(queries, k)[1], truth, k), 4)}
    wide = min(WIDE_FETCH, index.ntotal if kind == "binary" else len(index))
    _, cand = index.search(codes_q if kind == "binary" else queries, wide)
    out = {"recall_at_10": round(recall_at(rescore(queries, cand[:, :fetch], gen.rows, k)[1],
                                           truth, k), 4),
           "recall_no_rerank": round(recall_at(cand[:, :k], truth, k), 4),
           f"recall_rerank_{wide}": round(recall_at(rescore(queries, cand, gen.rows, k)[1],
                                                    truth, k), 4),
           "fetch": fetch}
    inner = faiss.downcast_index(index.index.index) if kind == "ivfpq" else None
    if isinstance(inner, faiss.IndexIVF):  # how much is the probing's doing (nprobe 16)
        for nprobe in (64, inner.nlist):
            params = faiss.SearchParametersIVF()
            params.nprobe = nprobe
            _, cand = index.index.search(queries, fetch, params=params)
            out[f"recall_nprobe_{'all' if nprobe == inner.nlist else nprobe}"] = round(
                recall_at(rescore(queries, cand, gen.rows, k)[1], truth, k), 4)
    return out


# -- Library.search against raw FAISS (bench_search's library) ---------------------------------
def measure_library(kind: str, n: int, gen: SyntheticVectors, queries: np.ndarray,
                    truth: np.ndarray, settings: Settings, workdir: Path,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build a real library of the first ``n`` rows (``bench_search.build_library``), then
    time ``Library.search`` against a raw search of the library's own FAISS index."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_search import build_library

    k = settings.k
    path = workdir / f"vectors-{n}.f32"  # file-backed, so the copy handed in is not anonymous RAM
    vectors = np.memmap(path, np.float32, "w+", shape=(n, gen.dim))
    for ids, x in gen.chunks(0, n, settings.chunk):
        vectors[ids[0] : ids[-1] + 1] = x
    vectors.flush()
    reset_peak()
    baseline = rss_mb()
    t0 = time.perf_counter()
    root = workdir / f"lib-{kind}-{n}"
    lib = build_library(root, vectors, kind)
    row: dict[str, Any] = {"kind": kind, "n": n, "build_s": round(time.perf_counter() - t0, 1),
                           "baseline_rss_mb": round(baseline), "build_peak_mb": round(peak_mb()),
                           "sqlite_bytes_per_tile": round(
                               (root / "library.sqlite").stat().st_size / n, 1),
                           "faiss_file_bytes": (root / "vectors" / "image.faiss").stat().st_size}
    log(f"[library {kind}] built {n:,} tiles in {row['build_s']} s, peak {row['build_peak_mb']} MB")
    index = lib.indexes["image"]
    raw = _raw(index, kind)
    first_id = int(lib.store.all_ids("image").min())
    got = np.array([[h.id - first_id for h in lib.search(vector=q, k=k)] for q in queries[:50]])
    row["recall_at_10"] = round(recall_at(got, truth[:50], k), 4)  # 50 queries, as bench_search

    def lib_search(i: int) -> float:
        lib.search(vector=queries[i], k=k)
        return 0.0

    row.update(latency(lib_search, lambda i: raw.search(queries[i : i + 1], k),
                       min(settings.latency_queries, len(queries)), settings.latency_seconds))
    lib.close()
    for key in ("p50_ms", "p99_ms", "p50_ms_2t", "p99_ms_2t"):
        row[f"library_{key}"] = row.pop(key)
    row["ratio"], row["ratio_2t"] = row.pop("ratio_vs_raw"), row.pop("ratio_vs_raw_2t")
    del row["search_p50_ms"], row["rerank_p50_ms"]
    log(f"[library {kind}] N={n:,}: Library.search p50 {row['library_p50_ms']} ms vs raw "
        f"{row['raw_p50_ms']} ms -> ratio {row['ratio']} (target <= 1.2; 2 threads "
        f"{row['ratio_2t']}); recall@{k} {row['recall_at_10']:.3f}")
    return row


# -- docs/scaling.md ---------------------------------------------------------------------------
def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``
    (appending the block if absent), leaving every other section as it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Scaling (issue 14)\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def table(head: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned."""
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _order(row: dict[str, Any]) -> tuple[int, str, int]:
    return KINDS.index(row["kind"].split("-")[0]), row["kind"], row["n"]


def _by_kind(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=_order):
        out.setdefault(r["kind"], []).append(r)
    return out


def _opt(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.3f}" if key in row else "—"


def _g(v: float) -> str:
    """Three significant figures, no exponent (table cells)."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _human(n_bytes: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes / 1e3:.3g} kB"


def _ms(ms: float) -> str:
    return f"{ms / 1e3:.3g} s" if ms >= 1e3 else f"{ms:.3g} ms"


def _ram_per_vector(row: dict[str, Any]) -> float:
    """Resident bytes per vector while serving: after the queries (FaissIndex then also
    caches its id array), else after the build."""
    return max(row["index_rss_mb"], row.get("serving_rss_mb", 0)) * 2**20 / row["n"]


def extrapolate(rs: list[dict[str, Any]], n: float) -> dict[str, float]:
    """Figures at ``n`` from the largest measured size by each kind's cost model: a query
    scans all codes (flat, binary) or a fixed share of them (IVF-PQ: histoseek's nlist stays
    128), so latency grows like N; HNSW's graph search like log N, its build like N log N;
    memory per vector stays the largest size's."""
    last = rs[-1]
    grow = n / last["n"]
    query = math.log(n) / math.log(last["n"]) if last["kind"] == "hnsw" else grow
    build = grow * (math.log(n) / math.log(last["n"]) if last["kind"] == "hnsw" else 1.0)
    return {"build_s": last["build_s"] * build, "p50_ms": last["p50_ms"] * query,
            "p99_ms": last["p99_ms"] * query, "ram_bytes": _ram_per_vector(last) * n,
            "file_bytes": last["bytes_per_vector"] * n}


def growth_exponent(rs: list[dict[str, Any]], key: str) -> float:
    """Measured ``b`` in ``key ~ N^b`` between the smallest and largest sizes (nan for one)."""
    first, last = rs[0], rs[-1]
    if last["n"] == first["n"]:
        return float("nan")
    return math.log(last[key] / first[key]) / math.log(last["n"] / first["n"])


def plot_growth(rows: list[dict[str, Any]], path: Path, target: int = 10_000_000) -> None:
    """p50 latency and resident index memory against N, log-log; dashed = extrapolated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4.8))
    colours = dict(zip(KINDS, plt.cm.tab10.colors, strict=False))
    for i, (kind, rs) in enumerate(_by_kind(rows).items()):
        colour = colours.get(kind, plt.cm.tab10.colors[4 + i % 6])
        ns = [r["n"] for r in rs]
        lat.plot(ns, [r["p50_ms"] for r in rs], "o-", color=colour, label=kind)
        mem.plot(ns, [r["index_rss_mb"] / 1024 for r in rs], "o-", color=colour, label=kind)
        if ns[-1] < target and kind in KINDS:  # variants: measured points only
            far = extrapolate(rs, target)
            lat.plot([ns[-1], target], [rs[-1]["p50_ms"], far["p50_ms"]], "--", color=colour)
            lat.plot([target], [far["p50_ms"]], "o", mfc="none", color=colour)
            mem.plot([ns[-1], target], [rs[-1]["index_rss_mb"] / 1024, far["ram_bytes"] / 2**30],
                     "--", color=colour)
            mem.plot([target], [far["ram_bytes"] / 2**30], "o", mfc="none", color=colour)
    lat.set(xscale="log", yscale="log", xlabel="vectors in the index (728-d)",
            ylabel="p50 single-query latency (ms)",
            title="Latency (IVF-PQ, binary: with exact re-ranking)")
    mem.set(xscale="log", yscale="log", xlabel="vectors in the index (728-d)",
            ylabel="index resident memory (GiB)", title="Memory (RSS growth of the process)")
    for ax in (lat, mem):
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = lat.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               title="solid: measured; dashed to a hollow point: extrapolated",
               title_fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def vector_section(results: dict[str, Any], plot: Path, doc: Path) -> str:
    """The measured tables, the extrapolations and the plot, as markdown."""
    rows, library, st = results["rows"], results["library"], results["settings"]
    lib_ratio = {(r["kind"], r["n"]): r["ratio"] for r in library}
    out = [
        "## Vector indexes from 250k to 10M (`benchmarks/scale_vectors.py`)", "",
        f"Synthetic {DIM}-d unit vectors, clustered ({st['generator']['centres']:,} centres, a "
        f"{st['generator']['latent_dim']}-d latent spread, a little full-rank noise; see "
        "`SyntheticVectors`); every size is a prefix of one id sequence and each vector is a "
        f"function of its id. {st['queries']} queries are perturbed data points; recall@10 is "
        "against exact search (brute force over regenerated chunks). Latency is one query at "
        f"a time (up to {st['latency_queries']} queries, or {st['latency_seconds']:.0f} s per "
        "row, at least 20), on a 2-core machine shared with other jobs. Indexes are "
        "histoseek's `FaissIndex` with its defaults (HNSW M 32, efConstruction 80, efSearch "
        "128; IVF-PQ nprobe 16, 56 one-byte sub-quantizers) and, for binary, 728-bit SimHash "
        "codes (`histoseek.index.binary_codes`) in `faiss.IndexBinaryFlat`. IVF-PQ is filled "
        f"as ingest fills a library, one {SLIDE_TILES:,}-tile slide per add, so it trains "
        "once at 4,096 vectors (nlist 128); `ivfpq-t20k` makes the first add 20k vectors "
        "(`--ivfpq-first-add 20000`). IVF-PQ and binary "
        f"fetch k x {RESCORE_FACTOR} = 40 candidates and re-rank them exactly "
        "(`histoseek.index.rescore`), the float vectors regenerated from their ids. "
        "*wrapper/raw*: histoseek's `FaissIndex.search` (binary: plus computing the SimHash "
        "code) against the raw FAISS index inside it; *Library/raw*: `Library.search` against "
        "the library's own FAISS index (below).", "",
        "Build peak is the process's peak RSS while adding up to N (it includes the "
        "baseline and one generated chunk); index RSS is the growth of the process's resident "
        "memory (B/vector RSS: after the queries, with FaissIndex's cached id array); file "
        "is what `faiss.write_index` writes. *2 thr.*: the same with FAISS and BLAS on their "
        "default two threads instead of one (each multi-threaded region in a single query "
        "then waits for a second core that other jobs hold).", "",
        table(["kind", "N", "build s", "build peak RSS MB", "index RSS MB", "file MB",
               "file B/vector", "RSS B/vector", "p50 ms", "p99 ms", "recall@10",
               "wrapper/raw", "Library/raw", "p50 ms 2 thr.", "wrapper/raw 2 thr."],
              [[r["kind"], r["n"], _g(r["build_s"]), r["build_peak_mb"], r["index_rss_mb"],
                round(r["index_bytes"] / 2**20), _g(r["bytes_per_vector"]),
                _g(_ram_per_vector(r)), _g(r["p50_ms"]), _g(r["p99_ms"]),
                f"{r['recall_at_10']:.3f}", f"{r['ratio_vs_raw']:.2f}",
                lib_ratio.get((r["kind"], r["n"]), "—"), _g(r["p50_ms_2t"]),
                f"{r['ratio_vs_raw_2t']:.2f}"] for r in sorted(rows, key=_order)]),
    ]
    compressed = [r for r in rows if r["kind"].startswith("ivfpq") or r["kind"] == "binary"]
    if compressed:
        wide = next(k for k in compressed[0] if k.startswith("recall_rerank_"))
        out += ["Compressed kinds: recall from the codes alone, after exact re-ranking of "
                f"40 or {wide[14:]} candidates, and (IVF-PQ) after re-ranking 40 when probing "
                "64 or all lists instead of 16; the latency split.", "",
                table(["kind", "N", "recall@10 codes only", "re-rank 40", f"re-rank {wide[14:]}",
                       "nprobe 64", "nprobe all", "search p50 ms", "re-rank p50 ms",
                       "nlist / PQ bytes"],
                      [[r["kind"], r["n"], f"{r['recall_no_rerank']:.3f}",
                        f"{r['recall_at_10']:.3f}", f"{r.get(wide, float('nan')):.3f}",
                        _opt(r, "recall_nprobe_64"), _opt(r, "recall_nprobe_all"),
                        _g(r["search_p50_ms"]), _g(r["rerank_p50_ms"]),
                        f"{r['nlist']} / {r['pq_m']}" if "nlist" in r else "— / 91 (SimHash)"]
                       for r in sorted(compressed, key=_order)])]
    if library:
        out += ["`Library.search` against raw FAISS on the same index (`bench_search."
                "build_library`: a real library, vectors in SQLite, records and typed hits). "
                "The baseline includes the input vectors, handed in memory-mapped from a "
                "file; the peak includes filling FAISS from SQLite and saving it:",
                "", table(["kind", "N", "build s", "baseline RSS MB", "build peak RSS MB",
                           "SQLite B/tile",
                           "Library p50 ms", "Library p99 ms", "raw p50 ms",
                           "ratio (target <= 1.2)", "recall@10 (50 q)",
                           "Library p50 ms 2 thr.", "raw p50 ms 2 thr.", "ratio 2 thr."],
                          [[r["kind"], r["n"], _g(r["build_s"]), r["baseline_rss_mb"],
                            r["build_peak_mb"],
                            _g(r["sqlite_bytes_per_tile"]), _g(r["library_p50_ms"]),
                            _g(r["library_p99_ms"]), _g(r["raw_p50_ms"]), f"{r['ratio']:.2f}",
                            f"{r['recall_at_10']:.3f}", _g(r["library_p50_ms_2t"]),
                            _g(r["raw_p50_ms_2t"]), f"{r['ratio_2t']:.2f}"]
                           for r in library])]
    extra = [[kind, 10_000_000, _g(e["build_s"]), round(e["ram_bytes"] / 2**20),
              round(e["file_bytes"] / 2**20), _g(e["p50_ms"]), _g(e["p99_ms"]),
              f"{b:.2f}" if not math.isnan(b := growth_exponent(rs, "p50_ms")) else "—"]
             for kind, rs in _by_kind(rows).items() if rs[-1]["n"] < 10_000_000
             and kind in KINDS for e in [extrapolate(rs, 10_000_000)]]
    if extra:
        out += ["**Extrapolated, not measured** (10M does not fit this machine for these "
                "kinds, or was not run): from the largest measured size by each kind's cost "
                "model (flat, binary, IVF-PQ with histoseek's fixed nlist: latency and build "
                "linear in N; HNSW: latency ~ log N, build ~ N log N), memory from that size's "
                "bytes per vector. The last column is the growth measured, b in p50 ~ N^b "
                "between the smallest and largest sizes (noisy on this shared machine).", "",
                table(["kind", "N", "build s", "index RSS MB", "file MB", "p50 ms", "p99 ms",
                       "measured p50 growth b"], extra)]
    out += [f"![p50 latency and index memory against N]({plot.relative_to(doc.parent)})", ""]
    out += ["Runs (wall time of each step, in seconds; `truth` is the exact search, cached "
            "between runs):", ""]
    out += [f"- `python benchmarks/scale_vectors.py {run['command']}`: "
            f"{run.get('total_seconds', '?')} s (" + ", ".join(
                f"{k} {v}" + (f" at load {run['step_load'][k]}" if k in run.get(
                    "step_load", {}) else "") for k, v in run["step_seconds"].items()) + ")"
            + (f"; {run['note']}" if "note" in run else "")
            for run in results.get("runs", [])]
    out.append("")
    return "\n".join(out)


VERDICTS = {
    "flat": "Every query reads the whole index, so latency is memory bandwidth: even split over "
            "every core of the servers it stays around a second. Exact search suits re-ranking "
            "and libraries up to ~10^7 vectors.",
    "hnsw": "Latency grows slowly, but RAM is the float vectors plus the graph, so the cost is "
            "servers; the build is the long pole (a 64-core server divides it by ~30), and "
            "histoseek rebuilds the whole graph after any removal (HNSW cannot delete: "
            "`FaissIndex.remove` returns False, `SpaceIndexes.remove` calls `rebuild`).",
    "ivfpq": "Fits one server, but histoseek trains it once, at 4,096 vectors (nlist 128), so "
             "every query scans 16/128 of all codes and latency grows linearly (the "
             "extrapolation); with nlist near 4 sqrt(N) (126k at 10^9) a query would scan ~16 N / "
             "nlist = 130k codes. Re-ranking reads 40 float vectors from SQLite per query.",
    "binary": "Fits one server, but `IndexBinaryFlat` scans every code, so latency is linear in "
              "N; an inverted or graph index over the codes (`IndexBinaryIVF`, "
              "`IndexBinaryHNSW`) is needed, re-ranking from SQLite as IVF-PQ does.",
}


def sizing_section(results: dict[str, Any], n: float = 1e9) -> str:
    """RAM, disk and hardware for 10^6 slides x 10^3 tiles, from the measured bytes/vector."""
    by_kind, library = _by_kind(results["rows"]), results["library"]
    sqlite_bpt = (max(r["sqlite_bytes_per_tile"] for r in library) if library
                  else 4 * DIM + 100)
    rows, notes = [], []
    for kind, rs in by_kind.items():
        if kind not in KINDS:  # a variant (ivfpq-tNk): the findings discuss it
            continue
        last, e = rs[-1], extrapolate(rs, n)
        save = "—" if kind == "binary" else _human(2 * e["file_bytes"])
        rows.append([kind, last["n"], _human(e["ram_bytes"]), _human(e["file_bytes"]), save,
                     _human(sqlite_bpt * n), _ms(e["p50_ms"]), _g(e["build_s"] / 86400)])
        nodes = int(np.ceil(e["ram_bytes"] * 1.3 / 768e9))
        notes.append(
            f"- **{kind}**: {_human(e['ram_bytes'])} of index in RAM "
            f"({_ram_per_vector(last):.0f} B/vector measured at {last['n']:,}), so with 30% "
            f"headroom {nodes} server{'s' if nodes > 1 else ''} of 768 GB; p50 about "
            f"{_ms(e['p50_ms'])} on one core (extrapolated). "
            + VERDICTS[kind])
    return "\n".join([
        "## On paper: a 10^6-slide archive", "",
        f"Assumptions: 10^6 slides x ~10^3 tissue tiles = 10^9 vectors of {DIM} dims (a "
        "resection slide at 0.5 mpp often has 5-20k tissue tiles: scale every figure "
        "linearly); memory per vector stays what was measured at the largest size (true of "
        "flat, HNSW, PQ codes and binary codes, whose storage is per vector); latency and "
        "build time follow each kind's cost model (see the extrapolated table) from the "
        "largest measured size, carried 100x (measured to 10M) or 500-1000x (measured to "
        "1-2M) beyond it, so they are orders of magnitude, for one query on one core of this "
        "machine, before any sharding. Every kind also "
        f"keeps histoseek's SQLite store, which holds every vector as float32 ({sqlite_bpt:.0f} "
        "B per tile measured), in one file on fast disk (NVMe: IVF-PQ and binary re-rank from "
        "it with random reads). Saving a `FaissIndex` holds two extra copies of the serialized "
        "index in RAM (the saving column), loading one extra.", "",
        table(["kind", "measured up to", "index RAM", "index file", "extra RAM while saving",
               "SQLite store", "p50 at 10^9 (extrapolated)", "build days (extrapolated)"],
              rows),
        *notes, ""])


def render_vectors(results: dict[str, Any], doc: Path, plot: Path) -> None:
    """Write the plot and the ``vectors`` and ``sizing`` sections of ``doc``."""
    plot_growth(results["rows"], plot)
    write_section(doc, "vectors", vector_section(results, plot, doc))
    write_section(doc, "sizing", sizing_section(results))


# -- orchestration -----------------------------------------------------------------------------
def load_truth(settings: Settings, gen: SyntheticVectors, queries: np.ndarray,
               cache: Path = CACHE) -> dict[int, np.ndarray]:
    """Exact neighbours for every size of the run, from ``cache`` or computed (one pass)."""
    key = hashlib.sha256(json.dumps([asdict(gen), queries.shape, settings.k]).encode() +
                         queries.tobytes()).hexdigest()[:16]
    files = {n: cache / f"truth-{key}-{n}.npy" for n in settings.all_sizes}
    missing = [n for n, f in files.items() if not f.is_file()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        for n, ids in exact_neighbours(gen, queries, missing, settings.k, settings.chunk).items():
            np.save(files[n], ids)
    return {n: np.load(f) for n, f in files.items()}


def _worker(task: str, workdir: Path) -> None:
    """One step in its own process: ``truth``, ``kind:NAME`` or ``library:NAME:N``."""
    settings = Settings(**json.loads((workdir / "settings.json").read_text()))
    gen = SyntheticVectors(**settings.generator)
    queries, _ = gen.queries(settings.queries, min(QUERY_POOL, *settings.all_sizes))
    truth = load_truth(settings, gen, queries)
    if task == "truth":
        return
    parts = task.split(":")
    if parts[0] == "kind":
        out: Any = measure_kind(parts[1], settings.sizes[parts[1]], gen, queries, truth,
                                settings, workdir)
    else:
        n = int(parts[2])
        out = [measure_library(parts[1], n, gen, queries, truth[n], settings, workdir)]
    (workdir / f"result-{task.replace(':', '-')}.json").write_text(json.dumps(out, indent=1))


def run_all(settings: Settings, workdir: Path) -> dict[str, Any]:
    """Every step in a fresh subprocess (so peaks do not mix); returns the collected results."""
    (workdir / "settings.json").write_text(json.dumps(asdict(settings)))
    tasks = ["truth", *(f"kind:{k}" for k in settings.kinds),
             *(f"library:{spec}" for spec in settings.library)]
    timings, loads = {}, {}
    for task in tasks:
        t0 = time.perf_counter()
        print(f"== {task}", flush=True)
        subprocess.run([sys.executable, __file__, "--worker", task, "--workdir", str(workdir)],
                       check=True)
        timings[task] = round(time.perf_counter() - t0)
        loads[task] = round(os.getloadavg()[1], 1)  # 5-minute load average as the step ends
        print(f"== {task} done in {timings[task]} s (load {loads[task]})", flush=True)
    rows, library = [], []
    for task in tasks[1:]:
        data = json.loads((workdir / f"result-{task.replace(':', '-')}.json").read_text())
        (library if task.startswith("library") else rows).extend(data)
    return {"settings": asdict(settings), "runs": [{"command": " ".join(sys.argv[1:]),
                                                    "step_seconds": timings,
                                                    "step_load": loads}],
            "rows": rows, "library": library}


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``: rows of the same (kind, N) replaced, runs listed one after another."""
    def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
        return {(r["kind"], r["n"]): r for r in rows}

    rows = keyed(old["rows"]) | keyed(new["rows"])
    library = keyed(old["library"]) | keyed(new["library"])
    again = {run["command"] for run in new["runs"]}  # a rerun replaces its earlier entry
    runs = [run for run in old.get("runs", []) if run["command"] not in again] + new["runs"]
    return {**new, "runs": runs,
            "rows": sorted(rows.values(), key=_order),
            "library": sorted(library.values(), key=lambda r: (r["kind"], r["n"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sizes", type=int, nargs="+",
                        help="sizes for every kind (default: per kind, see DEFAULT_SIZES)")
    parser.add_argument("--library", nargs="*", default=DEFAULT_LIBRARY, metavar="KIND:N",
                        help="Library.search vs raw FAISS runs (flat or hnsw); none: --library")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="single-query timing budget per kind and size (min 20 queries)")
    parser.add_argument("--ivfpq-first-add", type=int, metavar="N",
                        help="fill IVF-PQ with one first add of N rows (FaissIndex trains on "
                             "up to 100k of them) instead of slide-sized adds; rows are "
                             "labelled ivfpq-tNk")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true",
                        help=f"write the vector sections of {DOC.relative_to(ROOT)} and the plot")
    parser.add_argument("--merge", action="store_true",
                        help="add to the results already in --json (other kinds and sizes kept)")
    parser.add_argument("--render", action="store_true", help="only re-render from --json")
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.workdir)
        return
    if args.render:
        render_vectors(json.loads(args.json.read_text()), DOC, PLOT)
        return
    sizes = {k: list(args.sizes) if args.sizes else DEFAULT_SIZES[k] for k in args.kinds}
    settings = Settings(kinds=list(args.kinds), sizes=sizes, library=list(args.library),
                        queries=args.queries, latency_queries=args.queries,
                        latency_seconds=args.latency_seconds,
                        ivfpq_first_add=args.ivfpq_first_add)
    workdir = Path(tempfile.mkdtemp(prefix="histoseek-scale-"))
    t0 = time.perf_counter()
    try:
        results = run_all(settings, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["runs"][0]["total_seconds"] = round(time.perf_counter() - t0)
    if args.merge and args.json.is_file():
        results = merge(json.loads(args.json.read_text()), results)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"total {round(time.perf_counter() - t0)} s; results in {args.json}")
    if args.markdown:
        render_vectors(results, DOC, PLOT)


if __name__ == "__main__":
    main()
