"""A library folder on disk: made whole or not at all, and reset while still empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histoseek.errors import LibraryError, LibraryMismatchError
from histoseek.index.manifest import LibraryManifest
from histoseek.index.store import RecordStore
from histoseek.index.vectors import publish

DB_NAME = "library.sqlite"


def write_new_library(root: Path, manifest: LibraryManifest) -> Path:
    """The database of a new library at ``root``, holding only ``manifest``.

    Made under a temporary name and renamed once whole: a kill mid-way leaves no
    ``library.sqlite`` without a manifest (every later run would refuse it).
    """
    if (root / DB_NAME).exists():
        raise LibraryError(f"{root}: a library exists here already; open it instead")
    if root.exists() and not root.is_dir():
        raise LibraryError(f"{root}: exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    draft = root / f".{DB_NAME}.draft"
    for stale in (draft, Path(f"{draft}-wal"), Path(f"{draft}-shm")):
        stale.unlink(missing_ok=True)
    store = RecordStore(draft)
    manifest.save(store)
    store.close()  # checkpoints the WAL into the file, so the file alone is the library
    publish(draft, root / DB_NAME)
    return root / DB_NAME


def refuse_or_reset(root: Path, manifest: LibraryManifest, asked: dict[str, Any],
                    empty: bool) -> bool:
    """True when ``asked`` settings (None: not asked) match the library's. A library with
    records refuses other settings, naming them; an empty one may be made anew (False)."""
    differ = manifest.differences({k: v for k, v in asked.items() if v is not None})
    if not differ:
        return True
    if not empty:
        raise LibraryMismatchError(f"{root}: this library was built with " + ", ".join(
            f"{k} {was!r}" for k, (was, _) in differ.items()) + "; this run asks for "
            + ", ".join(f"{k} {now!r}" for k, (_, now) in differ.items())
            + ": use a new library folder, or leave those options out to add with the "
            "library's settings")
    return False


def delete_empty_library(root: Path) -> None:
    """Remove an empty library's database and index files (the caller has closed it)."""
    (root / DB_NAME).unlink()
    for stale in (root / "vectors").glob("*.faiss"):
        stale.unlink()
