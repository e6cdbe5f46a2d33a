"""The web page and its static files: served with the right types, open even with
``--private``, nothing it loads missing, OpenSeadragon vendored with its licence and shipped
in the package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from histoseek.service.routes.page import STATIC
from service.helpers import Built, assert_error, make_client

ROOT = Path(__file__).resolve().parents[2]
VENDOR = STATIC / "vendor" / "openseadragon"


def test_the_page_is_served_at_the_root(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>histoseek</title>" in page.text
    assert client.head("/").status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]  # not an API endpoint


@pytest.mark.parametrize(("name", "kind"), [
    ("app.js", "text/javascript"), ("viewer.js", "text/javascript"),
    ("api.js", "text/javascript"), ("style.css", "text/css"),
    ("vendor/openseadragon/openseadragon.min.js", "text/javascript"),
    ("vendor/openseadragon/LICENSE.txt", "text/plain"),
])
def test_static_files_have_their_content_types(client: TestClient, name: str,
                                               kind: str) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == kind
    assert response.content == (STATIC / name).read_bytes()


def test_everything_the_page_loads_exists(client: TestClient) -> None:
    html = client.get("/").text
    linked = re.findall(r'(?:src|href)="(static/[^"]+)"', html)
    assert {"static/app.js", "static/style.css",
            "static/vendor/openseadragon/openseadragon.min.js"} <= set(linked)
    modules = set()
    for script in STATIC.glob("*.js"):
        modules |= set(re.findall(r'from "\./([\w.-]+\.js)"', script.read_text("utf-8")))
    assert modules == {"api.js", "viewer.js"}
    for path in linked + [f"static/{m}" for m in modules]:
        assert client.get(f"/{path}").status_code == 200, path
    # page-relative URLs everywhere: the page also works under a proxy's path prefix
    assert not re.search(r'(?:src|href)="/', html)
    for script in STATIC.glob("*.js"):
        assert not re.search(r'api\("/|`/slides', script.read_text("utf-8")), script.name


def test_missing_and_escaping_static_paths_are_404(client: TestClient) -> None:
    assert_error(client.get("/static/nope.js"), 404)
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/routes/page.py").status_code == 404


def test_openseadragon_is_vendored_with_its_licence() -> None:
    code = (VENDOR / "openseadragon.min.js").read_text("utf-8")
    version = re.match(r"//! openseadragon (\d+)\.(\d+)\.(\d+)", code)
    assert version and version.group(1) == "6"
    assert 'function OpenSeadragon(' in code[:1000]
    licence = (VENDOR / "LICENSE.txt").read_text("utf-8")
    assert "OpenSeadragon contributors" in licence and "Redistribution and use" in licence
    readme = (VENDOR / "README.md").read_text("utf-8")
    assert f"openseadragon@{'.'.join(version.groups())}" in readme


def test_static_files_are_package_data() -> None:
    """An installed (non-editable) package ships every static file."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["histoseek"]
    package = ROOT / "src" / "histoseek"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(map(str, files - shipped))


def test_the_page_is_open_in_private_mode(built: Built) -> None:
    with make_client(built.library, private=True) as c:
        assert c.get("/").status_code == 200
        assert c.get("/static/app.js").status_code == 200
        assert_error(c.get("/info"), 401)
