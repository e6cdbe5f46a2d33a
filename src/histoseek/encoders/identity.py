"""A library's vectors are only comparable with those of the very encoder that made them."""

from __future__ import annotations

from pathlib import Path

from histoseek.encoders.base import Encoder, EncoderInfo
from histoseek.errors import LibraryMismatchError


def same_encoder(root: Path, stored: EncoderInfo, enc: Encoder) -> Encoder:
    """``enc`` if it is the stored encoder (name, weights version, dim, preprocessing)."""
    loaded = enc.info
    if (stored.name, stored.version, stored.dim, stored.preprocess) != (
            loaded.name, loaded.version, loaded.dim, loaded.preprocess):
        raise LibraryMismatchError(
            f"{root}: library vectors come from {stored.name} {stored.version} ({stored.dim}-d) "
            f"but the encoder loaded now is {loaded.name} {loaded.version} ({loaded.dim}-d); "
            "re-index into a new library or load the original weights")
    return enc
