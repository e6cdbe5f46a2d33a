"""Writes: the token on every one, root confinement, the CLI's library calls, the audit log."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from histoseek.index.store import RecordStore
from histoseek.library import Library
from histoseek.service.app import create_app
from histoseek.service.auth import TOKEN_ENV, TOKEN_FILE, token_hash
from histoseek.service.settings import ServiceSettings
from search.test_slide_search import FakeHist
from service.helpers import AUTH, TOKEN, Built, assert_error, make_client

CSV = b"report_id,text,label\nr-csv,polyp and polyp by normal,polyp\n"
WRITES = [
    ("post", "/ingest", {"json": {"paths": ["x.png"]}}),
    ("post", "/reports", {"json": {"reports": ["polyp"]}}),
    ("post", "/reports/csv", {"files": {"file": ("r.csv", CSV, "text/csv")}}),
    ("delete", "/sources/1", {}),
    ("get", "/audit", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
def test_every_write_needs_the_token(writable: tuple[TestClient, Path], method: str,
                                     path: str, kwargs: dict) -> None:
    client, _ = writable
    call = getattr(client, method)
    missing = assert_error(call(path, **kwargs), 401)
    assert "Authorization: Bearer" in missing["error"]
    assert_error(call(path, headers={"Authorization": "Bearer not-the-token"}, **kwargs), 403)
    assert_error(call(path, headers={"Authorization": f"Basic {TOKEN}"}, **kwargs), 401)
    assert client.get("/sources").json()["total"] == 3  # nothing changed


def test_ingest_is_disabled_without_roots(lib_copy: Path, built: Built) -> None:
    with make_client(lib_copy) as client:
        refused = assert_error(client.post("/ingest", json={"paths": [str(built.spare)]},
                                           headers=AUTH), 403)
        assert "--root" in refused["error"]


def test_ingest_then_search_sees_it_and_remove(writable: tuple[TestClient, Path],
                                               built: Built) -> None:
    client, root = writable
    shutil.copytree(built.labels / "normal", root / "normal")
    before = client.post("/search/image", files={"file": ("q.png", built.spare.read_bytes())},
                         data={"k": "1"}).json()
    assert before["hits"][0]["path"] != str(root / "normal" / built.spare.name)
    done = client.post("/ingest", json={"paths": ["normal"], "metadata": {"site": "C"}},
                       headers=AUTH)
    assert done.status_code == 200, done.text
    report = done.json()
    assert len(report["added"]) == 24 and report["failed"] == [] and report["tiles"] == 24
    again = client.post("/ingest", json={"paths": [str(root / "normal")]}, headers=AUTH).json()
    assert again["added"] == [] and len(again["unchanged"]) == 24  # resumable, no duplicates
    after = client.post("/search/image", files={"file": ("q.png", built.spare.read_bytes())},
                        data={"k": "1"}).json()
    top = after["hits"][0]  # the search thread picked up the new records
    assert top["path"] == str((root / "normal" / built.spare.name).resolve())
    assert top["metadata"]["site"] == "C"
    removed = client.delete(f"/sources/{top['source']}", headers=AUTH).json()
    assert removed == {"removed": str(top["source"]), "sources": 1, "tiles": 1, "reports": 0}
    assert_error(client.get(f"/sources/{top['source']}"), 404)
    gone = client.post("/search/image", files={"file": ("q.png", built.spare.read_bytes())},
                       data={"k": "1"}).json()
    assert gone["hits"][0]["path"] != top["path"]
    assert_error(client.delete(f"/sources/{top['source']}", headers=AUTH), 404)


def test_paths_stay_inside_the_roots(writable: tuple[TestClient, Path], built: Built,
                                     tmp_path: Path) -> None:
    client, root = writable
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(built.spare, outside / "secret.png")
    (root / "inner").mkdir()
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "inner" / "link.png").symlink_to(outside / "secret.png")
    (root / "dirlink").symlink_to(outside, target_is_directory=True)
    for bad in ("../outside/secret.png", "inner/../../outside/secret.png",
                str(outside / "secret.png"), str(outside / "missing.png"), "/etc/passwd",
                "link.png", "inner", "dirlink", ".", str(root)):  # the root holds links out
        refused = assert_error(client.post("/ingest", json={"paths": [bad]}, headers=AUTH), 403)
        assert "root" in refused["error"] or "outside" in refused["error"], bad
    assert_error(client.post("/ingest", json={"paths": ["missing.png"]}, headers=AUTH), 404)
    assert_error(client.post("/ingest", json={"paths": ["a\x00b"]}, headers=AUTH), 400)
    shutil.copy(built.spare, root / "ok.png")
    assert_error(client.post("/ingest", json={"paths": ["ok.png"], "labels": "../x.csv"},
                             headers=AUTH), 403)
    assert client.get("/sources").json()["total"] == 3


def test_ingest_reports_a_bad_file_without_failing(writable: tuple[TestClient, Path]) -> None:
    client, root = writable
    (root / "fake.png").write_text("not an image")
    report = client.post("/ingest", json={"paths": ["fake.png"]}, headers=AUTH).json()
    assert report["added"] == [] and len(report["failed"]) == 1
    assert "fake.png" in report["failed"][0]["path"]


def test_reports_from_json_and_csv(writable: tuple[TestClient, Path]) -> None:
    client, _ = writable
    added = client.post("/reports", headers=AUTH, json={"reports": [
        {"report_id": "r-new", "text": "normal mucosa", "slide_id": "s-9"},
        "adenocarcinoma nest"]}).json()
    assert len(added["added"]) == 2 and added["notes"]  # s-9 names no slide yet
    assert client.get("/reports/r-new").json()["metadata"] == {"slide_id": "s-9"}
    csv = client.post("/reports/csv", headers=AUTH,
                      files={"file": ("r.csv", CSV, "text/csv")}).json()
    assert csv["added"] == ["r-csv"]
    assert client.get("/reports").json()["total"] == 5
    hits = client.post("/search/text", json={"text": "polyp polyp normal", "k": 1}).json()
    assert hits["hits"][0]["report_id"] == "r-csv"
    removed = client.delete("/sources/r-csv", headers=AUTH).json()
    assert removed["reports"] == 1
    assert_error(client.post("/reports/csv", headers=AUTH,
                             files={"file": ("r.csv", b"\x89PNG\r\n\x1a\n....", "text/csv")}),
                 415)
    assert_error(client.post("/reports/csv", headers=AUTH,
                             files={"file": ("r.csv", b"just one line", "text/csv")}), 400)
    assert_error(client.post("/reports/csv", headers=AUTH,
                             files={"file": ("r.csv", "x,y\n\xe9".encode("latin-1"))}), 415)
    assert_error(client.post("/reports", headers=AUTH, json={"reports": []}), 422)
    assert_error(client.post("/reports", headers=AUTH, json={"reports": [{"id": 1}]}), 422)


def test_audit_log_names_the_token_by_hash_prefix(writable: tuple[TestClient, Path],
                                                  lib_copy: Path) -> None:
    client, _ = writable
    client.post("/reports", headers=AUTH, json={"reports": ["polyp"]})
    client.delete("/sources/no-such-thing", headers=AUTH)
    entries = client.get("/audit", headers=AUTH).json()["entries"]
    assert [e["action"] for e in entries] == ["remove", "add_reports"]
    assert entries[1]["outcome"] == "ok" and entries[1]["detail"]["added"] == 1
    assert entries[0]["outcome"].startswith("failed") and entries[0]["source"] == "no-such-thing"
    assert {e["token_id"] for e in entries} == {token_hash(TOKEN)[:12]}
    store = RecordStore(lib_copy / "library.sqlite")
    try:
        dump = "\n".join(store.conn.iterdump())
    finally:
        store.close()
    assert TOKEN not in dump and token_hash(TOKEN) not in dump


def test_one_write_at_a_time(writable: tuple[TestClient, Path]) -> None:
    client, _ = writable
    busy = client.app.state.service.writer._busy
    assert busy.acquire(blocking=False)  # as if a long ingest were running
    try:
        refused = assert_error(client.post("/reports", headers=AUTH,
                                           json={"reports": ["polyp"]}), 409)
        assert "another write" in refused["error"]
        assert client.post("/search/text", json={"text": "polyp"}).status_code == 200
    finally:
        busy.release()
    assert client.post("/reports", headers=AUTH, json={"reports": ["polyp"]}).status_code == 200


def test_another_process_writing_is_a_conflict(writable: tuple[TestClient, Path],
                                               lib_copy: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from histoseek.index.lock import LOCK_TIMEOUT_ENV, write_lock

    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.5")  # waits that long for the other writer
    client, _ = writable
    with write_lock(lib_copy):
        refused = assert_error(client.post("/reports", headers=AUTH,
                                           json={"reports": ["polyp"]}), 409)
    assert "another process" in refused["error"]


def test_a_new_token_is_made_once_and_only_its_hash_kept(lib_copy: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    said: list[str] = []
    create_app(lib_copy, ServiceSettings(), encoder=FakeHist(), text_encoder=FakeHist(),
               announce=said.append)
    stored = lib_copy / TOKEN_FILE
    assert len(said) == 1 and stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    token = next(line.strip() for line in said[0].splitlines() if len(line.strip()) == 43)
    assert stored.read_text().strip() == token_hash(token) and token not in stored.read_text()
    app = create_app(lib_copy, ServiceSettings(), encoder=FakeHist(), text_encoder=FakeHist(),
                     announce=said.append)
    assert len(said) == 1  # printed once, never again
    with TestClient(app) as client:
        ok = client.post("/reports", headers={"Authorization": f"Bearer {token}"},
                         json={"reports": ["polyp"]})
        assert ok.status_code == 200
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-123")
    with TestClient(create_app(lib_copy, ServiceSettings(), encoder=FakeHist(),
                               text_encoder=FakeHist())) as client:
        assert_error(client.post("/reports", headers={"Authorization": f"Bearer {token}"},
                                 json={"reports": ["polyp"]}), 403)
        assert client.post("/reports", headers={
            "Authorization": "Bearer from-the-environment-123"},
            json={"reports": ["polyp"]}).status_code == 200


def test_a_library_that_is_not_one_is_refused(tmp_path: Path) -> None:
    from histoseek.errors import HistoseekError

    with pytest.raises(HistoseekError, match="no histoseek library"):
        create_app(tmp_path, ServiceSettings(token=TOKEN))
    with pytest.raises(HistoseekError, match="--root"):
        create_app(tmp_path, ServiceSettings(token=TOKEN, roots=(tmp_path / "nope",)))


def test_the_stored_library_is_still_the_cli_s(writable: tuple[TestClient, Path],
                                               lib_copy: Path) -> None:
    """After service writes, the CLI's Library opens the folder and finds the same records."""
    client, _ = writable
    client.post("/reports", headers=AUTH, json={"reports": [{"report_id": "z", "text": "polyp"}]})
    with Library.open(lib_copy, encoder=FakeHist(), text_encoder=FakeHist()) as lib:
        assert lib.search(text="polyp", k=3)[0].report_id in {"z", "r-polyp"}
        assert lib.info()["reports"] == 3
