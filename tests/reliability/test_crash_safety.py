"""kill -9 at random moments during ingest (CLI and service), then resume: 0 lost, 0
duplicated, index and SQLite agreeing after every kill. The full tally (20+ kills) is
``python benchmarks/crash_safety.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from crash_runs import kill_cycle, make_inputs, reference_library

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("crash")
    inputs = make_inputs(folder / "inputs")
    vectors, timing = reference_library(folder / "reference", inputs)
    return inputs, vectors, timing


@pytest.mark.parametrize("via,kills", [("cli", 3), ("service", 1)])
def test_killed_ingest_resumes_without_loss_or_duplicates(
        reference, tmp_path: Path, via: str, kills: int) -> None:  # type: ignore[no-untyped-def]
    inputs, vectors, timing = reference
    assert sum(len(v) for v in vectors.values()) > len(vectors)  # slides give many tiles
    # killed once a few more files are in: mid-ingest whatever this machine's speed (the
    # benchmark draws its kill times at random instead)
    tally = kill_cycle(tmp_path / "lib", inputs, vectors, via, kills, timing,
                       rng=np.random.default_rng(7), after_files=3)
    assert tally.failures == []
    assert (tally.lost, tally.duplicated, tally.wrong_vectors, tally.disagreements) == (0,) * 4
    assert tally.kills == kills and all(n > 0 for n in tally.files_at_kill)  # mid-ingest
