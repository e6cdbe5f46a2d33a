"""A Milvus collection behind the library's ``VectorIndex`` interface.

For users whose archive outgrows one machine's FAISS. A local file URI (``milvus.db``) runs
Milvus Lite embedded, with nothing to start; ``http://host:19530`` talks to a Milvus
standalone or cluster through the same code. SQLite stays the source of truth: metadata
filters are resolved there (unknown keys are caught there), and reach Milvus as filter
expressions on the record's source (``source_id in [...]``) or id, applied inside Milvus's
search so the top-k is filtered, not post-filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from histoseek.errors import LibraryError
from histoseek.index.vectors import IndexKind, checked_queries, checked_rows, pq_subquantizers

INSERT_BATCH = 8192  # rows per insert call: keeps one gRPC message well under its 64 MB limit
ID_PAGE = 16384  # Milvus's largest query page
MAX_EXPR_VALUES = 1_000_000  # beyond this an id list is too long for one filter expression
MILVUS_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivfpq": "IVF_PQ"}


def is_milvus_uri(uri: str) -> bool:
    """A Milvus Lite file (``*.db``) or a server (``http(s)://``, ``tcp://``)."""
    return uri.endswith(".db") or uri.split("://")[0] in ("http", "https", "tcp", "grpc")


def filter_expression(allow: np.ndarray | None = None, deny: np.ndarray | None = None,
                      allow_groups: np.ndarray | None = None) -> str:
    """The Milvus boolean expression for a record filter (empty: no filter)."""
    parts = []
    for field, values, negate in (("source_id", allow_groups, False), ("id", allow, False),
                                  ("id", deny, True)):
        if values is None:
            continue
        if len(values) > MAX_EXPR_VALUES:
            raise LibraryError(f"a filter of {len(values):,} records is too long for one Milvus "
                               "expression; filter on fewer sources")
        listed = ",".join(str(int(v)) for v in np.unique(values))
        parts.append(f"{field} {'not in' if negate else 'in'} [{listed}]")
    return " and ".join(parts)


@contextmanager
def milvus_errors(collection: str) -> Iterator[None]:
    """A Milvus failure (server gone, collection dropped) as one clear library error."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise LibraryError(f"Milvus collection '{collection}': {exc.message} "
                           f"(code {exc.code})") from exc


@contextmanager
def _quiet_pymilvus() -> Iterator[None]:
    """An iterator against Milvus Lite logs a warning and a gRPC error (Lite has no
    timestamp service; the iterator then uses the client's clock, which is fine here)."""
    loggers = [logging.getLogger(name) for name in ("pymilvus", "grpc._server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class MilvusIndex:
    """One vector space as one Milvus collection: ``id`` (primary), ``source_id``, ``vector``.

    ``group_of`` maps record ids to their source ids when rows are added (tiles: their
    slide or image; reports: none), which is what source filters select on.
    """

    filters_by_group = True

    def __init__(self, client: Any, collection: str, dim: int, kind: IndexKind = "flat",
                 ef_search: int = 128, nprobe: int = 16, hnsw_m: int = 32,
                 group_of: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.client, self.collection, self.dim, self.kind = client, collection, dim, kind
        self.ef_search, self.nprobe, self.hnsw_m = ef_search, nprobe, hnsw_m
        self.group_of = group_of
        self._ids: np.ndarray | None = None
        self._count: int | None = None
        with milvus_errors(collection):
            if not client.has_collection(collection):
                self._create()
            else:
                self._check_dim()
                client.load_collection(collection)  # a collection is searchable once loaded

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("source_id", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        options: dict[str, int] = {}
        if self.kind == "hnsw":
            options = {"M": self.hnsw_m, "efConstruction": 80}
        elif self.kind == "ivfpq":
            options = {"nlist": 128, "m": pq_subquantizers(self.dim), "nbits": 8}
        params.add_index("vector", index_type=MILVUS_INDEX[self.kind], metric_type="IP",
                         params=options)
        # Strong consistency: a search sees every insert acknowledged before it, as with FAISS
        self.client.create_collection(self.collection, schema=schema, index_params=params,
                                      consistency_level="Strong")

    def _check_dim(self) -> None:
        fields = self.client.describe_collection(self.collection)["fields"]
        dims = [int(f.get("params", {}).get("dim", 0)) for f in fields if f["name"] == "vector"]
        if dims != [self.dim]:
            raise LibraryError(f"Milvus collection '{self.collection}' holds {dims or '?'}-d "
                               f"vectors; this library's space is {self.dim}-d")

    @property
    def scores_are_estimates(self) -> bool:
        """IVF-PQ scores come from codes, so the library re-scores them from SQLite."""
        return self.kind == "ivfpq"

    def __len__(self) -> int:
        if self._count is None:
            with milvus_errors(self.collection):
                rows = self.client.query(self.collection, filter="",
                                         output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def ids(self) -> np.ndarray:
        """Every stored id (a full scan: used to reconcile after a crash and by ``check``)."""
        if self._ids is None:
            found: list[int] = []
            with _quiet_pymilvus(), milvus_errors(self.collection):
                it = self.client.query_iterator(self.collection, batch_size=ID_PAGE,
                                                filter="id >= 0", output_fields=["id"])
                try:
                    while batch := it.next():
                        found.extend(int(r["id"]) for r in batch)
                finally:
                    it.close()
            self._ids = np.sort(np.asarray(found, np.int64))
            self._count = len(self._ids)
        return self._ids

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids, vectors = checked_rows(ids, vectors, self.dim)
        groups = (self.group_of(ids) if self.group_of is not None
                  else np.full(len(ids), -1, np.int64))
        with milvus_errors(self.collection):
            for start in range(0, len(ids), INSERT_BATCH):
                stop = start + INSERT_BATCH
                # upsert, not insert: a batch retried after a crash must not store a row twice
                self.client.upsert(self.collection, [
                    {"id": int(i), "source_id": int(g), "vector": v}
                    for i, g, v in zip(ids[start:stop].tolist(), groups[start:stop].tolist(),
                                       vectors[start:stop], strict=True)])
        self._ids = self._count = None

    def remove(self, ids: np.ndarray) -> bool:
        with milvus_errors(self.collection):
            for start in range(0, len(ids), ID_PAGE):
                part = [int(i) for i in ids[start : start + ID_PAGE]]
                self.client.delete(self.collection, ids=part)
        self._ids = self._count = None
        return True

    def search(
        self, queries: np.ndarray, k: int, allow: np.ndarray | None = None,
        deny: np.ndarray | None = None, allow_groups: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores, ids)`` like ``FaissIndex.search``; ``allow_groups`` keeps
        records of those sources only."""
        queries = checked_queries(queries, self.dim)
        m = len(queries)
        total = len(self)
        if total == 0 or (allow is not None and len(allow) == 0) or (
                allow_groups is not None and len(allow_groups) == 0):
            return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
        k = max(1, min(int(k), total, 16384))
        params: dict[str, Any] = {"metric_type": "IP", "params": {}}
        if self.kind == "hnsw":
            params["params"] = {"ef": max(self.ef_search, k)}
        elif self.kind == "ivfpq":
            params["params"] = {"nprobe": self.nprobe}
        with milvus_errors(self.collection):
            results = self.client.search(
                self.collection, data=list(queries), limit=k, search_params=params,
                filter=filter_expression(allow, deny, allow_groups), output_fields=[])
        scores = np.full((m, k), -np.inf, np.float32)
        ids = np.full((m, k), -1, np.int64)
        for row, hits in enumerate(results):
            for col, hit in enumerate(hits[:k]):
                scores[row, col], ids[row, col] = hit["distance"], hit["id"]
        return scores, ids

    def save(self) -> None:
        """Make inserts durable now (Milvus also flushes on its own)."""
        with milvus_errors(self.collection):
            self.client.flush(self.collection)

    def drop(self) -> None:
        self.client.drop_collection(self.collection)
