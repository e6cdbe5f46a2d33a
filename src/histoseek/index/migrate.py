"""Copy a library's vectors into another backend (FAISS files ↔ Milvus), then switch to it.

The vectors come from SQLite, the source of truth, so a migration also repairs whatever
state the old backend was in. The manifest switches only after every space's new index
holds exactly SQLite's records: an interrupted migration leaves the library on its old
backend, untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from histoseek.errors import LibraryError
from histoseek.index.backends import backend_spec, open_backend
from histoseek.index.manifest import LibraryManifest
from histoseek.index.spaces import VECTOR_SPACES, VectorSpace
from histoseek.index.store import RecordStore


@dataclass(frozen=True)
class Migrated:
    """What ``histoseek migrate`` did: vectors copied per space, from and to."""

    source: str
    target: str
    vectors: dict[str, int]


def migrate_vectors(root: Path, store: RecordStore, manifest: LibraryManifest, to: str,
                    dim_of: Callable[[VectorSpace], int], progress: bool = True,
                    ) -> tuple[LibraryManifest, Migrated]:
    """Build every non-empty space in the backend ``to``; returns the switched manifest."""
    spec = backend_spec(to)
    if spec.get("uri", "faiss") == manifest.vector_store_uri:
        raise LibraryError(f"{root}: the library already keeps its vectors in {to}")
    backend = open_backend(spec, root, manifest.index, manifest.index_options,
                           lambda space, ids: store.tile_sources(ids))
    copied: dict[str, int] = {}
    for space in VECTOR_SPACES:
        count = store.id_digest(space)[0]
        if count == 0:
            continue
        index = backend.new(space, dim_of(space))
        with tqdm(total=count, unit="vec", desc=f"{space} → {spec['kind']}",
                  disable=not progress, dynamic_ncols=True) as bar:
            for ids, vectors in store.iter_vectors(space, index.dim):
                index.add(ids, vectors)
                bar.update(len(ids))
        backend.save(space, index)
        if len(index) != count or not np.array_equal(index.ids(), store.all_ids(space)):
            raise LibraryError(f"{root}: the {space} space copied {len(index)} of {count} "
                               f"vectors to {to}; the library stays on {manifest.vector_store_uri}")
        copied[space] = count
    switched = manifest.with_vector_store(spec)
    switched.save(store)
    return switched, Migrated(manifest.vector_store_uri, spec.get("uri", "faiss"), copied)
