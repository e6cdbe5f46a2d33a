"""The text query's grid cell shows what was searched when abbreviations were spelled out."""

from __future__ import annotations

from histoseek.viz.hit_grid import query_picture, text_picture


def test_text_cell_shows_the_spelled_out_query() -> None:
    cell = query_picture(text="HGIN", searched="high-grade intraepithelial neoplasia",
                         tile_px=224, target_mpp=0.5)
    assert cell.caption.startswith("text:\nHGIN\n= high-grade")
    assert "neoplasia" in cell.caption and not cell.has_scale


def test_text_cell_without_a_change_shows_the_text_once() -> None:
    assert text_picture("colon cancer", "colon cancer").caption == "text:\ncolon cancer"
    assert text_picture("colon cancer").caption == "text:\ncolon cancer"


def test_long_text_keeps_six_lines_when_nothing_was_spelled_out() -> None:
    text = " ".join(["adenocarcinoma"] * 12)
    assert text_picture(text).caption.count("\n") == 6  # "text:" + six wrapped lines
