"""What a library holds, in words (``print(lib)``) and as a dict (``histoseek info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histoseek.index.manifest import LibraryManifest
from histoseek.index.store import RecordStore


def library_summary(root: Path, store: RecordStore, manifest: LibraryManifest) -> str:
    c, m, t = store.counts(), manifest, manifest.tiling
    return (f"Library('{root}': {c['sources']} sources ({c['slides']} slides, "
            f"{c['images']} images), {c['tiles']} tiles, {c['reports']} reports; encoder "
            f"{m.encoder_name} {m.encoder['version']} ({m.dim}-d), index {m.index} in "
            f"{m.vector_store['kind']}, tiles "
            f"{t['tile_px']} px at {t['target_mpp']} mpp)")


def library_info(root: Path, store: RecordStore, manifest: LibraryManifest) -> dict[str, Any]:
    enc = manifest.encoder
    return {
        "path": str(root),
        **store.counts(),
        "labels": store.labels(),
        "encoder": {"name": enc["name"], "version": enc["version"], "dim": enc["dim"],
                    "modalities": enc["modalities"], "pretrained": enc.get("pretrained")},
        "text_encoder": manifest.text_encoder,
        "index": manifest.index,
        "vector_store": manifest.vector_store_uri,
        "tiling": manifest.tiling,
        "slide_summary_bytes": store.summary_bytes(),
    }
