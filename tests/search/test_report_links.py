"""Reports linked to their slides: a reports CSV's ``slide_id`` column gives report hits their
``slide`` and, when that slide is indexed, its file as ``path`` (``search.hits.report_hit``);
slide ids that match no indexed slide are noted when the reports are indexed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from histoseek.library import Library
from slide_library import (
    Built,
    FakeHist,
    built_fixture,  # noqa: F401 (a fixture)
    copy_library,
    use_fake_encoder,
)

GHOST = "ghost-slide-9"


def write_reports(path: Path, built: Built) -> Path:
    """One report per class colour: two name indexed slides, one a slide never indexed, one
    (normal) none at all."""
    rows = [("r-adeno", "adenocarcinoma in most of the section", built.slides[0].slide_id),
            ("r-normal-linked", "normal mucosa with normal crypts", built.slides[2].slide_id),
            ("r-polyp", "polyp throughout", GHOST),
            ("r-unlinked", "normal tissue elsewhere", "")]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "text", "slide_id"])
        writer.writerows(rows)
    return path


@pytest.fixture
def lib(built: Built, tmp_path: Path) -> Library:
    """A copy of the library with the reports added."""
    library = Library.open(copy_library(built, tmp_path / "lib"), encoder=FakeHist(),
                           text_encoder=FakeHist())
    result = library.add_reports(write_reports(tmp_path / "reports.csv", built))
    assert sorted(result.added) == ["r-adeno", "r-normal-linked", "r-polyp", "r-unlinked"]
    assert result.failures == []
    yield library
    library.close()


def same_file(a: str | Path | None, b: str | Path) -> bool:
    return a is not None and Path(a).resolve() == Path(b).resolve()


def test_text_to_reports_links_indexed_slides(lib: Library, built: Built) -> None:
    hits = lib.search(text="adenocarcinoma", target="reports", k=4, expand=False)
    assert [h.kind for h in hits] == ["report"] * 4
    by_id = {h.report_id: h for h in hits}
    assert hits[0].report_id == "r-adeno"
    assert by_id["r-adeno"].slide == built.slides[0].slide_id
    assert same_file(by_id["r-adeno"].path, built.slides[0].path)
    linked = by_id["r-normal-linked"]
    assert linked.slide == built.slides[2].slide_id and same_file(linked.path,
                                                                  built.slides[2].path)
    ghost = by_id["r-polyp"]
    assert ghost.slide == GHOST and ghost.path is None
    unlinked = by_id["r-unlinked"]
    assert unlinked.slide is None and unlinked.path is None
    data = by_id["r-adeno"].to_dict()
    assert data["slide"] == built.slides[0].slide_id and same_file(data["path"],
                                                                   built.slides[0].path)


def test_image_to_reports_links_indexed_slides(lib: Library, built: Built) -> None:
    adeno = lib.search(image=built.tiles / "adenocarcinoma" / "src1_03.png", target="reports",
                       k=2)
    assert adeno[0].report_id == "r-adeno" and adeno[0].kind == "report"
    assert adeno[0].slide == built.slides[0].slide_id
    assert same_file(adeno[0].path, built.slides[0].path)
    polyp = lib.search(image=built.tiles / "polyp" / "src0_02.png", target="reports", k=1)
    assert polyp[0].report_id == "r-polyp"
    assert polyp[0].slide == GHOST and polyp[0].path is None


def test_a_report_links_once_its_slide_is_indexed(lib: Library, built: Built,
                                                  tmp_path: Path) -> None:
    """The link is made at search time: index a slide with the missing slide_id and the
    report now points at its file."""
    ghost = Path(built.slides[1].path)
    labels = tmp_path / "ghost-labels.csv"
    copy = tmp_path / "ghost.tif"
    # the same pixels in a different file (one byte more: a new hash), so a new source
    copy.write_bytes(ghost.read_bytes() + b"\0")
    labels.write_text(f"path,label,source_id,slide_id\n{copy},polyp,pol-9,{GHOST}\n")
    report = lib.add([copy], labels=labels, progress=False)
    assert not report.failures, report.failures
    hit = lib.search(text="polyp", target="reports", k=1, expand=False)[0]
    assert hit.report_id == "r-polyp" and same_file(hit.path, copy)


def test_index_reports_notes_slide_ids_of_no_indexed_slide(
        built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from histoseek.cli import app

    use_fake_encoder(monkeypatch)
    lib_dir = copy_library(built, tmp_path / "lib")
    reports = write_reports(tmp_path / "reports.csv", built)
    result = CliRunner().invoke(app, ["index", str(lib_dir), "--reports", str(reports)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, result.stderr
    assert GHOST in notes[0] and "1 of 3 slide_id values" in notes[0]
    assert all(s.slide_id not in notes[0] for s in built.slides)
    assert "4 reports added" in result.stdout
    with Library.open(lib_dir, encoder=FakeHist(), text_encoder=FakeHist()) as lib:
        assert lib.info()["reports"] == 4


def test_no_note_when_every_slide_id_is_indexed(built: Built, tmp_path: Path) -> None:
    with Library.open(copy_library(built, tmp_path / "lib"), encoder=FakeHist(),
                      text_encoder=FakeHist()) as library:
        result = library.add_reports([
            {"report_id": "a", "text": "adenocarcinoma", "slide_id": built.slides[3].slide_id},
            {"report_id": "b", "text": "normal", "slide_id": built.slides[2].slide_id},
            {"report_id": "c", "text": "polyp"}])
        assert result.notes == []
        hit = library.search(text="adenocarcinoma", k=1, expand=False)[0]
        assert hit.report_id == "a" and same_file(hit.path, built.slides[3].path)
