"""The vector index of each space: loaded lazily, reconciled with SQLite, saved atomically.

SQLite is the source of truth; an index (a FAISS file, or a Milvus collection) is a copy of
it. On load the index's id set is compared with SQLite's and brought back in line after a
crash, so search never returns a deleted record nor misses an inserted one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from histoseek.index.backends import VectorBackend
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.index.vectors import VectorIndex


class SpaceIndexes:
    """One index per space from ``backend``, with the spaces changed since saving."""

    def __init__(self, backend: VectorBackend, store: RecordStore,
                 dim_of: Callable[[VectorSpace], int]) -> None:
        self.backend, self.store, self.dim_of = backend, store, dim_of
        self._indexes: dict[VectorSpace, VectorIndex] = {}
        self._dirty: set[VectorSpace] = set()
        self._seen: dict[VectorSpace, int] = {}  # data_version last checked

    def __getitem__(self, space: VectorSpace) -> VectorIndex:
        version = self.store.data_version()[1]  # other processes' commits only: this one's
        # own writes reach its in-memory indexes directly
        if space not in self._indexes:
            self._indexes[space] = self._load(space)
        elif self._seen.get(space) != version and not self.agrees(space, self._indexes[space]):
            # another process wrote since: take its records from SQLite (never a torn read:
            # SQLite's WAL gives a consistent snapshot, index files are replaced atomically)
            index = self._indexes[space]
            self._indexes[space] = self._reconcile(space, index, index.ids())
        self._seen[space] = version
        return self._indexes[space]

    def mark_changed(self, space: VectorSpace) -> None:
        self._dirty.add(space)

    def _load(self, space: VectorSpace) -> VectorIndex:
        index = self.backend.load(space, self.dim_of(space))
        if not self.agrees(space, index):
            index = self._reconcile(space, index, index.ids())
        return index

    def agrees(self, space: VectorSpace, index: VectorIndex) -> bool:
        """Whether the index holds SQLite's id set: (count, sum, max) of ids for FAISS,
        whose id array is in memory; the count for Milvus, where ids are a scan away (a
        crash leaves a count off, see ``_reconcile``; ``histoseek check`` compares ids)."""
        count, total, top = self.store.id_digest(space)
        if getattr(index, "filters_by_group", False):
            return len(index) == count
        ids = index.ids()
        mine = (len(ids), int(ids.sum()) if len(ids) else 0, int(ids.max()) if len(ids) else 0)
        return mine == (count, total, top)

    def _reconcile(self, space: VectorSpace, index: VectorIndex, ids: np.ndarray
                   ) -> VectorIndex:
        """Bring an index left stale by a crash back in line with SQLite."""
        db_ids = self.store.all_ids(space)
        extra = np.setdiff1d(ids, db_ids)
        if len(extra) and not index.remove(extra):
            return self.rebuild(space)
        missing = np.setdiff1d(db_ids, ids)
        for start in range(0, len(missing), 65536):
            part = missing[start : start + 65536]
            index.add(part, self.store.vectors_for(space, part, index.dim))
        self._dirty.add(space)
        return index

    def rebuild(self, space: VectorSpace) -> VectorIndex:
        """A fresh index of the space from SQLite (when an index type cannot remove ids)."""
        index = self.backend.new(space, self.dim_of(space))
        for ids, vecs in self.store.iter_vectors(space, index.dim):
            index.add(ids, vecs)
        self._indexes[space] = index
        self._dirty.add(space)
        return index

    def remove(self, space: VectorSpace, ids: np.ndarray) -> None:
        if not self[space].remove(ids):
            self.rebuild(space)
        self._dirty.add(space)

    def save(self) -> None:
        """Write changed indexes (FAISS: temp file, fsync, rename)."""
        for space in sorted(self._dirty):
            self.backend.save(space, self._indexes[space])
        self._dirty.clear()
