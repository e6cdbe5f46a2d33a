"""Issue 14: no input in the bad-input corpus crashes histoseek or leaves a library half-written.

Each case of ``bad_corpus.SPECS`` runs once, on a private copy of a small classic library: CLI
cases through ``histoseek.cli`` in this process (typer's ``CliRunner``, in a thread so that a
hang fails the case instead of the run), the few that could take the machine's memory if a
guard broke in a subprocess under a memory limit, and service cases through FastAPI's
``TestClient``. ``bad_outcomes`` judges each: no traceback, exit status 0/1/2 (HTTP 4xx), a
message naming the file or field, the expected outcome, and the library intact.
``benchmarks/bad_inputs.py`` runs the same corpus as separate processes and prints the tally.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from histoseek.cli import app
from reliability.bad_corpus import LIB, SPECS, Case, build_library, release_fifos, write_corpus
from reliability.bad_outcomes import (
    LibState,
    Outcome,
    Run,
    fresh_library,
    judge_cli,
    judge_service,
    library_state,
    run_subprocess,
    send,
    service_client,
)

TIMEOUT_S = 60.0
# A broken size guard would let these decode 30 GB: run them where a memory limit holds.
ISOLATED = {"100k-png-header", "100k-sparse-tiff", "query-100k-png-header"}
CLI_CASES = [s.name for s in SPECS if s.kind != "service"]
SERVICE_CASES = [s.name for s in SPECS if s.kind == "service"]


@dataclass(frozen=True)
class Corpus:
    cases: dict[str, Case]
    folder: Path
    base: Path  # the library every case starts from
    base_state: LibState


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    work = tmp_path_factory.mktemp("bad-inputs")
    cases = {c.name: c for c in write_corpus(work / "corpus")}
    base = build_library(work)
    yield Corpus(cases, work / "corpus", base, library_state(base))
    for path in (work / "corpus").rglob("*"):  # chmod-000 folders, so tmp cleanup works
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def run_in_process(case: Case, lib: Path, cwd: Path, timeout: float) -> Run:
    """``histoseek`` + ``case.argv`` through ``CliRunner``; a hang becomes ``timed_out``."""
    argv = [str(lib) if word == LIB else word for word in case.argv]
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(CliRunner().invoke(app, argv)),
                              daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        release_fifos(cwd)  # a reader stuck on a FIFO ends; the thread is left behind
        return Run(None, "", "", timed_out=True)
    result = done[0]
    escaped = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "".join(traceback.format_exception(*result.exc_info))
    return Run(result.exit_code, result.stdout, result.stderr, exception=escaped)


def explain(o: Outcome, run: Run | None = None) -> str:
    text = f"{o.case.name}: {o.verdict} ({o.why}); code {o.code}; message {o.message!r}"
    if run is not None:
        text += f"\nstderr:\n{run.stderr[-3000:]}\n{run.exception[-3000:]}"
    return text


def test_the_corpus_is_at_least_40_distinct_cases_of_every_kind() -> None:
    names = [s.name for s in SPECS]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert {s.kind for s in SPECS} == {"index", "reports", "labels", "query", "service"}


@pytest.mark.parametrize("name", CLI_CASES)
def test_bad_input_through_the_cli(name: str, corpus: Corpus, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    case = corpus.cases[name]
    if case.skip:
        pytest.skip(case.skip)
    lib = fresh_library(corpus.base, tmp_path / "lib")
    monkeypatch.chdir(corpus.folder)  # the leading-dash cases name their file relatively
    run = (run_subprocess(case, lib, corpus.folder, TIMEOUT_S) if name in ISOLATED
           else run_in_process(case, lib, corpus.folder, TIMEOUT_S))
    outcome = judge_cli(case, run, corpus.base_state, library_state(lib))
    assert outcome.verdict in ("ok-refused", "ok-accepted"), explain(outcome, run)
    assert outcome.intact, explain(outcome, run)


@pytest.fixture(scope="module")
def service(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    pytest.importorskip("fastapi", reason="the service needs the 'serve' extra")
    lib = fresh_library(corpus.base, tmp_path_factory.mktemp("bad-service") / "lib")
    with service_client(lib, roots=[corpus.folder]) as client:
        yield client, lib


@pytest.mark.parametrize("name", SERVICE_CASES)
def test_bad_request_to_the_service(name: str, corpus: Corpus,
                                    service: tuple[Any, Path]) -> None:
    client, lib = service
    case = corpus.cases[name]
    assert case.request is not None
    before = library_state(lib)
    status, body = send(client, case.request)
    outcome = judge_service(case, status, body, before, library_state(lib))
    assert outcome.verdict == "ok-refused", explain(outcome) + f"\n{body[:2000]}"
    assert outcome.intact, explain(outcome)
