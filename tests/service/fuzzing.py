"""Fuzz the service through its own OpenAPI schema with schemathesis (4.x Python API), in
process over ASGI: each operation gets ``max_examples`` generated requests (valid ones, then
schema-breaking ones), derandomized, no deadline; writes carry the token. Only a server error
(5xx) is a failure; every response's status is counted.

Used by ``tests/service/test_fuzz.py`` (25 examples per operation) and
``benchmarks/fuzz_service.py`` (more). Imported only once schemathesis is known installed.
"""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from histoseek.service.app import create_app
from histoseek.service.settings import ServiceSettings
from search.test_slide_search import FakeHist
from service.helpers import AUTH, TOKEN

MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@dataclass
class OperationResult:
    label: str  # "POST /search/text"
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # a curl line and the answer each


@dataclass
class FuzzResult:
    operations: list[OperationResult]

    @property
    def requests(self) -> int:
        return sum(op.requests for op in self.operations)

    @property
    def server_errors(self) -> list[str]:
        return [f"{op.label}: {e}" for op in self.operations for e in op.server_errors]

    def table(self) -> str:
        lines = ["| operation | requests | status codes | server errors |",
                 "|---|---:|---|---:|"]
        for op in self.operations:
            codes = ", ".join(f"{code}×{n}" for code, n in sorted(op.statuses.items()))
            lines.append(f"| `{op.label}` | {op.requests} | {codes} | {len(op.server_errors)} |")
        total = Counter[int]()
        for op in self.operations:
            total.update(op.statuses)
        codes = ", ".join(f"{code}×{n}" for code, n in sorted(total.items()))
        lines.append(f"| **all {len(self.operations)} operations** | {self.requests} | {codes} "
                     f"| {len(self.server_errors)} |")
        return "\n".join(lines)


def make_app(library: Path, root: Path) -> Any:
    """The service over ``library`` (FakeHist encoders), with ``root`` as its only --root."""
    return create_app(library, ServiceSettings(token=TOKEN, roots=(root,)),
                      encoder=FakeHist(), text_encoder=FakeHist(), announce=lambda _: None)


def _fuzz_operation(operation: Any, max_examples: int) -> OperationResult:
    result = OperationResult(f"{operation.method.upper()} {operation.path}")
    for mode in MODES:
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception:  # e.g. no negative cases for a parameterless GET
            continue

        @given(case=strategy)
        @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                  print_blob=False)
        def run(case: Any) -> None:
            result.requests += 1
            try:
                response = case.call(headers=AUTH)
            except Exception as exc:  # the app raised: the server answered 500
                result.statuses[500] += 1
                result.server_errors.append(f"{case.as_curl_command(headers=AUTH)} -> raised "
                                            f"{type(exc).__name__}: {exc}")
                return
            result.statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except (AssertionError, FailureGroup) as exc:
                result.server_errors.append(
                    f"{case.as_curl_command(headers=AUTH)} -> {response.status_code} "
                    f"{response.text[:300]!r} ({type(exc).__name__})")

        with contextlib.suppress(Unsatisfiable):  # no schema-breaking request (GET /health)
            run()
    return result


def fuzz(library: Path, root: Path, max_examples: int = 25) -> FuzzResult:
    """Fuzz every operation of the service over ``library`` (which it may change: give a copy)
    with ``root`` as the ingest root; the app's lifespan runs around the whole run."""
    app = make_app(library, root)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    try:
        for found in schema.get_all_operations():
            operations.append(_fuzz_operation(found.ok(), max_examples))
    finally:
        asgi.shutdown_lifespans()  # the service's lifespan: its write thread ends, scratch goes
    return FuzzResult(operations)


def throwaway_copy(library: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of ``library`` and an ingest root holding a few PNG tiles, both in ``folder``."""
    copy = Path(shutil.copytree(library, folder / "lib"))
    root = folder / "root"
    root.mkdir()
    return copy, root
