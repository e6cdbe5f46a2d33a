"""A library's vectors are only comparable with those of the very encoder that made them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def load_stored_encoder(root: Path, stored: dict[str, Any], device: str) -> Encoder:
    """The encoder a library's manifest names (``EncoderInfo`` dict plus ``pretrained``),
    loaded through the registry and checked to be the one that made the vectors."""
    from histoseek.encoders.registry import create_encoder

    enc = create_encoder(stored["name"], pretrained=stored.get("pretrained"), device=device)
    return same_encoder(root, EncoderInfo.from_dict(stored), enc)


def text_encoder_to_record(root: Path, stored: dict[str, Any] | None, enc: Encoder
                           ) -> dict[str, Any] | None:
    """``enc``'s info when the library has no text encoder on record yet (the first report
    fixes which encoder the text space holds), else None once ``enc`` is checked against it."""
    if stored is None:
        return enc.info.to_dict()
    same_encoder(root, EncoderInfo.from_dict(stored), enc)
    return None
