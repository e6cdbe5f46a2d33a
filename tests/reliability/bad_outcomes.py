"""The rules that judge what histoseek made of each bad input (issue 14), and the runners.

``judge_cli`` and ``judge_service`` turn one run of a ``bad_corpus.Case`` into an ``Outcome``:
refused or accepted, or a CRASH (a traceback, an exit status other than 0/1/2, a signal, a
hang, a 5xx), an UNCLEAR message (one that does not name the file or field), a WRONG outcome,
or a half-written library (``histoseek info`` fails, ``histoseek check`` finds an index
disagreeing with SQLite or a damaged vector, a stray temp file, or more sources or reports
than the run reported adding).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.bad_corpus import LIB, TOKEN, Case, Request, release_fifos


@dataclass(frozen=True)
class LibState:
    """What ``histoseek info`` says, and what ``histoseek check`` finds wrong."""

    info_ok: bool
    sources: int = -1
    reports: int = -1
    problems: tuple[str, ...] = ()  # from ``check`` (indexes against SQLite), stray temp files


def library_state(lib: Path) -> LibState:
    """``histoseek info LIB --json`` and ``histoseek check LIB`` (SQLite pages, checksums, and
    every index holding exactly the stored ids and vectors), in this process."""
    from typer.testing import CliRunner

    from histoseek.cli import app

    result = CliRunner().invoke(app, ["info", str(lib), "--json"])
    if result.exit_code != 0:
        return LibState(False, problems=(f"info failed: {result.output.strip()[:200]}",))
    info = json.loads(result.stdout)
    problems = [f"stray {p.name}" for p in lib.rglob("*.tmp")]
    checked = CliRunner().invoke(app, ["check", str(lib)])
    if checked.exit_code != 0:
        problems.append(f"check: {' '.join(checked.output.split())[:300]}")
    return LibState(True, int(info["sources"]), int(info["reports"]), tuple(problems))


@dataclass(frozen=True)
class Run:
    """One CLI run: exit status (negative: killed by that signal), output, crash text."""

    code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    exception: str = ""  # an exception that escaped (in-process runs)


@dataclass(frozen=True)
class Outcome:
    case: Case
    verdict: str  # ok-refused | ok-accepted | CRASH | UNCLEAR | WRONG | skipped
    code: int | None  # exit status, or HTTP status
    message: str  # the first line the user saw
    intact: bool | None
    why: str = ""
    seconds: float = 0.0

    @property
    def half_written(self) -> bool:
        return self.intact is False


BOX = re.compile(r"[\u2500-\u257f]+")  # rich's table and panel borders
PROGRESS = re.compile(r"^\s*(indexing|encoding|searching)\b.*(\||it/s|file/s)|^\s*$")


def user_message(run: Run) -> str:
    """The line a user would read first: histoseek's error or skip line, else the option
    parser's complaint, else the first line of words on stderr, then stdout."""
    lines = [BOX.sub("", ln).strip() for ln in re.split(r"[\r\n]", run.stderr + "\n" + run.stdout)
             if not PROGRESS.search(ln)]
    lines = [ln for ln in lines if re.search(r"\w", ln) and ln != "Error"]
    for pattern in (r"^(error:|skipped)", r"No such option|Invalid value|Missing (argument|option)|"
                                          r"unexpected extra argument"):
        found = next((ln for ln in lines if re.search(pattern, ln)), None)
        if found:
            return found
    return lines[0] if lines else ""


def _added(stdout: str, unit: str) -> int:
    found = re.search(rf"(\d+) {unit} added", stdout)
    return int(found.group(1)) if found else 0


def judge_cli(case: Case, run: Run, before: LibState, after: LibState) -> Outcome:
    """CRASH, UNCLEAR, WRONG or ok, and whether the library is intact (see the module doc)."""
    message = user_message(run)
    crash = ("hang (timed out)" if run.timed_out
             else f"killed by signal {-run.code}" if run.code is not None and run.code < 0
             else "traceback" if "Traceback" in run.stderr or run.exception
             else f"exit status {run.code}" if run.code not in (0, 1, 2) else "")
    intact, why = _intact(run, before, after)
    if crash:
        return Outcome(case, "CRASH", run.code, message or run.exception, intact, crash)
    refused = run.code != 0
    said = run.stderr + run.stdout
    if refused and case.names not in said:
        verdict, reason = "UNCLEAR", f"message does not name {case.names!r}"
    elif refused and case.expect == "accept":
        verdict, reason = "WRONG", "refused a good input"
    elif not refused and case.expect == "refuse":
        verdict, reason = "WRONG", "accepted a bad input"
    else:
        verdict, reason = ("ok-refused" if refused else "ok-accepted"), ""
    return Outcome(case, verdict, run.code, message, intact, "; ".join(filter(None, [reason, why])))


def _intact(run: Run, before: LibState, after: LibState) -> tuple[bool, str]:
    if not after.info_ok or after.problems:
        return False, "; ".join(after.problems)
    files, reports = _added(run.stdout, "files"), _added(run.stdout, "reports")
    if run.code == 2:
        files = reports = 0
    if after.sources != before.sources + files:
        return False, f"sources {before.sources} -> {after.sources}, {files} reported added"
    if not before.reports <= after.reports <= before.reports + reports:
        return False, f"reports {before.reports} -> {after.reports}, {reports} reported added"
    return True, ""


def judge_service(case: Case, status: int, body: str, before: LibState,
                  after: LibState) -> Outcome:
    """A 5xx is a CRASH; a refusal must be the service's JSON error naming ``case.names``."""
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = body[:200]
    intact = after.info_ok and not after.problems and (
        status < 400 or (after.sources, after.reports) == (before.sources, before.reports))
    why = "" if intact else f"library changed: {before} -> {after}"
    first = message.splitlines()[0] if message else ""
    if status >= 500:
        return Outcome(case, "CRASH", status, first, intact, f"HTTP {status}")
    if status < 400:
        verdict = "WRONG" if case.expect == "refuse" else "ok-accepted"
        return Outcome(case, verdict, status, first, intact, why)
    if case.names.lower() not in message.lower():
        return Outcome(case, "UNCLEAR", status, first, intact, f"does not name {case.names!r}")
    return Outcome(case, "ok-refused", status, first, intact, why)


CLI = "import sys; from histoseek.cli import main; sys.argv[0] = 'histoseek'; main()"
MEMORY_LIMIT = 8 * 2**30  # a decoder that tries to take 30 GB fails here, not the machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_subprocess(case: Case, lib: Path, cwd: Path, timeout: float) -> Run:
    """``histoseek`` + ``case.argv`` in its own process (as the console script runs it), in
    ``cwd``, under ``MEMORY_LIMIT`` and ``timeout``."""
    argv = [str(lib) if word == LIB else word for word in case.argv]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "COLUMNS": "200"}
    try:
        done = subprocess.run([sys.executable, "-c", CLI, *argv], cwd=cwd, env=env,
                              capture_output=True, timeout=timeout, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as exc:
        release_fifos(cwd)
        return Run(None, _text(exc.stdout), _text(exc.stderr), timed_out=True)
    return Run(done.returncode, _text(done.stdout), _text(done.stderr))


def _text(data: bytes | str | None) -> str:
    if isinstance(data, str):
        return data
    return (data or b"").decode("utf-8", "surrogateescape")  # file names as the OS gave them


def send(client: Any, request: Request) -> tuple[int, str]:
    """``request`` through a FastAPI ``TestClient``: (status, body text)."""
    response = client.request(request.method, request.url, json=request.json,
                              content=request.content, files=request.files, data=request.data,
                              headers=request.headers)
    return response.status_code, response.text


def service_client(lib: Path, roots: Sequence[Path]) -> Any:
    """A ``TestClient`` over ``lib`` (its own encoders) with a known token, 1 MB uploads and
    ``roots`` for ingest; server exceptions come back as 500s, as a real client sees them."""
    from fastapi.testclient import TestClient

    from histoseek.service.app import create_app
    from histoseek.service.settings import ServiceSettings

    settings = ServiceSettings(token=TOKEN, max_upload_mb=1.0, roots=tuple(roots))
    app = create_app(lib, settings, announce=lambda _: None)
    return TestClient(app, raise_server_exceptions=False)


def fresh_library(base: Path, folder: Path) -> Path:
    """A private copy of the base library."""
    if folder.exists():
        shutil.rmtree(folder)
    return Path(shutil.copytree(base, folder))


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(o.verdict == verdict for o in self.outcomes)

    @property
    def half_written(self) -> int:
        return sum(o.half_written for o in self.outcomes)

    def totals(self) -> str:
        ran = [o for o in self.outcomes if o.verdict != "skipped"]
        return (f"{len(self.outcomes)} cases ({len(ran)} run, {self.count('skipped')} skipped): "
                f"{self.count('CRASH')} crashes, {self.count('UNCLEAR')} unclear messages, "
                f"{self.count('WRONG')} wrong outcomes, {self.half_written} half-written")
