"""Search latency of ``Library.search`` against raw FAISS on the same vectors.

Builds a library of N synthetic tiles (clustered unit vectors, stored through the real
RecordStore and FAISS index), then times single-query top-k search through the library
(FAISS + id selection + SQLite record lookup + typed hits) and through the library's own
FAISS index searched directly (same graph, same memory), side by side in one run. Prints the
median and p95 latency and their ratio (target: library / raw <= 1.2), and beside it the
ratio of a minimal wrapper (a freshness check, a normalised query copy and one typed hit per
result, no validation or filters): how far below that any Python library returning hits
could go here.

    python benchmarks/bench_search.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from histoseek.index.store import SourceRecord
from histoseek.library import Library
from histoseek.search.hits import Hit


def clustered_vectors(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    """Seeded unit vectors around ``centres`` random directions (like real embeddings)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        labels = rng.integers(0, centres, stop - start)
        out[start:stop] = means[labels] + 0.6 * rng.standard_normal((stop - start, dim))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build_library(root: Path, vectors: np.ndarray, index: str) -> Library:
    """A real library whose image space holds ``vectors`` (one synthetic slide per 10k tiles)."""
    lib = Library.create(root, encoder="classic", index=index)
    dim = vectors.shape[1]
    # synthetic vectors stand in for the encoder's
    replace(lib.manifest, encoder={**lib.manifest.encoder, "dim": dim}).save(lib.store)
    lib.close()
    lib = Library.open(root)
    per_source = 10_000
    records = []
    for s, start in enumerate(range(0, len(vectors), per_source)):
        part = vectors[start : start + per_source]
        n = len(part)
        xs = (np.arange(n) % 100) * 224
        ys = (np.arange(n) // 100) * 224
        records.append(SourceRecord(
            path=f"/synthetic/slide-{s}.svs", name=f"slide-{s}.svs", sha256=f"sha-{s}",
            kind="slide", width=22400, height=int(ys.max()) + 224, mpp=0.25, mpp_source="file",
            label=f"class-{s % 5}", source_id=f"patient-{s}", metadata={},
            boxes_l0=np.stack([xs, ys, np.full(n, 224), np.full(n, 224)], axis=1),
            tile_mpp=0.5, tissue=np.ones(n, np.float32), vectors=part))
    for start in range(0, len(records), 10):
        lib.store.insert_sources(records[start : start + 10])
    lib.indexes["image"]  # reconcile: FAISS filled from SQLite, as after any crash
    lib.save()
    return lib


def time_queries(fn, queries: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    return times


def bench(n: int, dim: int, k: int, n_queries: int, index: str, workdir: Path,
          repeats: int = 1) -> list[dict]:
    vectors = clustered_vectors(n, dim, centres=max(16, n // 1000), seed=0)
    queries = clustered_vectors(n_queries, dim, centres=max(16, n // 1000), seed=0)[:n_queries]
    t0 = time.perf_counter()
    lib = build_library(workdir / f"lib-{n}-{index}", vectors, index)
    build_s = time.perf_counter() - t0
    # raw FAISS is the library's own index searched directly (same graph, same memory, same
    # efSearch): a separately built copy has another graph and, searched less often than
    # the library's in a 3-way interleave, a colder cache, which skews the ratio either way
    store_index = lib.indexes["image"]
    raw = faiss.downcast_index(store_index.index.index)
    raw_params = faiss.SearchParametersHNSW() if index == "hnsw" else None
    if raw_params is not None:
        raw_params.efSearch = store_index.ef_search

    def lib_search(q: np.ndarray) -> object:
        return lib.search(vector=q, k=k)

    def raw_search(q: np.ndarray) -> object:
        return raw.search(q[None], k, params=raw_params)

    cursor = lib.store.conn.cursor()
    places = lib.store._tile_table().places
    first = int(lib.store.all_ids("image").min())

    def floor_search(q: np.ndarray) -> object:
        """The least a library returning typed hits must add to raw FAISS: a freshness check
        (one SQLite PRAGMA), a normalised copy of the query, one row lookup and one ``Hit``
        per result. No validation, filters or source fields: a floor, not an alternative."""
        cursor.execute("PRAGMA data_version").fetchone()
        x = np.array(q[None], dtype=np.float32)
        faiss.normalize_L2(x)
        scores, pos = raw.search(x, k, params=raw_params)
        return [Hit(s, "tile", i + first, None, None, None, *row[:4])
                for s, i, row in zip(scores[0].tolist(), pos[0].tolist(),
                                     places[pos[0]].tolist(), strict=True)]

    for fn in (lib_search, raw_search, floor_search):  # warm caches
        time_queries(fn, queries[:5])
    _, exact_ids = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    got = [[h.id for h in lib.search(vector=q, k=k)] for q in queries[:50]]
    first_id = int(lib.store.all_ids("image").min())  # library ids start at first_id
    recall = float(np.mean([len(set(g) & set((exact_ids[i] + first_id).tolist())) / k
                            for i, g in enumerate(got)]))
    results = []
    for run in range(1, repeats + 1):  # repeated timing runs on the one built library
        lib_times, raw_times, floor_times = [], [], []
        for i in range(0, n_queries, 10):  # interleave so drift hits all alike
            lib_times += time_queries(lib_search, queries[i : i + 10])
            raw_times += time_queries(raw_search, queries[i : i + 10])
            floor_times += time_queries(floor_search, queries[i : i + 10])
        med_lib, med_raw = statistics.median(lib_times), statistics.median(raw_times)
        p95 = lambda xs: float(np.percentile(xs, 95))  # noqa: E731
        results.append({
            "n": n, "dim": dim, "k": k, "index": index, "queries": n_queries, "run": run,
            "build_s": round(build_s, 1),
            "library_ms_median": round(1e3 * med_lib, 3),
            "raw_faiss_ms_median": round(1e3 * med_raw, 3),
            "library_ms_p95": round(1e3 * p95(lib_times), 3),
            "raw_faiss_ms_p95": round(1e3 * p95(raw_times), 3),
            "ratio_median": round(med_lib / med_raw, 3),
            "floor_ratio_median": round(statistics.median(floor_times) / med_raw, 3),
            "library_recall_at_k_vs_exact": round(recall, 3),
        })
    lib.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index", choices=["flat", "hnsw"], default="flat")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timing runs on each built library")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="histoseek-bench-"))
    results = []
    try:
        for n in args.sizes:
            for res in bench(n, args.dim, args.k, args.queries, args.index, workdir,
                             args.repeats):
                results.append(res)
                print(f"run {res['run']} N={n:>9,} d={args.dim} k={args.k} {args.index}: "
                      f"library {res['library_ms_median']:.2f} ms vs raw FAISS "
                      f"{res['raw_faiss_ms_median']:.2f} ms (median; p95 "
                      f"{res['library_ms_p95']:.2f} vs {res['raw_faiss_ms_p95']:.2f}) -> ratio "
                      f"{res['ratio_median']:.3f} (target <= 1.2; minimal wrapper "
                      f"{res['floor_ratio_median']:.3f}); recall@{args.k} vs exact "
                      f"{res['library_recall_at_k_vs_exact']:.3f}; built in {res['build_s']} s",
                      flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
