"""Helpers of the service tests (imported after each test file's ``importorskip``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from histoseek.service.app import create_app
from histoseek.service.settings import ServiceSettings
from search.test_slide_search import FakeHist

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPORTS = [
    {"report_id": "r-polyp", "text": "polyp with adenocarcinoma focus", "label": "polyp"},
    {"report_id": "r-normal", "text": "normal colonic mucosa", "label": "normal"},
]


@dataclass(frozen=True)
class Built:
    library: Path
    slides: list[Path]  # indexed pyramidal TIFFs
    image: Path  # an indexed plain PNG
    spare: Path  # a PNG tile that is not indexed (query images, ingest)
    labels: Path  # folder of PNG tiles by class


def make_client(library: Path, encoder: Any = None, **options: Any) -> TestClient:
    settings = ServiceSettings(**{"token": TOKEN, **options})
    app = create_app(library, settings, encoder=encoder or FakeHist(),
                     text_encoder=FakeHist(), announce=lambda _: None)
    return TestClient(app, raise_server_exceptions=True)


def assert_error(response: Any, status: int | Callable[[int], bool]) -> dict[str, Any]:
    """A JSON error of the service's one shape, with a message."""
    ok = status(response.status_code) if callable(status) else response.status_code == status
    assert ok, (response.status_code, response.text)
    data = response.json()
    assert set(data) >= {"error", "status"} and data["status"] == response.status_code
    assert isinstance(data["error"], str) and len(data["error"]) > 10
    return data
