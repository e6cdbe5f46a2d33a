"""SHA-256 digests, in one place: weights checks, encoder versions and cache keys must agree
byte for byte, so every module hashes files and texts through these functions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20  # read files in 1 MiB blocks: weights files are too big to read whole


def sha256_files(paths: Iterable[Path], chunk: int = CHUNK) -> str:
    """Hex digest of the files' bytes in order, as if they were one file (sharded weights)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """Hex digest of one file's bytes, read in blocks so memory stays flat."""
    return sha256_files([path], chunk)


def sha256_text(text: str) -> str:
    """Hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
