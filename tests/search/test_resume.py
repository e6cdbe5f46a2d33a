"""Interrupted ingests: kill -9 mid-run, or an exception mid-run, then resume to completion."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.library import DB_NAME, Library

N_FILES = 300
H_AND_E = np.array([[225, 140, 190], [120, 70, 160], [240, 210, 225], [200, 120, 170]])


def make_tiles(folder: Path, n: int, prefix: str = "t", seed: int = 0, px: int = 48
               ) -> list[Path]:
    """``n`` small PNG tiles of H&E-ish colours with per-pixel noise (all distinct bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = H_AND_E[i % len(H_AND_E)] + rng.integers(-30, 30, 3)
        pixels = np.clip(base + rng.integers(-25, 25, (px, px, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{prefix}_{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _connect_ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def _committed_sources(db: Path) -> int:
    """Sources committed so far, read the way another process would (read-only)."""
    try:
        conn = _connect_ro(db)
        try:
            return conn.execute("SELECT count(*) FROM sources").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:  # not created yet, or the schema not migrated yet
        return 0


def _assert_whole_sources(db: Path) -> tuple[int, int]:
    """Every committed source has exactly its ``n_tiles`` tiles; returns (sources, tiles)."""
    conn = _connect_ro(db)
    try:
        rows = conn.execute(
            "SELECT s.path, s.n_tiles, count(t.id) FROM sources s LEFT JOIN tiles t"
            " ON t.source = s.id GROUP BY s.id").fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM tiles WHERE source NOT IN (SELECT id FROM sources)"
        ).fetchone()[0]
        tiles = conn.execute("SELECT count(*) FROM tiles").fetchone()[0]
    finally:
        conn.close()
    broken = [(p, n, c) for p, n, c in rows if n != c]
    assert not broken, f"sources with missing tiles: {broken[:5]}"
    assert orphans == 0
    return len(rows), tiles


def _assert_complete(root: Path, files: list[Path]) -> None:
    conn = _connect_ro(root / DB_NAME)
    try:
        q = conn.execute
        assert q("SELECT count(*) FROM sources").fetchone()[0] == len(files)
        assert q("SELECT count(DISTINCT sha256) FROM sources").fetchone()[0] == len(files)
        paths = {r[0] for r in q("SELECT path FROM sources")}
        assert paths == {str(f.resolve()) for f in files}  # each file once, no duplicates
        assert q("SELECT count(*) FROM tiles").fetchone()[0] == len(files)  # one tile each
        db_ids = {r[0] for r in q("SELECT id FROM tiles")}
    finally:
        conn.close()
    with Library.open(root) as lib:
        faiss_ids = lib.indexes["image"].ids().tolist()
        assert not lib.indexes._dirty  # the index file the run saved already matched SQLite
        assert len(faiss_ids) == len(set(faiss_ids)) == len(db_ids)
        assert set(faiss_ids) == db_ids
        for path in files[:: len(files) // 5]:
            hit = lib.search(image=path, k=2)[0]
            assert hit.path == str(path.resolve()) and hit.score == pytest.approx(1.0, abs=1e-5)


def _index_command(root: Path, folder: Path) -> list[str]:
    return [sys.executable, "-m", "histoseek.cli", "index", str(root), str(folder),
            "--batch-size", "8"]


@pytest.mark.slow
def test_kill_9_mid_ingest_then_resume(tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    files = make_tiles(folder, N_FILES)
    root = tmp_path / "lib"
    db = root / DB_NAME
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(_index_command(root, folder), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            seen = _committed_sources(db)
            if seen > 0:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the ingest finished (rc={proc.returncode}) before it could be killed; "
            f"stderr: {proc.stderr.read().decode()[-2000:]}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    at_kill, tiles = _assert_whole_sources(db)
    assert 0 < seen <= at_kill < N_FILES, (seen, at_kill)
    assert tiles == at_kill
    conn = _connect_ro(db)
    before = dict(conn.execute("SELECT path, id FROM sources").fetchall())
    conn.close()

    done = subprocess.run(_index_command(root, folder), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{N_FILES - at_kill} files added, {at_kill} already indexed" in done.stdout
    _assert_whole_sources(db)
    conn = _connect_ro(db)
    after = dict(conn.execute("SELECT path, id FROM sources").fetchall())
    conn.close()
    assert {path: after[path] for path in before} == before  # resumed, not redone
    _assert_complete(root, files)


def test_exception_mid_ingest_leaves_whole_files(tmp_path: Path, pyramid_tiff: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mixed"
    files = make_tiles(folder, 10, prefix="a") + make_tiles(folder, 14, prefix="c", seed=1)
    slide = folder / "b_slide.tif"  # sorts between the a_ and c_ tiles
    shutil.copy(pyramid_tiff, slide)
    root = tmp_path / "lib"
    lib = Library.create(root)
    encoder = lib.encoder
    real = encoder.encode_images
    calls = []

    def failing(tiles: np.ndarray) -> np.ndarray:
        calls.append(len(tiles))
        if len(calls) == 4:  # batches of 4: a0-3, a4-7, a8 a9 + 2 slide tiles, then boom
            raise RuntimeError("encoder crashed")
        return real(tiles)

    monkeypatch.setattr(encoder, "encode_images", failing)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        lib.add(folder, batch_size=4, progress=False)
    sources, _ = _assert_whole_sources(root / DB_NAME)
    assert 0 < sources < len(files) + 1
    assert not lib.store.find_sources(str(slide))  # half-encoded: nothing of it committed
    monkeypatch.setattr(encoder, "encode_images", real)

    report = lib.add(folder, batch_size=4, progress=False)  # the same object carries on
    assert len(report.unchanged) == sources and not report.failures
    assert len(report.added) == len(files) + 1 - sources
    n_sources, n_tiles = _assert_whole_sources(root / DB_NAME)
    assert n_sources == len(files) + 1
    (slide_pk, _), = lib.store.find_sources(str(slide))
    slide_tiles = lib.store.conn.execute(
        "SELECT count(*) FROM tiles WHERE source = ?", (slide_pk,)).fetchone()[0]
    assert slide_tiles > 1 and n_tiles == len(files) + slide_tiles
    lib.close()
    with Library.open(root) as fresh:  # and a fresh process sees one consistent library
        ids = fresh.indexes["image"].ids()
        assert sorted(ids.tolist()) == sorted(fresh.store.all_ids("image").tolist())
        assert not fresh.indexes._dirty  # the saved index already matched: no reconcile needed
        hit = fresh.search(region=(slide, 448, 448, 448, 448), k=1)[0]
        assert hit.path == str(slide.resolve()) and (hit.x, hit.y) == (448, 448)
