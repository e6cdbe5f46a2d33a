"""A library remembers which weights made its vectors: v1 libraries refuse the v2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from histoseek import Library
from histoseek.errors import LibraryMismatchError

V1_VERSION = "612c7ae58017ff2e"  # sha256[:16] of the released histoseek-base v1 weights


def test_a_v1_library_refuses_v2_vectors_and_says_to_reindex(tmp_path: Path) -> None:
    lib = Library.create(tmp_path / "lib", encoder="histoseek-base")
    manifest = dict(lib.manifest.encoder)
    assert manifest["version"] != V1_VERSION and manifest["dim"] == 472 + 256
    # what a library written by histoseek 0.1 (v1 weights, 256-d) records
    lib.store.set_meta({"encoder": {**manifest, "version": V1_VERSION, "dim": 256,
                                    "preprocess": {**manifest["preprocess"],
                                                   "mean": [0.485, 0.456, 0.406],
                                                   "std": [0.229, 0.224, 0.225]}}})
    lib.close()
    old = Library.open(tmp_path / "lib")
    with pytest.raises(LibraryMismatchError, match="re-index") as info:
        _ = old.encoder
    message = str(info.value)
    assert V1_VERSION in message and "256-d" in message and "728-d" in message
    old.close()
