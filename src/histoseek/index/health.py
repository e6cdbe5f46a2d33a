"""``histoseek check`` and ``repair``: is every copy of every vector whole and in agreement?

Three things can go wrong on disk: SQLite's pages (its own ``integrity_check``), a stored
vector's bytes (the CRC32 written with it), and an index file (its SHA-256 trailer, its id
set against SQLite's, and for flat and HNSW indexes every vector against SQLite's copy).
Opening a library quietly reconciles an index left behind by a crash; ``check`` reports
instead of fixing, so it shows what a crash or a bad disk left. ``repair`` rebuilds every
index from SQLite, the source of truth; it cannot repair SQLite itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from histoseek.errors import LibraryError
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VECTOR_SPACES, VectorSpace
from histoseek.index.store import RecordStore
from histoseek.index.vectors import FaissIndex

SHOWN = 5  # ids or paths named per problem


@dataclass
class Health:
    """Problems found (empty: sound) and how many records each space holds."""

    problems: list[str] = field(default_factory=list)
    records: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_library(store: RecordStore, indexes: SpaceIndexes) -> Health:
    health = Health()
    structure = store.integrity_problems()
    if structure:
        health.problems.append(f"{store.path}: SQLite reports damage: "
                               + "; ".join(structure[:SHOWN]) + "; restore it from a backup")
        return health  # reading further from a damaged file proves nothing
    for space in VECTOR_SPACES:
        count = store.id_digest(space)[0]
        health.records[space] = count
        if count == 0:
            continue
        health.problems += _damaged_rows(store, space)
        try:
            index = indexes.backend.load(space, indexes.dim_of(space))
        except LibraryError as exc:
            health.problems.append(str(exc))
            continue
        health.problems += _disagreements(store, space, index)
    return health


def _damaged_rows(store: RecordStore, space: VectorSpace) -> list[str]:
    bad = store.corrupt_vectors(space)
    if not bad:
        return []
    if space == "image":
        owners = np.unique(store.tile_sources(bad))
        paths = [row["path"] for row in store.list_sources() if row["id"] in set(owners)]
        fix = ("re-index these files (histoseek remove, then index): "
               + ", ".join(paths[:SHOWN]) + (" …" if len(paths) > SHOWN else ""))
    else:
        fix = "add those reports again (histoseek index LIB --reports FILE)"
    return [f"{space}: {len(bad)} stored vectors fail their checksum (ids "
            f"{', '.join(map(str, bad[:SHOWN]))}{' …' if len(bad) > SHOWN else ''}); {fix}"]


def _disagreements(store: RecordStore, space: VectorSpace, index: object) -> list[str]:
    ids = index.ids()  # type: ignore[attr-defined]
    db_ids = store.all_ids(space)
    problems = []
    missing, extra = np.setdiff1d(db_ids, ids), np.setdiff1d(ids, db_ids)
    if len(missing) or len(extra):
        problems.append(f"{space} index: {len(missing)} stored records missing, {len(extra)} "
                        "deleted records still present (opening the library reconciles this; "
                        "histoseek repair rebuilds it)")
    if isinstance(index, FaissIndex) and not len(missing) and not len(extra):
        stored = index.stored_vectors()
        if stored is not None:
            position = {int(i): n for n, i in enumerate(ids)}
            differ = 0
            for chunk_ids, vectors in store.iter_vectors(space, index.dim):
                rows = [position[int(i)] for i in chunk_ids]
                differ += int(np.sum(np.abs(stored[rows] - vectors).max(axis=1) > 1e-6))
            if differ:
                problems.append(f"{space} index: {differ} vectors differ from the stored ones; "
                                "histoseek repair rebuilds the index from them")
    return problems


def repair_library(store: RecordStore, indexes: SpaceIndexes) -> dict[str, int]:
    """Rebuild every non-empty space's index from SQLite; vectors per space."""
    structure = store.integrity_problems()
    if structure:
        raise LibraryError(f"{store.path}: SQLite reports damage ({structure[0]}); repair "
                           "rebuilds indexes from it and cannot fix it: restore it from a backup")
    rebuilt = {}
    for space in VECTOR_SPACES:
        count = store.id_digest(space)[0]
        if count:
            indexes.rebuild(space)
            rebuilt[space] = count
    indexes.save()
    return rebuilt
