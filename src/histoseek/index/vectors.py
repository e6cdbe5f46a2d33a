"""Vector indexes behind one small interface, with a FAISS implementation.

The interface (``VectorIndex``) is what the library calls; ``index.milvus_index`` implements
it on Milvus. Vectors are float32 unit rows, scores are inner products (cosine).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Literal, Protocol

import faiss
import numpy as np

from histoseek.errors import LibraryError

IndexKind = Literal["flat", "hnsw", "ivfpq"]
INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
TRAILER_MAGIC = np.frombuffer(b"HSEEKSHA256v1", np.uint8)  # ends every saved index file
IVFPQ_MIN_TRAIN = 4096  # below this an IVF-PQ library searches exactly (flat) until trained


class VectorIndex(Protocol):
    """What the library needs from a vector store."""

    dim: int
    filters_by_group: bool  # True: filters arrive as source ids (``allow_groups``), see Milvus

    @property
    def scores_are_estimates(self) -> bool:
        """True when scores are approximate, so the library re-scores from the record store."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> bool: ...

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def ids(self) -> np.ndarray: ...

    def __len__(self) -> int: ...


def _atomic_write_bytes(path: Path, *parts: np.ndarray) -> None:
    """Write to a temp file in the same folder, fsync, rename, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(memoryview(np.ascontiguousarray(part)))
            fh.flush()
            os.fsync(fh.fileno())
        publish(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checked_rows(ids: np.ndarray, vectors: np.ndarray, dim: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """int64 ids and contiguous float32 ``[n, dim]`` rows, or a clear error (every backend)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise LibraryError(f"vectors of shape {vectors.shape} do not fit a {dim}-d index")
    if len(vectors) != len(ids):
        raise LibraryError(f"{len(ids)} ids given for {len(vectors)} vectors")
    return np.ascontiguousarray(ids, dtype=np.int64), vectors


def checked_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """Contiguous float32 ``[m, dim]`` query rows, or a clear error (every backend)."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise LibraryError(f"queries of shape {queries.shape} do not fit a {dim}-d index")
    return queries


def unbroken_run_start(ids: np.ndarray) -> int | None:
    """The first id when ``ids`` are consecutive and ascending (no removals since), else None:
    then an id's position is a subtraction, not a search."""
    if len(ids) == 0 or int(ids[-1]) - int(ids[0]) != len(ids) - 1:
        return None
    return int(ids[0]) if len(ids) == 1 or bool(np.all(ids[1:] > ids[:-1])) else None


def publish(draft: Path, path: Path) -> None:
    """Rename a finished file into place and make the rename durable."""
    os.replace(draft, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FaissIndex:
    """FAISS index with external int64 ids (``IndexIDMap2``) and id-selector filtering.

    ``flat`` is exact. ``hnsw`` is a graph index (``efSearch`` set explicitly); HNSW cannot
    delete in place, so ``remove`` reports False and the caller rebuilds. ``ivfpq`` stays
    exact until ``IVFPQ_MIN_TRAIN`` vectors exist, then trains once on what is there.
    """

    filters_by_group = False

    def __init__(self, dim: int, kind: IndexKind = "flat", ef_search: int = 128,
                 nprobe: int = 16, hnsw_m: int = 32) -> None:
        if kind not in INDEX_KINDS:
            raise LibraryError(f"unknown index type '{kind}'; choose one of {INDEX_KINDS}")
        self.dim, self.kind = dim, kind
        self.ef_search, self.nprobe, self.hnsw_m = ef_search, nprobe, hnsw_m
        self.index = self._new_index(trained_ivf=False)

    @property
    def index(self) -> faiss.Index:
        return self._index

    @index.setter
    def index(self, index: faiss.Index) -> None:
        """Setting the index also caches what search needs to know of it: looking it up
        through SWIG on every query costs more than a small HNSW search."""
        self._index = index
        self._id_array: np.ndarray | None = None
        self._first_id: int | None = None  # set by ids(): the first id when ids run unbroken
        inner = faiss.downcast_index(index.index)
        self._inner = inner
        self._exact = isinstance(inner, faiss.IndexFlat)
        self._estimates = isinstance(inner, faiss.IndexIVFPQ)
        self._inner_type = ("hnsw" if isinstance(inner, faiss.IndexHNSW) else
                            "ivf" if isinstance(inner, faiss.IndexIVF) else "flat")
        self._plain_params = self._params(None)

    def _new_index(self, trained_ivf: bool, train: np.ndarray | None = None) -> faiss.Index:
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
        elif self.kind == "ivfpq" and trained_ivf and train is not None:
            nlist = int(np.clip(4 * math.sqrt(len(train)), 16, 65536))
            nlist = min(nlist, len(train) // 39)
            m = pq_subquantizers(self.dim)
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            inner.train(train)
            inner.nprobe = self.nprobe
        else:
            inner = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(inner)

    @property
    def is_exact(self) -> bool:
        return self._exact

    @property
    def scores_are_estimates(self) -> bool:
        """True once IVF-PQ is trained: its scores come from codes, so callers re-score."""
        return self._estimates

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """External id of each stored vector, by position (cached until the index changes)."""
        if self._id_array is None:
            self._id_array = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            self._first_id = unbroken_run_start(self._id_array)
        return self._id_array

    def stored_vectors(self) -> np.ndarray | None:
        """The float vectors by position (a view; same order as ``ids()``), or None where
        the index keeps only codes (IVF-PQ)."""
        inner = self._inner
        if self._inner_type == "hnsw":
            inner = faiss.downcast_index(inner.storage)
        if not isinstance(inner, faiss.IndexFlat):
            return None
        n = len(self)
        return faiss.rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 ``[n, dim]`` rows under int64 ``ids``."""
        if len(ids) == 0:
            return
        ids, vectors = checked_rows(ids, vectors, self.dim)
        self.index.add_with_ids(vectors, ids)
        self._id_array = None
        if self.kind == "ivfpq" and self.is_exact and len(self) >= IVFPQ_MIN_TRAIN:
            self._train_ivfpq()

    def _train_ivfpq(self) -> None:
        all_ids = self.ids()
        data = np.array(self.stored_vectors(), dtype=np.float32)
        rng = np.random.default_rng(0)
        sample = data[rng.choice(len(data), min(len(data), 100_000), replace=False)]
        self.index = self._new_index(trained_ivf=True, train=sample)
        self.index.add_with_ids(data, all_ids)

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; False when the index type cannot delete (HNSW), so rebuild instead."""
        if len(ids) == 0:
            return True
        if self.kind == "hnsw":
            return False
        self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
        self._id_array = None
        return True

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None,
        deny: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)``, each ``[m, k]``; missing slots have id -1.

        ``allow`` restricts the search to those ids, ``deny`` skips them.
        """
        if not (type(queries) is np.ndarray and queries.dtype == np.float32
                and queries.ndim == 2 and queries.shape[1] == self.dim
                and queries.flags.c_contiguous):  # attribute tests: cheaper than numpy calls
            queries = checked_queries(queries, self.dim)
        total = len(self.ids())  # cached: a SWIG attribute read costs more on every search
        if total == 0:
            m = len(queries)
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        k = max(1, min(int(k), total))
        if allow is not None:
            params = self._params(
                faiss.IDSelectorBatch(np.ascontiguousarray(allow, dtype=np.int64)))
        elif deny is not None and len(deny):
            params = self._params(faiss.IDSelectorNot(
                faiss.IDSelectorBatch(np.ascontiguousarray(deny, dtype=np.int64))))
        elif self._inner_type != "ivf":
            # Unfiltered flat or HNSW (whose positions are the id map's: IVF's are not after a
            # removal): search the inner index and map positions to ids in numpy. The
            # IndexIDMap wrapper maps them in an OpenMP parallel loop, which for one query
            # costs more than an HNSW search when the other cores are busy (15 ms vs 1 ms
            # measured on 2 loaded cores).
            scores, positions = self._inner.search(queries, k, params=self._plain_params)
            if self._first_id is not None:  # ids are one unbroken run: no gather needed
                return scores, np.where(positions >= 0, positions + self._first_id, -1)
            ids = self.ids()
            return scores, np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
        else:
            params = self._plain_params
        return self._index.search(queries, k, params=params)

    def _params(self, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        if self._inner_type == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.ef_search
        elif self._inner_type == "ivf":
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        elif selector is None:
            return None
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
            params._selector_ref = selector  # keep the selector alive while params lives
        return params

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: readers see the old file or the new one, never a torn one.
        A SHA-256 trailer lets ``load`` tell a truncated or bit-flipped file."""
        data = faiss.serialize_index(self.index)
        digest = np.frombuffer(hashlib.sha256(memoryview(data)).digest(), np.uint8)
        _atomic_write_bytes(path, data, TRAILER_MAGIC, digest)

    @classmethod
    def load(cls, path: Path, dim: int, kind: IndexKind, **options: int) -> FaissIndex:
        self = cls(dim, kind, **options)
        data = np.fromfile(path, dtype=np.uint8)
        tail = len(TRAILER_MAGIC) + 32
        if len(data) >= tail and bytes(data[-tail:-32]) == TRAILER_MAGIC.tobytes():
            body, digest = data[:-tail], bytes(data[-32:])
            if hashlib.sha256(memoryview(body)).digest() != digest:
                raise LibraryError(
                    f"{path}: vector index is corrupt (its checksum does not match: the file "
                    "was truncated or changed on disk); rebuild it from the library's stored "
                    f"vectors with: histoseek repair {path.parent.parent}")
            data = body
        try:  # a file written before checksums: FAISS's own checks only
            self.index = faiss.deserialize_index(data)
        except Exception as exc:
            raise LibraryError(f"{path}: corrupt vector index ({exc}); rebuild it with: "
                               f"histoseek repair {path.parent.parent}") from exc
        if self.index.d != dim:
            raise LibraryError(f"{path}: index has {self.index.d} dims, library expects {dim}")
        return self


def pq_subquantizers(dim: int) -> int:
    """Largest divisor of ``dim`` giving sub-vectors of at least 4 dims, at most 64 codes."""
    for m in range(min(64, dim // 4), 0, -1):
        if dim % m == 0:
            return m
    return 1
