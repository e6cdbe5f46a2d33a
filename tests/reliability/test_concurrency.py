"""Readers search while another process ingests; a second writer waits for the first."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from crash_runs import RUN, make_inputs

from histoseek.library import Library

pytestmark = pytest.mark.slow


def test_reader_sees_a_consistent_growing_library_while_another_process_writes(
        tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "inputs", images=40, slides=2)
    lib_path = tmp_path / "lib"
    Library.create(lib_path, encoder="classic").close()
    writer = subprocess.Popen([*RUN, "index", str(lib_path), str(inputs)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, searches = [], 0
    with Library.open(lib_path) as reader:
        probe = np.ones(reader.manifest.dim, np.float32)
        while writer.poll() is None or searches == 0:
            hits = reader.search(vector=probe, k=5)
            tiles = reader.store.counts()["tiles"]
            assert len(reader.indexes["image"]) == tiles  # index and SQLite agree
            assert all(h.path and Path(h.path).exists() for h in hits)  # every hit resolves
            seen.append(tiles)
            searches += 1
            time.sleep(0.05)
        assert writer.wait() == 0, writer.stderr.read().decode()[-2000:]
        final = reader.store.counts()["tiles"]
        assert len(reader.indexes["image"]) == final
        assert len(reader.search(vector=probe, k=final)) == final
    assert seen == sorted(seen) and searches > 3


def test_a_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    first = make_inputs(tmp_path / "first", images=30, slides=1)
    second = tmp_path / "second"
    second.mkdir()
    for path in list(first.glob("tile-*.png"))[:5]:  # the same files under other names
        shutil.copy(path, second / f"copy-{path.name}")
    lib_path = tmp_path / "lib"
    Library.create(lib_path, encoder="classic").close()
    runs = [subprocess.Popen([*RUN, "index", str(lib_path), str(folder)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for folder in (first, second)]
    for run in runs:
        assert run.wait(600) == 0, run.stderr.read().decode()[-2000:]
    with Library.open(lib_path) as lib:
        assert lib.store.counts()["sources"] == 31  # copies are the same files: added once
        assert lib.check().ok
