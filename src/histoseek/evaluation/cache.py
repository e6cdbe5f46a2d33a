"""Embedding cache keyed by (encoder name, encoder version, file sha256).

A second evaluation run, or a run with another metric, never re-encodes a file whose bytes
and encoder are unchanged. One SQLite file; writes are transactional.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from histoseek.encoders.base import Encoder
from histoseek.hashing import sha256_file
from histoseek.search.queries import query_tile


def default_cache_dir() -> Path:
    base = os.environ.get("HISTOSEEK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "histoseek")
    return Path(base)


class EmbeddingCache:
    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(folder / "embeddings.sqlite"), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT, sha256 TEXT, vector BLOB,"
            " PRIMARY KEY (encoder, sha256))")

    def get(self, key: str, shas: list[str], dim: int) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(shas), 900):
            part = shas[start : start + 900]
            rows = self.conn.execute(
                f"SELECT sha256, vector FROM embeddings WHERE encoder = ? AND sha256 IN "
                f"({','.join('?' * len(part))})", (key, *part))
            for sha, blob in rows:
                vector = np.frombuffer(blob, np.float32)
                if len(vector) == dim:
                    found[sha] = vector
        return found

    def put(self, key: str, shas: list[str], vectors: np.ndarray) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
            [(key, s, np.ascontiguousarray(v, np.float32).tobytes())
             for s, v in zip(shas, vectors, strict=True)])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def encoder_from_spec(spec: str, device: str = "cpu") -> Encoder:
    """``NAME`` or ``NAME@WEIGHTS`` (a hub id or local path), e.g. to compare checkpoints."""
    from histoseek.encoders.registry import create_encoder

    name, _, pretrained = spec.partition("@")
    return create_encoder(name, pretrained=pretrained or None, device=device)


def file_tag(spec: str) -> str:
    """A file-name-safe tag for an encoder spec: ``NAME`` or ``NAME-<weights stem>``."""
    name, _, pretrained = spec.partition("@")
    return f"{name}-{Path(pretrained).stem}" if pretrained else name


def encoder_key(encoder: Encoder, tile_px: int) -> str:
    return f"{encoder.info.name}|{encoder.info.version}|{encoder.info.dim}|{tile_px}"


def embed_paths(encoder: Encoder, paths: list[Path] | tuple[Path, ...],
                cache: EmbeddingCache | None, tile_px: int = 224, batch_size: int = 64,
                progress: bool = True) -> np.ndarray:
    """Embed each image taken whole as one tile; cached vectors are reused."""
    shas = [sha256_file(p) for p in paths]
    key = encoder_key(encoder, tile_px)
    known = cache.get(key, shas, encoder.dim) if cache else {}
    todo = [i for i, s in enumerate(shas) if s not in known]
    out = np.zeros((len(paths), encoder.dim), np.float32)
    for i, sha in enumerate(shas):
        if sha in known:
            out[i] = known[sha]
    bar = tqdm(total=len(todo), unit="img", desc=f"encoding ({encoder.name})",
               disable=not progress or not todo, dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        tiles = np.concatenate([query_tile(paths[i], tile_px) for i in part])
        vectors = encoder.encode_images(tiles)
        out[part] = vectors
        if cache:
            cache.put(key, [shas[i] for i in part], vectors)
        bar.update(len(part))
    bar.close()
    return out
