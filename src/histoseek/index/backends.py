"""Where a library keeps its vector indexes: FAISS files in its folder, or Milvus.

A backend makes, loads, saves and drops one ``VectorIndex`` per vector space; everything
above it (reconciling with SQLite, search, ingest) is the same for both. The choice is part
of the manifest, as ``{"kind": "faiss"}`` or ``{"kind": "milvus", "uri": ..., "collection":
...}``, and ``histoseek migrate`` moves a library from one to the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from histoseek.errors import LibraryError
from histoseek.index.spaces import VectorSpace
from histoseek.index.vectors import FaissIndex, IndexKind, VectorIndex

FAISS = {"kind": "faiss"}


class VectorBackend(Protocol):
    def new(self, space: VectorSpace, dim: int) -> VectorIndex: ...

    def load(self, space: VectorSpace, dim: int) -> VectorIndex: ...

    def save(self, space: VectorSpace, index: VectorIndex) -> None: ...

    def describe(self) -> str: ...


def backend_spec(uri: str | None) -> dict[str, str]:
    """The manifest entry for a ``--vector-store`` value (None or ``faiss``: FAISS files).

    A Milvus Lite file is kept as an absolute path; each library gets its own collection
    name prefix, so many libraries can share one Milvus server.
    """
    from histoseek.index.milvus_index import is_milvus_uri

    if uri is None or uri == "faiss":
        return dict(FAISS)
    if not is_milvus_uri(uri):
        raise LibraryError(f"unknown vector store '{uri}': give 'faiss', a Milvus Lite file "
                           "(PATH.db) or a Milvus server (http://host:19530)")
    if "://" not in uri:
        path = Path(uri).expanduser()
        uri = str(path if path.is_absolute() else (Path.cwd() / path).resolve())
    return {"kind": "milvus", "uri": uri, "collection": f"histoseek_{uuid.uuid4().hex[:12]}"}


def open_backend(spec: dict[str, str], root: Path, kind: IndexKind, options: dict[str, int],
                 group_of: Callable[[VectorSpace, np.ndarray], np.ndarray]) -> VectorBackend:
    if spec.get("kind", "faiss") == "faiss":
        return FaissBackend(root / "vectors", kind, options)
    if spec["kind"] == "milvus":
        return MilvusBackend(spec["uri"], spec["collection"], kind, options, group_of)
    raise LibraryError(f"{root}: unknown vector store kind {spec['kind']!r} in the manifest; "
                       "upgrade histoseek")


class FaissBackend:
    """``vectors/{space}.faiss`` in the library folder, written atomically."""

    def __init__(self, folder: Path, kind: IndexKind, options: dict[str, int]) -> None:
        self.folder, self.kind, self.options = folder, kind, options

    def path(self, space: VectorSpace) -> Path:
        return self.folder / f"{space}.faiss"

    def new(self, space: VectorSpace, dim: int) -> FaissIndex:
        return FaissIndex(dim, self.kind, **self.options)

    def load(self, space: VectorSpace, dim: int) -> FaissIndex:
        path = self.path(space)
        if not path.is_file():
            return self.new(space, dim)
        return FaissIndex.load(path, dim, self.kind, **self.options)

    def save(self, space: VectorSpace, index: VectorIndex) -> None:
        assert isinstance(index, FaissIndex)
        self.folder.mkdir(exist_ok=True)
        index.save(self.path(space))

    def describe(self) -> str:
        return f"FAISS files in {self.folder}"


class MilvusBackend:
    """A collection ``{prefix}_{space}`` per space on a Milvus Lite file or server."""

    def __init__(self, uri: str, prefix: str, kind: IndexKind, options: dict[str, int],
                 group_of: Callable[[VectorSpace, np.ndarray], np.ndarray]) -> None:
        self.uri, self.prefix, self.kind, self.options = uri, prefix, kind, options
        self.group_of = group_of
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect_milvus(self.uri)
        return self._client

    def new(self, space: VectorSpace, dim: int) -> VectorIndex:
        name = f"{self.prefix}_{space}"
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        return self.load(space, dim)

    def load(self, space: VectorSpace, dim: int) -> VectorIndex:
        from histoseek.index.milvus_index import MilvusIndex

        group_of = (lambda ids: self.group_of(space, ids)) if space == "image" else None
        return MilvusIndex(self.client, f"{self.prefix}_{space}", dim, self.kind,
                           group_of=group_of, **self.options)

    def save(self, space: VectorSpace, index: VectorIndex) -> None:
        from histoseek.index.milvus_index import MilvusIndex

        assert isinstance(index, MilvusIndex)
        index.save()

    def describe(self) -> str:
        return f"Milvus {self.uri}, collections {self.prefix}_*"


def connect_milvus(uri: str) -> Any:
    """A ``MilvusClient`` (``MILVUS_TOKEN`` in the environment for a secured server)."""
    import os

    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise LibraryError("this library keeps its vectors in Milvus: install the extra, "
                           "pip install 'histoseek[milvus]'") from exc
    if "://" not in uri and not Path(uri).parent.is_dir():
        raise LibraryError(f"{uri}: the folder for this Milvus Lite file does not exist")
    try:
        return MilvusClient(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""))
    except Exception as exc:  # pymilvus raises MilvusException and plain errors alike
        raise LibraryError(f"cannot connect to Milvus at {uri}: {exc}") from exc
