"""One writer per library: an advisory lock file; a second writer waits its turn, bounded."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from histoseek.errors import LibraryError

LOCK_TIMEOUT_ENV = "HISTOSEEK_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0  # long enough for another ingest's batch, not forever


@contextmanager
def write_lock(root: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the library's write lock, waiting up to ``timeout`` s (default
    ``HISTOSEEK_LOCK_TIMEOUT`` or 300) for another writer to finish."""
    if timeout is None:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_S))
    deadline = time.monotonic() + timeout
    with open(root / "library.lock", "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LibraryError(
                        f"{root}: another process has been writing to this library for over "
                        f"{timeout:g} s; try again when it is done (or set "
                        f"{LOCK_TIMEOUT_ENV})") from None
                time.sleep(0.1)
        yield
