"""Fuzzing: schemathesis over the service's OpenAPI schema, against a throwaway copy of the
test library (writes authorised, ingest confined to an empty temp --root): no request may get
a server error. ``benchmarks/fuzz_service.py`` runs the same with more examples."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("schemathesis")

from service.fuzzing import fuzz, throwaway_copy

EXAMPLES = 25  # per operation and generation mode (valid, then schema-breaking)


@pytest.mark.slow
def test_no_server_errors(built: Any, tmp_path: Path) -> None:
    library, root = throwaway_copy(built.library, tmp_path)
    shutil.copy(built.spare, root / "spare.png")  # something real to ingest
    result = fuzz(library, root, EXAMPLES)
    print(result.table())
    assert len(result.operations) >= 15, [op.label for op in result.operations]
    assert result.requests >= len(result.operations) * 2
    assert not result.server_errors, "\n".join(result.server_errors)
