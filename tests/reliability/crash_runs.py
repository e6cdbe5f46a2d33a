"""kill -9 during ingest, then resume: shared by tests/reliability and benchmarks/crash_safety.py.

An ingest runs as a real process (the CLI, or ``histoseek serve`` taking ``POST /ingest``)
and is killed with SIGKILL at a random moment; the next run resumes. After every kill the
library is opened as a reader would (which reconciles the index with SQLite) and checked;
after the final resume it is compared, file by file, with a library built without a kill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from histoseek.library import Library
from synthetic_images import he_like_pixels, write_pyramid_tiff

TOKEN = "crash-test-token-0123456789"
BATCH = 8  # tiles per encoder batch: small, so that commits spread over the whole ingest
RUN = [sys.executable, "-c", "from histoseek.cli import main; main()"]
POST = (f"import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
        f"sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={{'Authorization': "
        f"'Bearer {TOKEN}', 'Content-Type': 'application/json'}}), timeout=600).read()")


def make_inputs(folder: Path, images: int = 48, slides: int = 2) -> Path:
    """Small tiles (one tile each) and pyramidal slides (dozens of tiles each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        tint = np.array([1.0, 0.5 + 0.02 * i, 0.95 - 0.015 * i], np.float32)
        pixels = (he_like_pixels(224, 224, seed=i) * tint).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"tile-{i:02d}.png")
    for s in range(slides):
        write_pyramid_tiff(folder / f"slide-{s}.tiff", he_like_pixels(1792, 1792, seed=100 + s),
                           mpp=0.5)
    return folder


def snapshot(lib_path: Path) -> dict[str, np.ndarray]:
    """Each indexed file's tile vectors (by file name, tiles in box order)."""
    with Library.open(lib_path) as lib:
        names = {r["id"]: Path(r["path"]).name for r in lib.sources()}
        out: dict[str, list[tuple[tuple[int, int], np.ndarray]]] = {}
        places = None
        for ids, vectors in lib.store.iter_vectors("image", lib.manifest.dim):
            places, _ = lib.store.tile_places(ids.tolist())
            for i, v in zip(ids.tolist(), vectors, strict=True):
                x, y, _, _, _, src = places[i]
                out.setdefault(names[src], []).append(((y, x), v.copy()))
    return {name: np.stack([v for _, v in sorted(rows, key=lambda r: r[0])])
            for name, rows in out.items()}


@dataclass
class Tally:
    kills: int = 0
    runs: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_vectors: int = 0
    disagreements: int = 0  # a reader found index and SQLite disagreeing after a kill
    failures: list[str] = field(default_factory=list)
    files_at_kill: list[int] = field(default_factory=list)  # files indexed when each kill hit

    def add(self, other: Tally) -> None:
        for name in ("kills", "runs", "lost", "duplicated", "wrong_vectors", "disagreements"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures
        self.files_at_kill += other.files_at_kill


def indexed_files(lib_path: Path) -> int:
    """Files in the library now (-1: killed before the library existed)."""
    if not (lib_path / "library.sqlite").exists():
        return -1
    with Library.open(lib_path) as lib:
        return int(lib.store.counts()["sources"])


def reader_view_agrees(lib_path: Path) -> list[str]:
    """Open as a reader would (reconciling the index), then check every copy on disk."""
    if not (lib_path / "library.sqlite").exists():
        return []  # killed before the library was created: nothing to disagree
    with Library.open(lib_path) as lib:
        lib.indexes["image"]
    with Library.open(lib_path) as lib:
        return lib.check().problems


def compare(lib_path: Path, reference: dict[str, np.ndarray]) -> Tally:
    tally = Tally()
    got = snapshot(lib_path)
    with Library.open(lib_path) as lib:
        shas = [row["sha256"] for row in lib.sources()]
        tiles_in_index = len(lib.indexes["image"])
        tally.duplicated += len(shas) - len(set(shas))
        problems = lib.check().problems
    tally.lost += len(set(reference) - set(got))
    for name, vectors in got.items():
        want = reference.get(name)
        if want is None or len(vectors) != len(want):
            tally.duplicated += 1
            tally.failures.append(f"{name}: {len(vectors)} tiles, expected "
                                  f"{None if want is None else len(want)}")
        elif not np.allclose(vectors, want, atol=1e-5):
            tally.wrong_vectors += 1
    if tiles_in_index != sum(len(v) for v in reference.values()):
        tally.failures.append(f"index holds {tiles_in_index} tiles")
    tally.disagreements += len(problems)
    tally.failures += problems
    return tally


@dataclass
class Running:
    """An ingest in flight: the process that writes, and for the service, its client."""

    proc: subprocess.Popen
    client: subprocess.Popen | None = None

    def kill(self) -> bool:
        """SIGKILL the writer (the client too); True when it was still running."""
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.client is not None:
            self.client.kill()
            self.client.wait()
        return alive

    def finish(self, timeout: float = 600) -> None:
        """Let it end on its own (the service: once its ingest request is answered)."""
        if self.client is not None:
            self.client.wait(timeout)
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        if self.client is None and code != 0:
            raise RuntimeError(self.proc.stderr.read().decode()[-2000:])


def cli_ingest(lib_path: Path, inputs: Path) -> Running:
    return Running(subprocess.Popen(
        [*RUN, "index", str(lib_path), str(inputs), "--encoder", "classic", "--batch-size",
         str(BATCH)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_ingest(lib_path: Path, inputs: Path) -> Running:
    """``histoseek serve`` on the library, then ``POST /ingest`` of the inputs folder from a
    child process (so that the request is in flight when the server dies)."""
    if not (lib_path / "library.sqlite").exists():
        Library.create(lib_path, encoder="classic").close()
    port = free_port()
    env = {**os.environ, "HISTOSEEK_TOKEN": TOKEN}
    server = subprocess.Popen([*RUN, "serve", str(lib_path), "--port", str(port), "--root",
                               str(inputs)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode()[-2000:]) from None
            time.sleep(0.2)
    client = subprocess.Popen(
        [sys.executable, "-c", POST, f"http://127.0.0.1:{port}/ingest",
         json.dumps({"paths": [str(inputs)]})],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Running(server, client)


def wait_for_files(running: Running, lib_path: Path, files: int) -> None:
    """Until the library holds ``files`` more files than now (or the run ends)."""
    target = max(0, indexed_files(lib_path)) + files
    while running.proc.poll() is None and indexed_files(lib_path) < target:
        time.sleep(0.02)


def kill_cycle(lib_path: Path, inputs: Path, reference: dict[str, np.ndarray], via: str,
               kills: int, timing: Timing, rng: np.random.Generator,
               after_files: int | None = None) -> Tally:
    """``kills`` runs each killed after a delay drawn from ``timing`` (or, with
    ``after_files``, once that many more files have been committed), then a resume."""
    start = cli_ingest if via == "cli" else service_ingest
    tally = Tally()
    for _ in range(kills):
        running = start(lib_path, inputs)
        if after_files is None:
            time.sleep(timing.draw(rng, scale=1.0 if via == "cli" else 0.8))
        else:
            wait_for_files(running, lib_path, after_files)
        tally.runs += 1
        if running.kill():
            tally.kills += 1
            tally.files_at_kill.append(indexed_files(lib_path))
        problems = reader_view_agrees(lib_path)
        tally.disagreements += len(problems)
        tally.failures += problems
    start(lib_path, inputs).finish()
    tally.runs += 1
    tally.add(compare(lib_path, reference))
    return tally


@dataclass(frozen=True)
class Timing:
    """When, in seconds from its start, an uninterrupted CLI ingest first wrote, and ended."""

    first_write: float
    end: float

    def draw(self, rng: np.random.Generator, scale: float = 1.0) -> float:
        """A kill delay: a quarter of them while the process starts up, the rest while it
        writes (where a kill can tear something)."""
        if rng.random() < 0.25:
            return float(rng.uniform(0, self.first_write)) * scale
        return float(rng.uniform(self.first_write, self.end)) * scale


def reference_library(lib_path: Path, inputs: Path) -> tuple[dict[str, np.ndarray], Timing]:
    """Built without a kill, timing when its writes begin and end."""
    started = time.monotonic()
    running, first_write = cli_ingest(lib_path, inputs), None
    while running.proc.poll() is None:
        if first_write is None and indexed_files(lib_path) > 0:
            first_write = time.monotonic() - started
        time.sleep(0.05)
    running.finish()
    end = time.monotonic() - started
    return snapshot(lib_path), Timing(first_write or end / 2, end)
