"""The FAISS index of each vector space: loaded lazily, reconciled with SQLite, saved atomically.

SQLite is the source of truth; a FAISS file is a cache of it. On load the index's id set is
compared with SQLite's (count, sum, max) and brought back in line after a crash, so search
never returns a deleted record nor misses an inserted one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.index.vectors import FaissIndex, IndexKind


class SpaceIndexes:
    """One ``FaissIndex`` per space under ``folder``, with the spaces changed since saving."""

    def __init__(self, folder: Path, store: RecordStore, kind: IndexKind,
                 options: dict[str, int], dim_of: Callable[[VectorSpace], int]) -> None:
        self.folder, self.store, self.kind, self.options = folder, store, kind, options
        self.dim_of = dim_of
        self._indexes: dict[VectorSpace, FaissIndex] = {}
        self._dirty: set[VectorSpace] = set()

    def __getitem__(self, space: VectorSpace) -> FaissIndex:
        if space not in self._indexes:
            self._indexes[space] = self._load(space)
        return self._indexes[space]

    def mark_changed(self, space: VectorSpace) -> None:
        self._dirty.add(space)

    def _load(self, space: VectorSpace) -> FaissIndex:
        dim, path = self.dim_of(space), self.folder / f"{space}.faiss"
        index = (FaissIndex.load(path, dim, self.kind, **self.options) if path.is_file()
                 else FaissIndex(dim, self.kind, **self.options))
        ids = index.ids()
        mine = (len(ids), int(ids.sum()) if len(ids) else 0, int(ids.max()) if len(ids) else 0)
        if mine != self.store.id_digest(space):
            index = self._reconcile(space, index, ids)
        return index

    def _reconcile(self, space: VectorSpace, index: FaissIndex, ids: np.ndarray) -> FaissIndex:
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

    def rebuild(self, space: VectorSpace) -> FaissIndex:
        """A fresh index of the space from SQLite (when an index type cannot remove ids)."""
        index = FaissIndex(self.dim_of(space), self.kind, **self.options)
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
        """Write changed indexes atomically (temp file, fsync, rename)."""
        if not self._dirty:
            return
        self.folder.mkdir(exist_ok=True)
        for space in sorted(self._dirty):
            self._indexes[space].save(self.folder / f"{space}.faiss")
        self._dirty.clear()
