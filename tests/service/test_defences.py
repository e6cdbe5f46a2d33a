"""Hostile or mistaken input: size limits, content sniffing, decompression bombs, malformed
JSON, timeouts. Every answer is a JSON error with a message, never a 500."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient
from PIL import Image

from search.test_slide_search import FakeHist
from service.helpers import AUTH, Built, assert_error, make_client


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def png_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 180, np.uint8)).convert(mode).save(out, "PNG")
    return out.getvalue()


def upload(client: TestClient, data: bytes, name: str = "q.png", **form: str):  # type: ignore[no-untyped-def]
    return client.post("/search/image", files={"file": (name, data, "image/png")}, data=form)


def test_uploads_over_the_limit_are_413(built: Built) -> None:
    with make_client(built.library, max_upload_mb=0.5) as client:
        big = b"\x89PNG\r\n\x1a\n" + bytes(600_000)
        refused = assert_error(upload(client, big), 413)
        assert "--max-upload-mb" in refused["error"]

        def stream():  # no Content-Length: cut off while reading
            for _ in range(60):
                yield bytes(10_000)

        assert_error(client.post("/search/text", content=stream(),
                                 headers={"Content-Type": "application/json"}), 413)
        assert upload(client, built.spare.read_bytes()).status_code == 200


def test_decompression_bombs_are_refused_before_decoding(client: TestClient) -> None:
    refused = assert_error(upload(client, png_header_only(8_000, 8_000)), 413)
    assert "8000x8000" in refused["error"]
    assert_error(upload(client, png_header_only(200_000, 200_000)), 413)  # past Pillow's own


def test_types_are_judged_by_content(client: TestClient, built: Built) -> None:
    assert_error(upload(client, b"GIF89a" + bytes(100), "x.png"), 415)
    assert_error(upload(client, b"%PDF-1.4 " + bytes(100), "x.png"), 415)
    assert_error(upload(client, b"", "x.png"), 400)
    assert_error(upload(client, b"\x89PNG\r\n\x1a\n" + bytes(40), "x.png"), 400)  # truncated
    named_wrong = upload(client, built.spare.read_bytes(), "tile.jpg")  # a PNG called .jpg
    assert named_wrong.status_code == 200 and named_wrong.json()["query"]["format"] == "PNG"
    assert_error(upload(client, png_bytes(64, 64, "L")), 422)  # known type, not RGB
    assert_error(upload(client, png_bytes(8, 8)), 400)  # too small to search with


@pytest.mark.parametrize(("body", "status"), [
    (b'{"text": "polyp"', 400),  # malformed JSON
    (b"[1, 2]", 422),
    (b'{"text": ""}', 400),  # empty query, the library's own message
    (b'{"text": "   "}', 400),
    (b'{"text": "polyp", "k": 0}', 422),
    (b'{"text": "polyp", "k": "many"}', 422),
    (b'{"text": "polyp", "target": "everything"}', 422),
    (b'{"text": "polyp", "colour": "red"}', 422),  # unknown option, not ignored
    (b'{"text": "polyp", "where": {"no_such_key": "x"}, "target": "tiles"}', 400),
    (b'{"text": "polyp", "group": true}', 400),  # group applies to tiles, not reports
])
def test_bad_json_bodies(client: TestClient, body: bytes, status: int) -> None:
    assert_error(client.post("/search/text", content=body,
                             headers={"Content-Type": "application/json"}), status)


def test_wrong_content_types(client: TestClient, built: Built) -> None:
    refused = assert_error(client.post("/search/text", content=b"text=polyp",
                                       headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in refused["error"]
    assert_error(client.post("/search/text", files={"file": ("q.png", b"x")}), 415)
    assert_error(client.post("/search/image", json={"image": "x"}), 422)
    assert_error(client.post("/search/text"), 422)
    assert_error(upload(client, built.spare.read_bytes(), where="{not json"), 400)
    assert_error(upload(client, built.spare.read_bytes(), where="[1]"), 400)


def test_unknown_routes_methods_and_sources(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404)
    assert_error(client.put("/search/text", json={}), 405)
    assert_error(client.post("/search/slide", json={"source": 999_999}), 404)
    assert_error(client.post("/search/region", json={"source": "nope.tif", "x": 0, "y": 0,
                                                     "w": 10, "h": 10}), 404)
    assert_error(client.post("/search/region", json={"source": 1, "x": 0, "y": 0, "w": 10 ** 9,
                                                     "h": 10}), 400)  # outside the slide
    assert_error(client.post("/classify", json={"source": 1, "classes": ["x", "y"]}), 400)


def test_slow_queries_time_out_with_504(built: Built) -> None:
    class Slow(FakeHist):
        def encode_texts(self, texts: list[str]) -> np.ndarray:
            time.sleep(1.0)
            return super().encode_texts(texts)

    with make_client(built.library, encoder=Slow(), timeout_s=0.2) as client:
        started = time.perf_counter()
        refused = assert_error(client.post("/search/text", json={"text": "polyp",
                                                                 "target": "tiles"}), 504)
        assert time.perf_counter() - started < 0.9 and "--timeout" in refused["error"]
        assert client.get("/health").status_code == 200  # the service still answers


GARBAGE = [
    ("post", "/search/text", {"content": b"\xff\xfe\x00", "headers": {
        "Content-Type": "application/json"}}),
    ("post", "/search/text", {"json": {"text": "x" * 20_000}}),
    ("post", "/search/text", {"json": {"text": "polyp", "where": {"a b": "c"}, "target": "tiles"}}),
    ("post", "/search/text", {"json": {"text": "polyp", "level": "region", "target": "slides"}}),
    ("post", "/search/region", {"json": {"source": -1, "x": -5, "y": 0, "w": 0, "h": 1}}),
    ("post", "/search/slide", {"json": {"source": "../../etc/passwd"}}),
    ("post", "/search/slide", {"json": {"source": None}}),
    ("post", "/classify", {"json": {"source": 1, "classes": "polyp,normal"}}),
    ("post", "/classify", {"json": {"source": 1, "top_k": -1}}),
    ("post", "/search/image", {"data": {"k": "1"}}),
    ("post", "/search/image", {"files": {"file": ("x", b"\x00" * 10)}, "data": {"k": "-1"}}),
    ("get", "/slides/1/heatmap.png", {"params": {"text": "polyp", "region": "1:0,0,5,5"}}),
    ("get", "/slides/1/heatmap.png", {"params": {"region": "1:0,0,-5,5"}}),
    ("get", "/slides/1/heatmap.png", {"params": {"text": ""}}),
    ("get", "/slides/1/thumbnail.png", {"params": {"size": "big"}}),
    ("get", "/slides/1_files/-1/0_0.jpeg", {}),
    ("get", "/slides/1_files/99/0_0.jpeg", {}),
    ("get", "/sources", {"params": {"limit": 0}}),
    ("get", "/sources", {"params": {"kind": "pdf"}}),
    ("get", "/reports", {"params": {"offset": -1}}),
    ("get", "/sources/%2e%2e%2f%2e%2e%2fetc%2fpasswd", {}),
    ("post", "/ingest", {"json": {"paths": "not-a-list"}, "headers": AUTH}),
    ("post", "/ingest", {"json": {"paths": []}, "headers": AUTH}),
    ("post", "/reports", {"content": b"{",
                          "headers": {**AUTH, "Content-Type": "application/json"}}),
    ("post", "/reports/csv", {"headers": AUTH}),
    ("delete", "/sources/", {"headers": AUTH}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), GARBAGE)
def test_never_a_500(client: TestClient, method: str, path: str, kwargs: dict) -> None:
    assert_error(getattr(client, method)(path, **kwargs), lambda s: 400 <= s < 500)


def test_the_core_install_does_not_import_the_service() -> None:
    code = ("import sys, histoseek, histoseek.cli, histoseek.library\n"
            "from typer.testing import CliRunner\n"
            "CliRunner().invoke(histoseek.cli.app, ['--help'])\n"
            "bad = [m for m in ('fastapi', 'uvicorn', 'multipart', 'starlette', "
            "'histoseek.service') if m in sys.modules]\n"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bad_settings_are_refused_with_a_message() -> None:
    from histoseek.errors import InputError
    from histoseek.service.settings import ServiceSettings

    with pytest.raises(InputError, match="--max-upload-mb"):
        ServiceSettings(max_upload_mb=0)
    with pytest.raises(InputError, match="--port"):
        ServiceSettings(port=70_000)
