"""Damage on disk is found (checksums, id and vector agreement) and indexes are rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from histoseek.cli import app
from histoseek.errors import LibraryError
from histoseek.library import Library
from synthetic_images import he_like_pixels


@pytest.fixture
def library(tmp_path: Path) -> Path:
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for i in range(6):
        tint = np.array([1.0, 0.5 + 0.08 * i, 0.8], np.float32)
        pixels = (he_like_pixels(224, 224, seed=i) * tint).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tiles / f"t{i}.png")
    with Library.create(tmp_path / "lib", encoder="classic") as lib:
        lib.add(tiles, progress=False)
    return tmp_path / "lib"


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def query(lib_path: Path) -> list[int]:
    with Library.open(lib_path) as lib:
        return [h.id for h in lib.search(vector=np.ones(lib.manifest.dim, np.float32), k=3)]


def test_sound_library_checks_ok(library: Path) -> None:
    code, out = run("check", library)
    assert code == 0 and "ok (6 image vectors checked)" in out


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_index_file_is_refused_then_repaired(library: Path, damage: str) -> None:
    expected = query(library)
    path = library / "vectors" / "image.faiss"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match=r"corrupt.*histoseek repair"):
        query(library)
    code, out = run("check", library)
    assert code == 1 and "image.faiss" in out and "corrupt" in out
    code, out = run("repair", library)
    assert code == 0 and "rebuilt the index from 6 image stored vectors" in " ".join(out.split())
    assert run("check", library)[0] == 0
    assert query(library) == expected


def test_flipped_stored_vector_is_named_by_file(library: Path) -> None:
    db = sqlite3.connect(library / "library.sqlite")
    tile_id, blob = db.execute("SELECT id, vector FROM tiles ORDER BY id LIMIT 1").fetchone()
    damaged = np.frombuffer(blob, np.float32).copy()
    damaged[np.argmax(np.abs(damaged))] *= -1  # one bit: the sign of its largest value
    db.execute("UPDATE tiles SET vector = ? WHERE id = ?", (damaged.tobytes(), tile_id))
    db.commit()
    path = db.execute("SELECT s.path FROM tiles t JOIN sources s ON t.source = s.id "
                      "WHERE t.id = ?", (tile_id,)).fetchone()[0]
    db.close()
    code, out = run("check", library)
    flat = " ".join(out.split())
    assert code == 1 and "1 stored vectors fail their checksum" in flat
    assert Path(path).name in flat
    assert "vectors differ from the stored ones" in flat  # the index copy disagrees too


def test_index_missing_records_is_reported_and_rebuilt(library: Path) -> None:
    with Library.open(library) as lib:
        index = lib.indexes["image"]
        index.remove(index.ids()[:2])  # as a crash between SQLite and the index would
        lib.indexes.mark_changed("image")
    code, out = run("check", library)
    assert code == 1 and "2 stored records missing" in " ".join(out.split())
    assert run("repair", library)[0] == 0 and run("check", library)[0] == 0


def test_truncated_database_gives_one_clear_line(library: Path) -> None:
    db = library / "library.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[:20000])
    code, out = run("check", library)
    assert code == 2
    assert "library.sqlite" in out or "database is damaged" in out
    code, out = run("search", library, "--text", "tumour")
    assert code == 2
