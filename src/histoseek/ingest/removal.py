"""The body of ``Library.remove``: a source with its tiles, or a report, from SQLite and FAISS."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from histoseek.errors import InputError
from histoseek.index.space_indexes import SpaceIndexes
from histoseek.index.spaces import VectorSpace
from histoseek.index.store import RecordStore
from histoseek.ingest.results import Removed


def remove_records(key: str | Path, *, root: Path, store: RecordStore, indexes: SpaceIndexes,
                   lock: AbstractContextManager[None]) -> Removed:
    """Each index is loaded (reconciled) before SQLite changes under it, then saved."""
    sources = store.find_sources(str(key))
    reports = store.find_reports(str(key))
    if not sources and not reports:
        raise InputError(f"{key}: no such source or report in {root} (give a path, file name, "
                         "sha256, id or report_id; see 'histoseek list')")
    with lock:
        tile_ids = None
        if sources:
            indexes["image"]
            tile_ids = store.delete_sources(pk for pk, _ in sources)
            indexes.remove("image", tile_ids)
        if reports:
            spaces: list[VectorSpace] = [s for s in ("text", "joint") if store.id_digest(s)[0]]
            for space in spaces:
                indexes[space]
            store.delete_reports(reports)
            for space in spaces:
                indexes.remove(space, np.asarray(reports, np.int64))
        indexes.save()
    return Removed(len(sources), 0 if tile_ids is None else len(tile_ids), len(reports))
