"""One writer per library: an advisory lock file, refused at once rather than waited on."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from histoseek.errors import LibraryError


@contextmanager
def write_lock(root: Path) -> Iterator[None]:
    with open(root / "library.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LibraryError(f"{root}: another process is writing to this library") from None
        yield
