"""Ingest on a local Ray cluster: same records as a local ingest, exactly once, even when a
worker is killed mid-task."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from histoseek.ingest.ray_ingest import FAULT_ENV
from histoseek.library import Library
from synthetic_images import he_like_pixels

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def fault_marker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local 2-CPU cluster whose workers kill themselves once when the marker is absent."""
    marker = tmp_path_factory.mktemp("ray") / "killed-once"
    marker.touch()  # disarmed until a test deletes it
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private test cluster
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAULT_ENV: str(marker)}})
    yield marker
    ray.shutdown()


def _tiles(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        tint = np.array([1.0, 0.5 + 0.06 * i, 0.9 - 0.05 * i], np.float32)
        pixels = (he_like_pixels(256, 256, seed=i) * tint).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"tile-{i}.png")
    return folder


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    rows = {r["id"]: Path(r["path"]).name for r in lib.sources()}
    ids, vectors = next(lib.store.iter_vectors("image", lib.manifest.dim))
    return {rows[int(s)]: v for s, v in zip(lib.store.tile_sources(ids), vectors, strict=True)}


def test_ray_ingest_matches_local_and_survives_a_killed_worker(
        fault_marker: Path, tmp_path: Path) -> None:
    tiles = _tiles(tmp_path / "tiles")
    with Library.create(tmp_path / "local", encoder="classic") as lib:
        lib.add(tiles, progress=False)
        local = _vectors(lib)
    with Library.create(tmp_path / "ray", encoder="classic") as lib:
        report = lib.add(tiles, progress=False, ray="auto")
        assert len(report.added) == 8 and not report.failures
        on_ray = _vectors(lib)
    assert on_ray.keys() == local.keys()
    for name, vector in local.items():
        np.testing.assert_allclose(on_ray[name], vector, atol=1e-6)

    fault_marker.unlink()  # arm: the first task to finish kills its worker before returning
    with Library.create(tmp_path / "killed", encoder="classic") as lib:
        report = lib.add(tiles, progress=False, ray="auto")
        assert fault_marker.exists(), "no worker was killed"
        assert len(report.added) == 8 and not report.failures
        shas = [s["sha256"] for s in lib.sources()]
        assert len(shas) == len(set(shas)) == 8  # the retried file landed once
        assert lib.store.counts()["tiles"] == 8 == len(lib.indexes["image"])
        again = lib.add(tiles, progress=False, ray="auto")  # resume: nothing new
        assert not again.added and len(again.unchanged) == 8
